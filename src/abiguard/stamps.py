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
    from collections.abc import Sequence
    from typing import Any

Stamp = tuple[int, int, int, int, int]  # mode, size, mtime, inode, ctime: a rewrite or a chmod changes one


# A file changed twice within one tick of the file system's clock keeps its mtime (git's "racy clean"
# problem): what rests on a path changed less than this long ago is not remembered.
RACY_NS = 2_000_000_000


def user_site_inputs() -> list[Any]:
    """What an answer rests on that no stat shows: which user site-packages the target adds to its path
    (who runs it, PYTHONUSERBASE and HOME move it, PYTHONNOUSERSITE drops it)."""
    ids = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()] if hasattr(os, "getuid") else []
    return [ids, [os.environ.get(k) for k in ("PYTHONUSERBASE", "PYTHONNOUSERSITE", "HOME", "APPDATA")]]


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
        self.bases: list[str] = []  # see `within`

    def note(self, path: str, follow_symlinks: bool, stamp: Stamp | None) -> None:
        if (self.paths if follow_symlinks else self.links).setdefault(path, stamp) != stamp:
            self.complete = False

    def changed_since(self, ns: int) -> bool:
        """Whether a path noted changed (its ctime) at or after `ns`."""
        return any(s is not None and s[4] >= ns for table in (self.paths, self.links) for s in table.values())

    def kept(self) -> list[list[Any]]:
        """The stamps in the form `unchanged` takes (and marshal writes): for stats that follow links, then
        for those that do not, [groups, paths that were missing]. A group is [base, names, their stamps]:
        the paths under a base of `within`, relative to it, and first the others, whole (base "").

        Shallow paths come first in each group: an install or removal changes site-packages itself, and a
        package's first import its top directory (a new __pycache__), so a stale answer is usually seen within
        a few stats."""
        # The deepest base a path is under takes it.
        prefixes = [(base + os.sep, base) for base in sorted(self.bases, key=len, reverse=True)]
        out: list[list[Any]] = []
        for table in (self.paths, self.links):
            groups: dict[str, list[tuple[str, Stamp]]] = {"": []}
            for path, stamp in table.items():
                if stamp is None:
                    continue
                for prefix, base in prefixes:
                    if path.startswith(prefix):
                        groups.setdefault(base, []).append((path[len(prefix) :], stamp))
                        break
                else:
                    groups[""].append((path, stamp))
            kept = []
            for base, members in groups.items():
                members.sort(key=lambda m: m[0].count(os.sep))
                kept.append([base, [name for name, _ in members], [stamp for _, stamp in members]])
            out.append([kept, [p for p, s in table.items() if s is None]])
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


def within(directories: Sequence[str]) -> None:
    """Keep the paths under these directories relative to them: stat'ing `pkg/x.so` from inside
    site-packages spares the kernel the walk through the directories above it, most of a recall's cost."""
    if _recording is not None and hasattr(os, "fchdir"):
        _recording.bases.extend(os.path.normpath(d) for d in directories if os.path.isabs(d))


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


def unchanged(kept: list[list[Any]]) -> bool:
    """Whether every path noted in `kept` (from `Recording.kept`) still has its stamp, and every missing one
    is still missing. What it stats before meeting a change is left for `stat`.

    It changes the working directory while it stats a group (and always changes it back), so it is for a
    process's start, before any other thread runs: `recall` calls it first thing."""
    for (groups, absent), follow_symlinks in zip(kept, (True, False), strict=True):
        stat = os.stat if follow_symlinks else os.lstat
        for path in absent:
            try:
                stat(path)
            except OSError:
                continue
            return False
        for base, names, noted in groups:
            if not _same_from(base, names, noted, follow_symlinks):
                return False
    return True


def _same_from(base: str, names: list[str], noted: list[Stamp], follow_symlinks: bool) -> bool:
    """`_same` for names relative to `base`, stat'ed from inside it (the working directory is restored);
    for whole paths when `base` is ""."""
    if not base:
        return _same(names, noted, follow_symlinks, "")
    try:
        here = os.open(os.curdir, os.O_RDONLY)
    except OSError:
        return _same([base + os.sep + n for n in names], noted, follow_symlinks, "")
    try:
        try:
            os.chdir(base)
        except OSError:
            return False  # the base itself is gone
        return _same(names, noted, follow_symlinks, base + os.sep)
    finally:
        try:
            os.fchdir(here)
        except OSError as exc:  # not a changed environment: the check must not go on from the wrong directory
            raise RuntimeError(f"cannot return to the working directory: {exc}") from exc
        finally:
            os.close(here)


def _same(names: list[str], noted: list[Stamp], follow_symlinks: bool, prefix: str) -> bool:
    stat = os.stat if follow_symlinks else os.lstat
    done: list[tuple[list[str], list[os.stat_result]]] = []
    for start in range(0, len(names), _BATCH):
        batch = names[start : start + _BATCH]
        try:
            now = list(map(stat, batch))  # one batch at a time: a change is usually met early
        except OSError:
            return False
        done.append((batch, now))
        if list(map(of, now)) != noted[start : start + _BATCH]:
            _seen.update(((prefix + p, follow_symlinks), st) for seen, now in done
                         for p, st in zip(seen, now, strict=True))
            return False
    return True
