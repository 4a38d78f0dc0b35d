"""`inspect` orchestration: local files, directories, index requirements, releases and first-compatible."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from rich.console import Console

from abiguard.inspect import (
    NUMPY2_FIRST_PRERELEASE,
    BinaryItem,
    DirectoryItem,
    ErrorItem,
    InspectError,
    InspectOptions,
    SearchItem,
    WheelItem,
    admits,
    classify,
    inspect_targets,
    numpy2_cutoff,
)
from abiguard.model import BuiltFor, Verdict
from abiguard.report.inspect_text import render_inspect
from abiguard.sources.index import JSON_TYPE, IndexClient, IndexConfig
from abiguard.sources.remote import HttpClient
from tests.support.wheels import build_wheel, corrupt_shared_objects, fetch_wheel, with_requires
from tests.test_remote import WheelServer

LINUX = "manylinux2014_x86_64"
TARGET = {"python_version": "3.11", "platform": "manylinux_2_17_x86_64"}
SUFFIX = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
BINARY_KEYS = {"path", "module", "built_for", "min_numpy", "producer", "evidence"}


@pytest.fixture(scope="module")
def pymsis() -> dict[str, Path]:
    return {v: fetch_wheel(f"pymsis=={v}", LINUX, "3.11") for v in ("0.8.0", "0.10.0")}


def publish(srv: WheelServer, project: str, releases: list[tuple[str, bytes, str]], suffix: str = SUFFIX,
            more: tuple[dict[str, object], ...] = ()) -> None:
    """A PEP 691 listing of `project` with one wheel per (version, wheel bytes, upload time), and `more` entries."""
    files: list[dict[str, object]] = []
    for version, body, when in releases:
        name = f"{project}-{version}-{suffix}"
        srv.files[name] = body
        files.append({"filename": name, "url": f"/ok/{name}", "size": len(body), "upload-time": when,
                      "hashes": {"sha256": hashlib.sha256(body).hexdigest()}, "yanked": False})
    listing = {"meta": {"api-version": "1.1"}, "files": [*files, *more]}
    srv.pages[f"/simple/{project}/"] = (JSON_TYPE, json.dumps(listing).encode())


@pytest.fixture(scope="module")
def index(pymsis: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelServer]:
    """A PEP 691 index with pymsis 0.7.0 (a copy of 0.8.0 uploaded 'before NumPy 2'), 0.8.0 and 0.10.0; with
    `oldpure`, two releases without compiled code from before NumPy 2; with `mixed`, one such release and then
    a NumPy-1.x build (a copy of pymsis 0.8.0), both from before NumPy 2; with `declares`, two copies of pymsis
    0.10.0 (built for NumPy >= 1.20), the second declaring numpy>=2.0.2 for this Python; with `served`, a copy
    of pymsis 0.10.0 whose METADATA the index serves apart (PEP 658), declaring numpy>=2.0.2 there."""
    srv = WheelServer()
    pure = build_wheel(tmp_path_factory.mktemp("pure"), "oldpure", "1.0", {"oldpure/__init__.py": b""}, [])
    publish(srv, "oldpure", [("1.0", pure.read_bytes(), "2022-01-01T00:00:00Z"),
                             ("1.1", pure.read_bytes(), "2023-01-01T00:00:00Z")], "py3-none-any.whl")
    publish(srv, "mixed", [("0.1", pure.read_bytes(), "2022-01-01T00:00:00Z"),
                           ("0.2", pymsis["0.8.0"].read_bytes(), "2023-06-01T00:00:00Z")])
    floor = with_requires(pymsis["0.10.0"], tmp_path_factory.mktemp("floor"),
                          ['numpy>=2.0.2; python_version < "3.14"', 'numpy>=9; python_version >= "3.14"'])
    publish(srv, "declares", [("1.0", pymsis["0.10.0"].read_bytes(), "2024-07-01T00:00:00Z"),
                              ("2.0", floor.read_bytes(), "2024-08-01T00:00:00Z")])
    publish(srv, "served", [("1.0", pymsis["0.10.0"].read_bytes(), "2024-07-01T00:00:00Z")])
    listing = json.loads(srv.pages["/simple/served/"][1])
    listing["files"][0]["core-metadata"] = True  # PEP 714: its METADATA is served apart, and that one decides
    srv.pages["/simple/served/"] = (JSON_TYPE, json.dumps(listing).encode())
    srv.files[listing["files"][0]["filename"] + ".metadata"] = b"Metadata-Version: 2.1\nName: served\n" \
        b"Version: 1.0\nRequires-Dist: numpy>=2.0.2\n"
    publish(srv, "pymsis", [("0.7.0", pymsis["0.8.0"].read_bytes(), "2023-01-05T00:00:00Z"),
                            ("0.8.0", pymsis["0.8.0"].read_bytes(), "2024-05-01T00:00:00Z"),
                            ("0.10.0", pymsis["0.10.0"].read_bytes(), "2024-07-01T00:00:00Z")],
            more=({"filename": "pymsis-0.11.0rc1-" + SUFFIX, "url": "/ok/missing.whl", "hashes": {}},))
    numpy = [{"filename": f"numpy-{v}.tar.gz", "url": f"/ok/numpy-{v}.tar.gz", "hashes": {}, "upload-time": t}
             for v, t in (("1.26.4", "2024-02-05T00:00:00Z"), ("2.0.0b1", "2024-03-11T00:00:00Z"),
                          ("2.0.0", "2024-06-16T00:00:00Z"))]
    srv.pages["/simple/numpy/"] = (JSON_TYPE, json.dumps({"meta": {"api-version": "1.1"}, "files": numpy}).encode())
    yield srv
    srv.close()


@pytest.fixture
def env(index: WheelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's configuration points at the local index through an environment variable."""
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX",
                "UV_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("UV_INDEX_URL", f"{index.base}/simple/")
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def options(**kw: object) -> InspectOptions:
    return InspectOptions(**{**TARGET, **kw})  # type: ignore[arg-type]


# --- local targets --------------------------------------------------------------------------------------


def test_local_wheel_and_binary(pymsis: dict[str, Path], env: Path) -> None:
    with zipfile.ZipFile(pymsis["0.10.0"]) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".so") and n.startswith("pymsis/"))
        so = env / Path(name).name
        so.write_bytes(zf.read(name))
    report = inspect_targets([str(pymsis["0.8.0"]), str(so)], options(numpy="2"))
    wheel, binary = report.items
    assert isinstance(wheel, WheelItem) and wheel.report.built_for is BuiltFor.NUMPY1
    assert wheel.verdict is Verdict.BROKEN and wheel.compatible is False
    assert isinstance(binary, BinaryItem) and binary.facts.built_for is BuiltFor.NUMPY2
    assert binary.module == so.name.split(".")[0] and binary.verdict is Verdict.OK
    doc = report.to_json()
    assert set(doc["results"][0]["binaries"][0]) >= BINARY_KEYS and set(doc["results"][1]) >= BINARY_KEYS
    assert doc["results"][0]["verdict"] == "broken"
    buffer = io.StringIO()
    render_inspect(report, Console(file=buffer, width=200))
    assert "    with numpy 2: ok" in buffer.getvalue().splitlines()  # said for a file as for a wheel, ok included


def test_directory(pymsis: dict[str, Path], env: Path) -> None:
    root = env / "site"
    with zipfile.ZipFile(pymsis["0.8.0"]) as zf:
        zf.extractall(root)
    own = next(p for p in root.rglob("*.so") if p.parent.name == "pymsis")
    (root / "numpy").mkdir()
    shutil.copy(own, root / "numpy" / "fake.so")  # numpy's own files are never judged (R0)
    shutil.copy(pymsis["0.10.0"], root / pymsis["0.10.0"].name)
    report = inspect_targets([str(root)], options())
    (item,) = report.items
    assert isinstance(item, DirectoryItem)
    by_path = {Path(b.path).relative_to(root).as_posix(): b for b in item.binaries}
    assert by_path["numpy/fake.so"].facts.built_for is BuiltFor.NONE
    assert any(b.facts.built_for is BuiltFor.NUMPY1 and b.module and b.module.startswith("pymsis.")
               for b in item.binaries)
    assert [w.report.built_for for w in item.wheels] == [BuiltFor.NUMPY2]
    assert item.built_for is BuiltFor.NUMPY1 and item.verdict is None and "verdict" not in item.to_json()


@pytest.mark.parametrize(("numpy", "verdict"), [("1.26", "ok"), ("2.0", "broken")])
def test_directory_judged_against_a_numpy_says_its_verdict(pymsis: dict[str, Path], env: Path, numpy: str,
                                                           verdict: str) -> None:
    """As a wheel or a single file does: in the text and in the JSON object."""
    with zipfile.ZipFile(pymsis["0.8.0"]) as zf:
        zf.extractall(env / "site")
    report = inspect_targets([str(env / "site")], options(numpy=numpy))
    doc = report.to_json()["results"][0]
    assert (doc["numpy"], doc["verdict"]) == (numpy, verdict)
    buffer = io.StringIO()
    render_inspect(report, Console(file=buffer, width=200))
    assert f"    with numpy {numpy}: {verdict}" in buffer.getvalue().splitlines()


def test_local_cache_second_run_reads_nothing(pymsis: dict[str, Path], env: Path) -> None:
    first = inspect_targets([str(pymsis["0.10.0"])], options())
    second = inspect_targets([str(pymsis["0.10.0"])], options())
    assert first.bytes_read > 0 and second.bytes_read == 0
    item = second.items[0]
    assert isinstance(item, WheelItem) and item.cached_members == len(item.report.outcome.members)
    uncached = inspect_targets([str(pymsis["0.10.0"])], options(use_cache=False))
    assert uncached.bytes_read == first.bytes_read


def test_errors_are_items_and_the_rest_continues(pymsis: dict[str, Path], env: Path) -> None:
    targets = ["./nope.whl", "not a requirement!", "no-such-project==1.0", "pymsis==0.9.0", str(pymsis["0.8.0"])]
    report = inspect_targets(targets, options())
    kinds = [type(i).__name__ for i in report.items]
    assert kinds == ["ErrorItem", "ErrorItem", "ErrorItem", "ErrorItem", "WheelItem"]
    messages = [i.message for i in report.items if isinstance(i, ErrorItem)]
    assert "no such file" in messages[0] and "requirement" in messages[1]
    assert "no project named 'no-such-project'" in messages[2] and "0.9.0" in messages[3]
    assert report.has_errors
    windows = inspect_targets(["pymsis==0.8.0", "pymsis<1"], options(platform="win_arm64"))
    pinned, ranged = (i.message for i in windows.items if isinstance(i, ErrorItem))
    assert pinned == ("no wheel of pymsis==0.8.0 for Python 3.11 on win_arm64 (0.8.0 has wheels for other "
                      "platforms or Pythons only)")  # not "newest matching release: 0.8.0", the very pin
    assert ranged.endswith("(newest matching release: 0.10.0)")


def test_bad_options() -> None:
    with pytest.raises(InspectError, match="numpy version"):
        inspect_targets(["x"], options(numpy="two"))
    with pytest.raises(InspectError, match="Python version"):
        inspect_targets(["x"], options(python_version="eleven"))
    for uv_name in ("aarch64-apple-darwin", "x86_64-manylinux_2_28", "linux"):  # uv's, not wheel tags
        with pytest.raises(InspectError, match="is not a wheel platform tag"):
            inspect_targets(["x"], options(platform=uv_name))
    with pytest.raises(InspectError, match="'bogus_platform' names no known operating system"):
        inspect_targets(["x"], options(platform="bogus_platform"))  # lock-check refuses it too: one check


def test_classify() -> None:
    assert classify("pandas==2.0.3").kind == "requirement"
    assert classify("https://h.example/a-1.0-py3-none-any.whl").kind == "url"
    assert classify("missing/file.so").kind == "error"
    assert classify("docopt-0.6.2.tar.gz").message == "no such file or directory: docopt-0.6.2.tar.gz"


@pytest.mark.parametrize("name", ["docopt-0.6.2.tar.gz", "x-1.0.zip"])
def test_an_sdist_is_an_error_saying_nothing_in_it_is_compiled(tmp_path: Path, name: str) -> None:
    sdist = tmp_path / name
    sdist.write_bytes(b"\x1f\x8b" + bytes(100))
    (item,) = inspect_targets([str(sdist)], options()).items
    assert isinstance(item, ErrorItem) and item.message.startswith("a source distribution or archive, not a wheel")
    assert f"pip wheel --no-deps {sdist}" in item.message


# --- index targets ----------------------------------------------------------------------------------------


def test_requirements_from_the_configured_index(env: Path, index: WheelServer) -> None:
    report = inspect_targets(["pymsis==0.8.0", "pymsis==0.10.0", "pymsis"], options(numpy="2"))
    old, new, latest = report.items
    assert isinstance(old, WheelItem) and old.report.built_for is BuiltFor.NUMPY1
    assert isinstance(new, WheelItem) and new.report.built_for is BuiltFor.NUMPY2 and new.compatible
    assert isinstance(latest, WheelItem) and latest.report.version == "0.10.0"  # rc1 is not picked
    doc = new.to_json()
    assert doc["upload_time"].startswith("2024-07-01") and doc["sha256"] and doc["bytes_read"] > 0
    assert doc["wheel_size"] == len(index.files[f"pymsis-0.10.0-{SUFFIX}"])
    assert report.requests > 0 and all("127.0.0.1" not in n for n in report.notes)


def test_a_requirement_marker_is_honoured(env: Path) -> None:
    """Python 3.11 on Linux: `python_version < "3"` excludes it, `sys_platform == "linux"` holds."""
    report = inspect_targets(['pymsis==0.10.0; python_version < "3"', 'pymsis==0.10.0; sys_platform == "linux"'],
                             options())
    excluded, kept = report.items
    assert isinstance(excluded, ErrorItem) and excluded.message == (
        'its marker (python_version < "3") excludes Python 3.11 on manylinux_2_17_x86_64: an installer would not '
        "install it there, so there is nothing to inspect")
    assert isinstance(kept, WheelItem) and kept.report.version == "0.10.0"


def test_remote_cache_second_run_reads_no_binary_bytes(env: Path) -> None:
    first = inspect_targets(["pymsis==0.10.0"], options())
    second = inspect_targets(["pymsis==0.10.0"], options())
    assert first.bytes_read > 0
    assert second.bytes_read == 0 and second.requests == 1  # the listing only
    item = second.items[0]
    assert isinstance(item, WheelItem) and item.report.built_for is BuiltFor.NUMPY2


def test_all_releases(env: Path) -> None:
    report = inspect_targets(["pymsis"], options(all_releases=True, use_cache=False))
    assert [(i.report.version, i.report.built_for.value) for i in report.items if isinstance(i, WheelItem)] == [
        ("0.7.0", "numpy1"), ("0.8.0", "numpy1"), ("0.10.0", "numpy2")]


def test_sample_option(env: Path) -> None:
    report = inspect_targets(["pymsis==0.10.0"], options(sample=1, use_cache=False))
    item = report.items[0]
    assert isinstance(item, WheelItem) and item.report.outcome.sampled and item.to_json()["sampled"] is True


def test_first_compatible(env: Path) -> None:
    report = inspect_targets(["pymsis"], options(first_compatible=True, use_cache=False))
    (item,) = report.items
    assert isinstance(item, SearchItem)
    assert item.found == "0.10.0" and str(item.numpy) == "2"
    assert item.skipped_before_cutoff == 1  # 0.7.0 was uploaded before NumPy 2 existed
    assert item.cutoff is not None and item.cutoff.date().isoformat() == "2024-03-11"  # derived from the index
    verdicts = {i.report.version: i.compatible for i in item.inspected}
    assert verdicts == {"0.8.0": False, "0.10.0": True}
    assert not next(i for i in item.inspected if i.report.version == "0.10.0").report.outcome.sampled
    doc = item.to_json()
    assert doc["found"] == "0.10.0" and len(doc["inspected"]) == 2


def test_first_compatible_with_old_numpy(env: Path) -> None:
    report = inspect_targets(["pymsis"], options(first_compatible=True, numpy="1.26", use_cache=False))
    (item,) = report.items
    assert isinstance(item, SearchItem) and item.found == "0.7.0" and item.cutoff is None


@pytest.mark.parametrize(("target", "newest", "found"), [
    ("oldpure", False, "1.0"), ("oldpure", True, "1.1"), ("oldpure==1.1", False, "1.1"),
    ("mixed", False, "0.1"), ("mixed", True, "0.1")])
def test_a_release_from_before_numpy_2_without_its_c_api_is_compatible_with_numpy_2(
        env: Path, target: str, newest: bool, found: str) -> None:
    """Every release predates NumPy 2: none could be built for it, but one without NumPy's C-API is compatible,
    and only reading it tells (mixed 0.2 is built for NumPy 1.x)."""
    mode = {"last_compatible": True} if newest else {"first_compatible": True}
    (item,) = inspect_targets([target], options(numpy="2", use_cache=False, **mode)).items
    assert isinstance(item, SearchItem) and item.found == found, item
    assert item.note is not None and f"{found} predates NumPy 2" in item.note and "uses no NumPy C-API" in item.note
    assert found in {i.report.version for i in item.inspected} and item.skipped_before_cutoff == 0
    mixed = {i.report.version: i.compatible for i in item.inspected if i.report.version == "0.2"}
    assert mixed in ({}, {"0.2": False})


@pytest.mark.parametrize(("numpy", "newest", "found"), [("1.26", True, "1.0"), ("2", True, "2.0"),
                                                       ("2.0.1", True, "1.0"), ("2.0.2", False, "1.0")])
def test_a_release_whose_declared_numpy_excludes_the_one_asked_about_is_not_compatible(
        env: Path, numpy: str, newest: bool, found: str) -> None:
    """declares 2.0 is built for NumPy >= 1.20 but requires numpy>=2.0.2 (for Python < 3.14; the Python 3.14
    requirement is not the target's): installers will not put it beside numpy 1.26 or 2.0.1. `--numpy 2`
    means the 2.x series, which 2.0.2 is part of."""
    mode = {"last_compatible": True} if newest else {"first_compatible": True}
    (item,) = inspect_targets(["declares"], options(numpy=numpy, use_cache=False, **mode)).items
    assert isinstance(item, SearchItem) and item.found == found, item
    (second,) = inspect_targets(["declares==2.0"], options(numpy=numpy, use_cache=False)).items
    assert isinstance(second, WheelItem) and second.verdict is Verdict.OK
    doc = second.to_json()
    assert doc["numpy_requirement"] == "numpy>=2.0.2" and doc["installable"] is (numpy in ("2", "2.0.2"))
    assert doc["compatible"] is doc["installable"]
    if numpy == "1.26":
        buffer = io.StringIO()
        render_inspect(inspect_targets(["declares"], options(numpy=numpy, last_compatible=True)),
                       Console(file=buffer, width=200))
        text = buffer.getvalue()
        assert re.search(r"2\.0 .* no \(declares numpy>=2\.0\.2\)", text), text
        render_inspect(inspect_targets(["declares==2.0"], options(numpy=numpy)), Console(file=buffer, width=200))
        assert "    declares numpy>=2.0.2: installers will not put it beside numpy 1.26" in buffer.getvalue()


def test_the_declared_requirement_comes_from_the_metadata_the_index_serves_apart(env: Path, index: WheelServer) -> None:
    (item,) = inspect_targets(["served==1.0"], options(numpy="1.26", use_cache=False)).items
    assert isinstance(item, WheelItem) and item.numpy_requirement == "numpy>=2.0.2" and item.compatible is False
    assert index.requests_for(f"served-1.0-{SUFFIX}.metadata") == 1


@pytest.mark.parametrize(("requirement", "numpy", "admitted"), [
    (">=2.0.2", "2", True), (">=2.0.2", "2.0", True), (">=2.0.2", "2.0.1", False), (">2.0.2", "2.0", True),
    ("<2", "2", False), (">=1.26.0", "1.26", True), (">=2.0.2", "1.26", False), ("==2.1.*", "2", True),
    (">=1.0,!=2.0.0", "2", True), ("", "1.26", True), (">=2.1", "2.0", False), ("<1.27,>=1.26.4", "1.26", True),
])
def test_admits_takes_a_short_version_for_its_series(requirement: str, numpy: str, admitted: bool) -> None:
    assert admits(SpecifierSet(requirement), Version(numpy)) is admitted


def test_cutoff_falls_back_when_prereleases_are_missing(index: WheelServer) -> None:
    body = json.dumps({"meta": {"api-version": "1.1"}, "files": [
        {"filename": "numpy-2.0.0.tar.gz", "url": "/x", "hashes": {}, "upload-time": "2024-06-16T00:00:00Z"}]})
    index.pages["/mirror/numpy/"] = (JSON_TYPE, body.encode())
    with HttpClient(timeout=5) as http:
        cutoff, why = numpy2_cutoff(IndexClient(IndexConfig((f"{index.base}/mirror/",)), http))
    assert cutoff == NUMPY2_FIRST_PRERELEASE and "pre-releases are missing" in why


def test_text_rendering(env: Path, pymsis: dict[str, Path]) -> None:
    report = inspect_targets([str(pymsis["0.8.0"]), "pymsis", "./nope.whl"],
                             options(first_compatible=True))
    report.items.insert(0, inspect_targets([str(pymsis["0.8.0"])], options()).items[0])
    buffer = io.StringIO()
    render_inspect(report, Console(file=buffer, width=120), verbose=True)
    text = buffer.getvalue()
    assert "numpy1" in text and "first release compatible with numpy 2: 0.10.0" in text and "error" in text
    assert re.search(r"read [0-9.]+ [KM]B of binaries and wheels in [0-9]+ HTTP requests?\n", text)

    local = inspect_targets([str(pymsis["0.8.0"])], options(use_cache=False))
    buffer = io.StringIO()
    render_inspect(local, Console(file=buffer, width=120))
    assert local.requests == 0 and re.search(r"read [0-9.]+ [KM]B of binaries and wheels\n", buffer.getvalue())


# --- the real index ------------------------------------------------------------------------------------------


@pytest.mark.network
def test_real_pandas_wheels() -> None:
    start = time.monotonic()
    report = inspect_targets(["pandas==2.0.3", "pandas==2.2.3"], options(use_cache=False))
    old, new = report.items
    assert isinstance(old, WheelItem) and isinstance(new, WheelItem)
    assert old.report.built_for is BuiltFor.NUMPY1
    assert old.report.bytes_read < 0.15 * old.report.wheel_size
    assert new.report.built_for is BuiltFor.NUMPY2 and new.report.outcome.min_numpy == "1.20"
    assert new.report.bytes_read < new.report.wheel_size and not new.report.outcome.sampled
    assert time.monotonic() - start < 30


@pytest.mark.network
def test_real_first_compatible_pandas() -> None:
    report = inspect_targets(["pandas"], options(first_compatible=True, numpy="2", use_cache=False))
    (item,) = report.items
    assert isinstance(item, SearchItem) and item.found == "2.2.2"
    before = [i for i in item.inspected if i.report.version == "2.2.1"]
    assert before and before[0].compatible is False


@pytest.mark.network
def test_real_last_compatible_h5py() -> None:
    """h5py 3.14 and later declare numpy>=1.21.2 but are built for NumPy >= 2.0 (R2): the newest release a
    NumPy 1.26 environment can take is 3.13.0, and the first-compatible search no longer gives up when the
    newest release is the incompatible one."""
    report = inspect_targets(["h5py<3.16"], options(last_compatible=True, numpy="1.26", use_cache=False))
    item = report.items[0]
    assert isinstance(item, SearchItem) and item.found == "3.13.0", item
    assert item.to_json()["kind"] == "last-compatible" and item.cutoff is None
    by_version = {i.report.version: i for i in item.inspected}
    assert by_version["3.14.0"].compatible is False and by_version["3.14.0"].report.outcome.min_numpy == "2.0"
    assert not by_version["3.13.0"].report.outcome.sampled  # the answer is read in full
    assert len(item.inspected) < item.candidates  # not every release was read
    buffer = io.StringIO()
    render_inspect(report, Console(file=buffer, width=120))
    assert "h5py: newest release compatible with numpy 1.26: 3.13.0" in buffer.getvalue()

    first = inspect_targets(["h5py<3.16"], options(first_compatible=True, numpy="1.26")).items[0]
    assert isinstance(first, SearchItem) and first.found is not None
    assert Version(first.found) < Version("3.13.0") and first.to_json()["kind"] == "first-compatible"

    with pytest.raises(InspectError, match="needs --numpy"):
        inspect_targets(["h5py"], options(last_compatible=True))


@pytest.mark.network
def test_real_last_compatible_pandas_for_numpy_1_26_is_one_that_installs_beside_it() -> None:
    """pandas 3.1.0's binaries accept NumPy >= 1.20, but it requires numpy>=2.0.2 (on Python < 3.14): the newest
    release a NumPy 1.26 environment can take is 3.0.6, which requires numpy>=1.26.0."""
    report = inspect_targets(["pandas>=3.0.6,<=3.1.0"], options(last_compatible=True, numpy="1.26",
                                                               platform="manylinux_2_28_x86_64"))
    (item,) = report.items
    assert isinstance(item, SearchItem) and item.found == "3.0.6", item
    refused = next(i for i in item.inspected if i.report.version == "3.1.0")
    assert refused.verdict is Verdict.OK and refused.numpy_requirement == "numpy>=2.0.2" and not refused.compatible


@pytest.mark.network
def test_a_search_run_again_reads_nothing_but_the_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Facts and declared requirements are cached by the wheel's sha256: `fix` searches for every culprit on
    every run."""
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path))
    opts = options(last_compatible=True, numpy="1.26", platform="manylinux_2_28_x86_64")
    first = inspect_targets(["pandas>=3.0.6,<=3.1.0"], opts)
    again = inspect_targets(["pandas>=3.0.6,<=3.1.0"], opts)
    assert [i.found for i in (*first.items, *again.items)] == ["3.0.6", "3.0.6"]  # type: ignore[attr-defined]
    assert first.requests > 5 and (again.requests, again.bytes_read) == (1, 0)


@pytest.mark.network
def test_first_compatible_of_a_package_without_compiled_code_is_its_first_release() -> None:
    """Every release of requests works with any numpy: the answer predates NumPy 2, is found by bisection
    rather than a walk down every old release, and the counts agree with what was read."""
    report = inspect_targets(["requests"], options(first_compatible=True))
    item = report.items[0]
    assert isinstance(item, SearchItem)
    inspected = {i.report.version for i in item.inspected}
    assert item.found is not None and item.found in inspected
    assert all(i.report.outcome.built_for is BuiltFor.NONE for i in item.inspected)
    assert Version(item.found) == min(Version(v) for v in inspected)
    assert len(inspected) < item.candidates / 3
    assert item.note is not None and "uses no NumPy C-API" in item.note
    assert item.skipped_before_cutoff + len(inspected) <= item.candidates


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_an_error_not_a_project_name_nor_a_read_that_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "ff"  # also the name of a project on the index
    os.mkfifo(fifo)
    (item,) = inspect_targets([str(fifo)], options()).items
    assert isinstance(item, ErrorItem) and item.message == f"not a regular file or directory: {fifo}"


def test_release_searches_on_a_local_file_are_an_error_not_ignored(pymsis: dict[str, Path]) -> None:
    for mode in ({"first_compatible": True}, {"all_releases": True}):
        (item,) = inspect_targets([str(pymsis["0.8.0"])], options(**mode)).items
        assert isinstance(item, ErrorItem) and "give a project name, not a file" in item.message


def test_a_directory_with_unreadable_wheels_is_unknown_not_none(tmp_path: Path) -> None:
    (tmp_path / "a-1.0-py3-none-any.whl").write_text("not a zip")
    (item,) = inspect_targets([str(tmp_path)], options()).items
    assert isinstance(item, DirectoryItem) and len(item.errors) == 1
    assert item.built_for is BuiltFor.UNKNOWN and item.to_json()["built_for"] == "unknown"


def test_a_wheel_with_corrupt_deflate_data_is_unknown_not_a_crash(pymsis: dict[str, Path], tmp_path: Path) -> None:
    """zlib's own error, not a CRC mismatch: each damaged member is unknown, alone or in a directory."""
    damaged = corrupt_shared_objects(pymsis["0.8.0"], tmp_path / "damaged")
    for target in (damaged, damaged.parent):
        (item,) = inspect_targets([str(target)], options(use_cache=False)).items
        wheel = item.wheels[0] if isinstance(item, DirectoryItem) else item
        assert isinstance(wheel, WheelItem) and wheel.report.built_for is BuiltFor.UNKNOWN
        reasons = {m.facts.reason for m in wheel.report.outcome.members if m.facts.built_for is BuiltFor.UNKNOWN}
        assert reasons and all(r and r.startswith("cannot read from the wheel: Error -3") for r in reasons)


def test_text_evidence_is_the_deciding_marker_not_the_earliest(env: Path) -> None:
    """contourpy 1.2.1's module has pybind11's name before its NumPy markers: that says who built it, not for
    which NumPy."""
    wheel = fetch_wheel("contourpy==1.2.1", LINUX, "3.11")
    report = inspect_targets([str(wheel)], options(use_cache=False))
    (item,) = report.items
    assert isinstance(item, WheelItem) and item.report.outcome.members[0].facts.evidence[0].marker == "pybind11"
    buffer = io.StringIO()
    render_inspect(report, Console(file=buffer, width=200), verbose=True)
    (line,) = [ln for ln in buffer.getvalue().splitlines() if "contourpy._contourpy" in ln]
    assert line.split(" - ", 1)[1].startswith("R12 "), line
