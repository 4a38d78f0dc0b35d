"""Reading an environment from outside: RECORD parsing and the memo that makes a second read cheap."""

from __future__ import annotations

import csv
import io
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abiguard.binary import is_shared_object_name
from abiguard.sources.environment import (
    EnvironmentError_,
    Memo,
    _lines_naming_a_library,
    _read_record,
    _top_levels,
    probe,
)
from tests.support.venvs import make_venv, site_packages

RECORD = (
    "pkg/__init__.py,sha256=abc,10\r\n"
    "pkg/_core.cpython-311-x86_64-linux-gnu.so,sha256=def,2000\r\n"
    '"pkg/odd,name.so",sha256=ghi,30\r\n'
    "pkg.libs/libgfortran-abc.so.5.0.0,sha256=jkl,40\n"
    "pkg/sources.py,,\n"
    "PKG/WIN.PYD,sha256=x,1\n"
    "pkg/data.json,sha256=y,2\n"
    "pkg/lib.dylib,,"
)


def everything(text: str) -> list[str]:
    return [row[0] for row in csv.reader(io.StringIO(text, newline="")) if row and is_shared_object_name(row[0])]


def test_only_lines_naming_a_library_are_parsed_and_none_is_missed() -> None:
    lines = _lines_naming_a_library(RECORD)
    assert "pkg/data.json,sha256=y,2" not in lines and "pkg/__init__.py,sha256=abc,10" not in lines
    found = [row[0] for row in csv.reader(lines) if row and is_shared_object_name(row[0])]
    grows = "İ/x.py,,\n" + RECORD  # "İ".lower() is two characters
    assert [r[0] for r in csv.reader(_lines_naming_a_library(grows)) if is_shared_object_name(r[0])] == found
    assert found == everything(RECORD) == [
        "pkg/_core.cpython-311-x86_64-linux-gnu.so", "pkg/odd,name.so", "pkg.libs/libgfortran-abc.so.5.0.0",
        "PKG/WIN.PYD", "pkg/lib.dylib",
    ]


def test_the_top_level_names_a_record_claims() -> None:
    """What an installer made at the top of site-packages: every path's first component, quoted or not."""
    extra = '\n../../../bin/tool,,\nsix.py,,\n"odd,top/x.py",,\n"a""quote.py",,\n'
    assert _top_levels(RECORD + extra) == ['PKG', 'a"quote.py', "odd,top", "pkg", "pkg.libs", "six.py"]


def test_a_record_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    record = tmp_path / "RECORD"
    record.write_text(RECORD)
    memo_path = str(tmp_path / "memo.marshal")
    first = Memo(memo_path)
    assert len(_read_record(str(record), first)[0]) == 5
    first.save()
    record.write_text("pkg/new.so,,\n" + RECORD)
    os.utime(record, ns=(0, os.stat(record).st_mtime_ns + 1))
    again = Memo(memo_path)
    assert _read_record(str(record), again)[0][0] == "pkg/new.so"
    assert Memo(str(tmp_path / "missing.marshal")).get("records", str(record), [1, 2]) is None


def test_record_paths_are_spelled_as_a_walk_spells_them() -> None:
    from abiguard.sources.environment import record_path

    site = "/venv/lib/python3.11/site-packages"
    for rel in ("pkg/x.so", "pkg//x.so", "pkg/./x.so", "../../../bin/x.so", "pkg/sub/../x.so", "./x.so"):
        assert record_path(site, rel) == os.path.normpath(os.path.join(site, rel)), rel


def test_a_damaged_memo_costs_speed_not_answers(tmp_path: Path) -> None:
    """A memo file that unmarshals to the wrong shapes (ours, but damaged) is ignored entry by entry."""
    import marshal

    from abiguard.model import TargetEnvironment
    from abiguard.sources.environment import iter_distributions, unowned_shared_objects

    site = tmp_path / "site"
    info = site / "demo-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: numpy>=1.21\n\n")
    (info / "RECORD").write_text("demo/_x.so,,\n")
    (site / "demo").mkdir()
    (site / "demo" / "_x.so").write_bytes(b"\x7fELF")
    (site / "stray.so").write_bytes(b"\x7fELF")
    env = TargetEnvironment("python", "3.11.0", "cpython", str(tmp_path), (str(site),), "linux-x86_64", (".so",))
    memo_path = tmp_path / "memo.marshal"
    record, metadata = os.stat(info / "RECORD"), os.stat(info / "METADATA")
    right_stamps = {  # stamps that match, values of the wrong shape
        "format": Memo.FORMAT,
        "dirs": {str(site): [os.stat(site).st_mtime_ns, 5], str(site / "demo"): [1, 2, 3]},
        "records": {str(info / "RECORD"): [[record.st_size, record.st_mtime_ns], 7]},
        "metadata": {str(info): [[metadata.st_size, metadata.st_mtime_ns, metadata.st_ino], ["a"]]},
    }
    wrong_tables = {"format": Memo.FORMAT, "dirs": [1, 2], "records": "x", "metadata": None, "derived": 7}
    for damaged in (wrong_tables, right_stamps):
        memo_path.write_bytes(marshal.dumps(damaged))
        memo = Memo(str(memo_path))
        (dist,) = iter_distributions(env, memo)
        assert (dist.name, dist.version, dist.requires, dist.shared) == ("demo", "1.0", ["numpy>=1.21"], ["demo/_x.so"])
        owned = {str(site / "demo" / "_x.so")}
        assert unowned_shared_objects(env, [dist], owned, memo) == [(str(site), "stray.so")]


def test_what_changed_moments_ago_is_read_but_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file added within the same clock tick as the listing would leave the directory's mtime as it was:
    listings (and RECORD and METADATA reads) are remembered only once the path has been left alone."""
    import time

    from abiguard import stamps
    from abiguard.model import TargetEnvironment
    from abiguard.sources.environment import iter_distributions, unowned_shared_objects

    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "a.so").write_bytes(b"\x7fELF")
    info = site / "demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n")
    (info / "RECORD").write_text("demo/_x.so,,\ndemo-1.0.dist-info/RECORD,,\n")
    env = TargetEnvironment("python", "3.11.0", "cpython", str(tmp_path), (str(site),), "linux-x86_64", (".so",))

    def read() -> Memo:
        memo = Memo(None)
        (dist,) = iter_distributions(env, memo)
        assert dist.shared == ["demo/_x.so"]
        assert unowned_shared_objects(env, [], set(), memo) == [(str(site), "pkg/a.so")]
        return memo

    fresh = read()
    assert (fresh.new["dirs"], fresh.new["records"], fresh.new["metadata"]) == ({}, {}, {})
    monkeypatch.setattr(stamps, "RACY_NS", 50_000_000)
    time.sleep(0.1)
    settled = read()
    assert set(settled.new["dirs"]) == {str(site), str(site / "pkg")}
    assert set(settled.new["records"]) == {str(info / "RECORD")}
    assert set(settled.new["metadata"]) == {str(info)}


def test_a_damaged_dist_info_is_reported_on_every_read_also_from_the_memo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each dist-info whose METADATA or RECORD cannot be used is one problem, worded for the report; a second
    read, answered from the memo, reports the same ones and still yields the usable distributions."""
    from abiguard import stamps
    from abiguard.model import TargetEnvironment
    from abiguard.sources.environment import iter_distributions

    site = tmp_path / "site"
    damage = {  # dist-info -> (METADATA, RECORD); None: the file is absent
        "good-1.0": (b"Name: good\nVersion: 1.0\n\n", b"good/_x.so,,\n"),
        "noname-1.0": (b"Version: 1.0\n\n", b"noname/_x.so,,\n"),
        "noversion-1.0": (b"Name: noversion\n\n", b"noversion/_x.so,,\n"),
        "nometa-1.0": (None, b"nometa/_x.so,,\n"),
        "binary-1.0": (b"Name: binary\nVersion: 1.0\n\n", b"\xff\xfe\x00garbage"),
        "empty-1.0": (b"Name: empty\nVersion: 1.0\n\n", b"\n"),
        "norecord-1.0": (b"Name: norecord\nVersion: 1.0\n\n", None),
    }
    for stem, files in damage.items():
        (site / f"{stem}.dist-info").mkdir(parents=True)
        for name, data in zip(("METADATA", "RECORD"), files, strict=True):
            if data is not None:
                (site / f"{stem}.dist-info" / name).write_bytes(data)
    env = TargetEnvironment("python", "3.11.0", "cpython", str(tmp_path), (str(site),), "linux-x86_64", (".so",))
    monkeypatch.setattr(stamps, "RACY_NS", 0)
    unowned = "its shared objects are judged as unowned"
    expected = [
        f"{site}/binary-1.0.dist-info: RECORD is not UTF-8 text: {unowned}",
        f"{site}/empty-1.0.dist-info: RECORD is empty: {unowned}",
        f"{site}/nometa-1.0.dist-info: METADATA is missing: not read as a distribution, {unowned}",
        f"{site}/noname-1.0.dist-info: METADATA has no Name: not read as a distribution, {unowned}",
        f"{site}/noversion-1.0.dist-info: METADATA has no Version: not read as a distribution, {unowned}",
    ]
    memo_path = str(tmp_path / "memo.marshal")
    for run in ("first", "remembered"):
        memo = Memo(memo_path)
        problems: list[str] = []
        found = list(iter_distributions(env, memo, problems))
        dists = {d.name: d.shared for d in found}
        assert problems == expected, run
        # an absent RECORD is allowed (PEP 627; apt leaves it out): no problem, but the distribution says so
        assert [d.name for d in found if not d.recorded] == ["norecord"], run
        assert dists == {"good": ["good/_x.so"], "binary": [], "empty": [], "norecord": []}, run
        memo.save()
    assert set(memo.old["metadata"]) == {str(site / f"{s}.dist-info") for s in damage if s != "nometa-1.0"}


def test_egg_info_directories_and_files_are_distributions(tmp_path: Path) -> None:
    """What `setup.py install` and Debian's packages leave: an egg-info directory (PKG-INFO, requires.txt,
    installed-files.txt or only top_level.txt) or a bare egg-info file that is its PKG-INFO."""
    from abiguard.model import TargetEnvironment
    from abiguard.sources.environment import iter_distributions

    site = tmp_path / "site"
    listed = site / "listed-1.0-py3.11.egg-info"
    listed.mkdir(parents=True)
    (listed / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: listed\nVersion: 1.0\n\n")
    (listed / "requires.txt").write_text('numpy>=1.20\n\n[extra]\nscipy\n\n[:python_version < "3.12"]\ntomli\n')
    (listed / "installed-files.txt").write_text("../listed/__init__.py\n../listed/_x.cpython-311-x86_64-linux-gnu.so\n"
                                               "../../../../bin/listed-tool\nPKG-INFO\n")
    claimed = site / "claimed-2.0.egg-info"
    claimed.mkdir()
    (claimed / "PKG-INFO").write_text("Name: claimed\nVersion: 2.0\nRequires-Dist: numpy\n\n")
    (claimed / "top_level.txt").write_text("claimed\n_claimed_c\n")
    (site / "single-3.0.egg-info").write_text("Name: single\nVersion: 3.0\n\n")
    env = TargetEnvironment("python", "3.11.0", "cpython", str(tmp_path), (str(site),), "linux-x86_64", (".so",))
    problems: list[str] = []
    found = {d.name: d for d in iter_distributions(env, Memo(None), problems)}
    assert problems == [] and set(found) == {"listed", "claimed", "single"}
    listed_dist = found["listed"]
    assert listed_dist.requires == ["numpy>=1.20", 'scipy; extra == "extra"', 'tomli; (python_version < "3.12")']
    assert listed_dist.shared == ["listed/_x.cpython-311-x86_64-linux-gnu.so"] and listed_dist.recorded
    assert "listed" in listed_dist.top_levels and ".." not in listed_dist.top_levels
    assert found["claimed"].requires == ["numpy"]  # PKG-INFO's own Requires-Dist wins over requires.txt
    assert (found["claimed"].recorded, found["claimed"].claims) == (False, ["claimed", "_claimed_c"])
    assert (found["single"].recorded, found["single"].claims, found["single"].version) == (False, [], "3.0")


def test_unowned_libraries_are_sought_where_no_installer_wrote_and_beside_installed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unclaimed trees are walked whole; an installed package is listed at its top and where its libraries
    are, not through its directories of headers and data (most of a large environment)."""
    from abiguard import stamps
    from abiguard.model import TargetEnvironment
    from abiguard.sources.environment import iter_distributions, unowned_shared_objects

    site = tmp_path / "site"
    info = site / "demo-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n")
    installed = ["demo/__init__.py", "demo/_x.so", "demo/include/a/b.h", "demo/deep/lib/_y.so", "other/__init__.py",
                 "other/sub/_z.so"]
    (info / "RECORD").write_text("".join(f"{p},,\n" for p in installed) + "demo-1.0.dist-info/RECORD,,\n")
    strays = ["top.so", "demo/_rebuilt.so", "demo/deep/lib/extra.so", "demo/deep/other.so", "legacy/a/b/c.so",
              "other/_rebuilt.so"]
    for rel in [*installed, *strays]:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(b"\x7fELF")
    env = TargetEnvironment("python", "3.11.0", "cpython", str(tmp_path), (str(site),), "linux-x86_64", (".so",))
    monkeypatch.setattr(stamps, "RACY_NS", 0)
    memo = Memo(None)
    dists = list(iter_distributions(env, memo))
    owned = {str(site / p) for p in installed if p.endswith(".so")}
    found = unowned_shared_objects(env, dists, owned, memo)
    assert sorted(rel for _site, rel in found) == sorted(set(strays) - {"demo/deep/other.so"})
    listed = {os.path.relpath(folder, site) for folder in memo.new["dirs"]}
    assert listed == {".", "demo", "demo/deep/lib", "other", "other/sub", "legacy", "legacy/a", "legacy/a/b"}


def _interpreter(tmp_path: Path, body: str) -> str:
    """A stand-in for a target interpreter: a real executable that misbehaves as `body` says."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreters are shell scripts")
@pytest.mark.parametrize(("body", "words"), [
    ("echo 'SyntaxError: bad' >&2; exit 1", "failed to describe itself: SyntaxError: bad"),
    ("echo hello", "did not answer like a Python interpreter"),
    ("echo '[1, 2]'", "did not answer like a Python interpreter"),
    ("exec sleep 30", "no answer within 2 s"),
    ("kill -SEGV $$", "killed by SIGSEGV"),
    ("printf 'long %0900d' 0 >&2; exit 3", "failed to describe itself: long 000"),
    # a pyenv shim names the missing version first, then pages of advice
    ("printf 'pyenv: python3.10: command not found\\n\\nThe command exists in these Python versions:\\n  3.10.13"
     "\\n\\nNote: See pyenv help global for tips on allowing both\\n      Python versions to be found.\\n' >&2;"
     " exit 127", "failed to describe itself: pyenv: python3.10: command not found"),
    ("printf 'Traceback (most recent call last):\\n  File x\\nImportError: no encodings\\n' >&2; exit 1",
     "failed to describe itself: ImportError: no encodings"),
])
def test_an_interpreter_that_cannot_describe_itself_is_one_clear_error(
    tmp_path: Path, body: str, words: str,
) -> None:
    exe = _interpreter(tmp_path, body)
    called = []
    started = time.monotonic()
    with pytest.raises(EnvironmentError_) as raised:
        probe(exe, timeout=2.0, meanwhile=lambda: called.append(True))
    assert time.monotonic() - started < 20  # one that hangs is stopped, not waited for
    assert words in str(raised.value) and exe in str(raised.value)
    assert len(str(raised.value)) < 300 + len(exe)  # one line, not whatever the program printed
    assert called == [True]  # the caller's work overlaps the interpreter's start, failed or not


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreter is a shell script")
def test_an_interpreter_that_hangs_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    exe = _interpreter(tmp_path, f"sleep 60 & echo $! > {pidfile}; wait")
    with pytest.raises(EnvironmentError_, match="no answer within"):
        probe(exe, timeout=1.0)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("the wrapper's child outlived the probe")


def _debian_python() -> str | None:
    """The system Python of a Debian-like distribution: its sysconfig has the `posix_local` scheme."""
    found = shutil.which("python3", path="/usr/bin")
    if found is None:
        return None
    question = "import sysconfig; print('posix_local' in sysconfig.get_scheme_names())"
    asked = subprocess.run([found, "-I", "-S", "-c", question], capture_output=True, text=True)
    return found if asked.stdout.strip() == "True" else None


@pytest.mark.skipif(_debian_python() is None, reason="needs a Debian-patched system Python (its sysconfig differs)")
def test_a_venv_of_the_debian_system_python_is_read_where_it_installs(tmp_path: Path) -> None:
    """Debian's sysconfig picks its scheme from sys.prefix, which -S leaves at /usr: without the venv prefix set,
    the venv looked empty, and a breaking install passed its guard."""
    system = _debian_python()
    assert system is not None
    subprocess.run([system, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    env = probe(str(tmp_path / "venv" / "bin" / "python"))
    version = ".".join(env.python_version.split(".")[:2])
    assert env.site_packages == (str(tmp_path / "venv" / "lib" / f"python{version}" / "site-packages"),)


def test_an_interpreter_without_site_packages_is_an_error_not_an_empty_environment(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    shutil.rmtree(site_packages(python))
    with pytest.raises(EnvironmentError_, match="has no site-packages directory"):
        probe(str(python))


def test_the_probe_describes_a_real_interpreter_while_the_caller_works(tmp_path: Path) -> None:
    called = []
    env = probe(sys.executable, meanwhile=lambda: called.append(True))
    assert called == [True]
    assert env.python_version == platform.python_version() and env.site_packages
    assert all(os.path.isdir(p) for p in env.site_packages)
