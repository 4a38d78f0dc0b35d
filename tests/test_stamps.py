"""Stamps: a recording of the stats a check rested on tells whether any of those paths changed since."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from abiguard import stamps


def _record(paths: list[Path], within: Path | None = None) -> list[list[object]]:
    recording = stamps.start()
    try:
        if within is not None:
            stamps.within([str(within)])
        for path in paths:
            with contextlib.suppress(OSError):
                stamps.stat(str(path))
    finally:
        stamps.stop()
    assert recording.complete
    return recording.kept()


def _tree(tmp_path: Path) -> list[Path]:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.so").write_bytes(b"\x7fELF" + b"\0" * 60)
    (tmp_path / "pkg" / "METADATA").write_text("Name: x\nVersion: 1.0\n")
    hour_ago = time.time() - 3600  # else a change within the clock's tick could keep the mtime (see recall)
    for made in (tmp_path / "pkg" / "mod.so", tmp_path / "pkg" / "METADATA", tmp_path / "pkg"):
        os.utime(made, (hour_ago, hour_ago))
    return [tmp_path / "pkg", tmp_path / "pkg" / "mod.so", tmp_path / "pkg" / "METADATA", tmp_path / "gone.so"]


def _rewrite_same_size(tmp: Path) -> None:
    with open(tmp / "pkg" / "METADATA", "r+") as fh:
        fh.write("Name: x\nVersion: 1.1\n")


CHANGES: dict[str, Callable[[Path], None]] = {
    "rewritten in place, same size": _rewrite_same_size,
    "entry added to a directory": lambda tmp: (tmp / "pkg" / "new.so").write_bytes(b""),
    "missing path appeared": lambda tmp: (tmp / "gone.so").write_bytes(b""),
    "file removed": lambda tmp: (tmp / "pkg" / "mod.so").unlink(),
    "mode changed": lambda tmp: os.chmod(tmp / "pkg" / "mod.so", 0o600),
}


@pytest.mark.parametrize("relative", [False, True], ids=["whole paths", "relative to a base"])
@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_any_change_to_a_noted_path_is_seen(tmp_path: Path, change: str, relative: bool) -> None:
    here = os.getcwd()
    kept = _record(_tree(tmp_path), within=tmp_path if relative else None)
    assert stamps.unchanged(kept)
    CHANGES[change](tmp_path)
    assert not stamps.unchanged(kept)
    assert os.getcwd() == here
    stamps._seen.clear()


def test_paths_under_a_base_are_kept_relative_to_it_and_stat_from_inside_it(tmp_path: Path) -> None:
    """A recall stats site-packages' files from inside it (fewer directories for the kernel to walk), and
    gives the caller back its working directory, whatever the outcome."""
    site = tmp_path / "site"
    site.mkdir()
    paths = _tree(site)
    kept = _record([site, *paths], within=site)
    groups, absent = kept[0]
    assert groups[0] == ["", [str(site)], [stamps.of(os.stat(site))]]  # the base itself: whole
    assert groups[1][0] == str(site) and groups[1][1] == ["pkg", "pkg/mod.so", "pkg/METADATA"]
    assert absent == [str(site / "gone.so")]
    here = os.getcwd()
    assert stamps.unchanged(kept) and os.getcwd() == here
    seen = []
    real_stat = os.stat
    with pytest.MonkeyPatch.context() as patch:  # watch the calls only; the stats are real
        patch.setattr(os, "stat", lambda p, *a, **k: seen.append((p, os.getcwd())) or real_stat(p, *a, **k))
        assert stamps.unchanged(kept)
    assert ("pkg/mod.so", str(site)) in seen and os.getcwd() == here
    without_base = _record(paths, within=site)  # the base itself not noted: only going into it tells
    os.rename(site, tmp_path / "site-gone")
    assert not stamps.unchanged(without_base) and os.getcwd() == here
    assert not stamps.unchanged(kept) and os.getcwd() == here
    stamps._seen.clear()


@pytest.mark.parametrize("relative", [False, True], ids=["whole paths", "relative to a base"])
def test_after_a_change_is_met_stat_still_tells_the_truth(tmp_path: Path, relative: bool) -> None:
    """The stats a failed recall made are handed to the check that follows; the changed file must be seen
    as it is now, and each handed-over stat used once."""
    paths = _tree(tmp_path)
    kept = _record(paths, within=tmp_path if relative else None)
    _rewrite_same_size(tmp_path)
    os.truncate(tmp_path / "pkg" / "METADATA", 3)
    assert not stamps.unchanged(kept)
    assert (str(tmp_path / "pkg" / "METADATA"), True) in stamps._seen  # handed over by the path the check uses
    assert stamps.stat(str(tmp_path / "pkg" / "METADATA")).st_size == 3
    os.truncate(tmp_path / "pkg" / "METADATA", 1)
    assert stamps.stat(str(tmp_path / "pkg" / "METADATA")).st_size == 1
    stamps._seen.clear()


def test_a_path_that_changes_between_two_stats_of_one_run_spoils_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("a")
    recording = stamps.start()
    try:
        stamps.stat(str(path))
        path.write_text("ab")
        stamps.stat(str(path))
    finally:
        stamps.stop()
    assert not recording.complete
