"""Stamps: what a stat says about a path, and a recording of every stamp a `check` rested on.

A check learns about an environment only through paths it stats before reading them: the interpreter and
its pyvenv.cfg, each site-packages directory, every METADATA and RECORD, every directory searched for
shared objects (its mtime changes when an entry is added, removed or renamed) and every shared object (the
cache keys facts by the same stat). Those stats go through `stat` here; while a `Recording` is on, each
path's stamp is noted, a missing path as None (its appearing would change the answer too). While every
noted stamp is unchanged, so is the answer, which `recall` then gives again without reading anything.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # see recall.py: nothing on its path may import typing
if TYPE_CHECKING:
    from typing import Any

Stamp = tuple[int, int, int, int, int]  # mode, size, mtime, inode, ctime: a rewrite or a chmod changes one


# A file changed twice within one tick of the file system's clock keeps its mtime (git's "racy clean"
# problem): what rests on a path changed less than this long ago is not remembered.
RACY_NS = 2_000_000_000


def of(st: os.stat_result) -> Stamp:
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def settled(st: os.stat_result) -> bool:
    """Whether what was just read from this path may be remembered by its stamp (see `RACY_NS`)."""
    return st.st_ctime_ns < time.time_ns() - RACY_NS


class Recording:
    """The stamps seen: `paths` of stats that follow symbolic links, `links` of those that do not.
    `complete` turns False when the answer also rests on something no stat shows, or when a path changed
    between two stats of one run."""

    def __init__(self) -> None:
        self.paths: dict[str, Stamp | None] = {}
        self.links: dict[str, Stamp | None] = {}
        self.complete = True

    def note(self, path: str, follow_symlinks: bool, stamp: Stamp | None) -> None:
        if (self.paths if follow_symlinks else self.links).setdefault(path, stamp) != stamp:
            self.complete = False

    def changed_since(self, ns: int) -> bool:
        """Whether a path noted changed (its ctime) at or after `ns`."""
        return any(s is not None and s[4] >= ns for table in (self.paths, self.links) for s in table.values())

    def kept(self) -> list[list[list[Any]]]:
        """The stamps in the form `unchanged` takes (and marshal writes): for stats that follow links, then
        for those that do not, [paths, their stamps, paths that were missing]. Shallow paths come first: an
        install or removal changes site-packages itself, and a package's first import its top directory (a
        new __pycache__), so a stale answer is usually seen within a few stats."""
        out: list[list[list[Any]]] = []
        for table in (self.paths, self.links):
            present = sorted(((p, s) for p, s in table.items() if s is not None), key=lambda i: i[0].count(os.sep))
            out.append([[p for p, _ in present], [s for _, s in present], [p for p, s in table.items() if s is None]])
        return out


_BATCH = 512
_recording: Recording | None = None
# What `unchanged` saw before it met a change: the check that follows in this process stats the same paths
# first, and takes these instead of asking the kernel twice (each is taken at most once).
_seen: dict[tuple[str, bool], os.stat_result] = {}


def start() -> Recording:
    global _recording
    _recording = Recording()
    return _recording


def stop() -> None:
    global _recording
    _recording = None


def stat(path: str, follow_symlinks: bool = True) -> os.stat_result:
    """`os.stat`, noted in the recording when one is on."""
    st = _seen.pop((path, follow_symlinks), None) if _seen else None
    try:
        if st is None:
            st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        if _recording is not None:
            _recording.note(path, follow_symlinks, None)
        raise
    if _recording is not None:
        _recording.note(path, follow_symlinks, of(st))
    return st


def exists(path: str) -> bool:
    try:
        stat(path)
    except OSError:
        return False
    return True


def isdir(path: str) -> bool:
    try:
        return stat(path).st_mode & 0o170000 == 0o040000
    except OSError:
        return False


def unrecordable() -> None:
    """Where an answer depends on what no stat of ours shows (a search of PATH): it is not to be recalled."""
    if _recording is not None:
        _recording.complete = False


def unchanged(kept: list[list[list[Any]]]) -> bool:
    """Whether every path noted in `kept` (from `Recording.kept`) still has its stamp, and every missing one
    is still missing. What it stats before meeting a change is left for `stat`."""
    for (paths, noted, absent), follow_symlinks in zip(kept, (True, False), strict=True):
        stat = os.stat if follow_symlinks else os.lstat
        for path in absent:
            try:
                stat(path)
            except OSError:
                continue
            return False
        done: list[tuple[list[str], list[os.stat_result]]] = []
        for start in range(0, len(paths), _BATCH):
            batch = paths[start : start + _BATCH]
            try:
                now = list(map(stat, batch))  # one batch at a time: a change is usually met early
            except OSError:
                return False
            done.append((batch, now))
            if list(map(of, now)) != noted[start : start + _BATCH]:
                _seen.update(((p, follow_symlinks), st) for seen, now in done for p, st in zip(seen, now, strict=True))
                return False
    return True
