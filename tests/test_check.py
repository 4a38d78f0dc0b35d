"""`abiguard check` end to end: real venvs built with uv, real pandas wheels, real compiled modules."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from abiguard.binary import is_shared_object_name
from tests.support.build import numpy_extension
from tests.support.sarif import artifact_path, assert_valid_sarif
from tests.support.venvs import (
    as_egg_info,
    cached_venv,
    make_venv,
    site_packages,
    system_site_venv,
    user_site,
    uv,
    uv_env,
)
from tests.support.wheels import build_wheel

pytestmark = [pytest.mark.venv, pytest.mark.network]


@pytest.fixture(autouse=True, scope="module")
def _private_result_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test run gets its own result cache: results from an older abiguard must not leak in."""
    old = os.environ.get("ABIGUARD_CACHE_DIR")
    os.environ["ABIGUARD_CACHE_DIR"] = str(tmp_path_factory.mktemp("result-cache"))
    yield
    if old is None:
        os.environ.pop("ABIGUARD_CACHE_DIR")
    else:
        os.environ["ABIGUARD_CACHE_DIR"] = old


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "abiguard", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


def check_json(python: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = run("check", "--python", str(python), "--format", "json", *extra)
    assert proc.returncode in (0, 1, 2), proc.stderr
    doc = json.loads(proc.stdout)
    # errors (a damaged install, an unreadable dist-info) are never a pass; conflicts win over them
    assert proc.returncode == (1 if doc["summary"]["conflicts"] else 2 if doc["errors"] else 0), proc.returncode
    return proc.returncode, doc


def dist(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [d for d in doc["distributions"] if d["name"].lower() == name]
    assert found, [d["name"] for d in doc["distributions"]]
    return found[0]


@pytest.fixture(scope="module")
def broken_env() -> Path:
    return cached_venv("np2-pandas203", "numpy==2.0.2", "pandas==2.0.3")


@pytest.fixture(scope="module")
def good_env() -> Path:
    return cached_venv("np126-pandas203", "numpy==1.26.4", "pandas==2.0.3")


def test_numpy2_with_pandas_built_for_numpy1_is_broken(broken_env: Path) -> None:
    code, doc = check_json(broken_env)
    assert code == 1
    assert doc["schema"] == 1
    assert doc["environment"]["numpy"] == "2.0.2"
    assert doc["environment"]["python"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert doc["environment"]["executable"]
    pandas = dist(doc, "pandas")
    assert pandas["version"] == "2.0.3"
    assert pandas["verdict"] == "broken"
    broken = [b for b in pandas["binaries"] if b["verdict"] == "broken"]
    assert len(broken) > 20
    modules = {b["module"] for b in broken}
    assert "pandas._libs.algos" in modules
    for b in broken:
        assert b["built_for"] == "numpy1"
        assert not b["path"].startswith("/")
        assert {e["marker"] for e in b["evidence"]} & {"R4", "R4a", "R4b", "R6"}
        assert b["producer"] in ("cython", "c-api")
    assert dist(doc, "numpy")["verdict"] == "ok"
    summary = doc["summary"]
    assert summary["broken"] == 1 and summary["conflicts"] is True
    assert summary["binaries_broken"] == len(broken)
    assert 0 < summary["bytes_read"] < summary["bytes_total"]


def test_text_report_names_modules_reason_and_ways_out(broken_env: Path) -> None:
    proc = run("check", "--python", str(broken_env))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "broken" in out and "pandas 2.0.3" in out
    assert "pandas._libs.algos" in out
    assert "no upper bound" in out
    assert 'numpy<2' in out
    assert "compiled using NumPy 1.x" in out
    assert proc.stderr == ""  # no progress when not on a terminal


def test_sarif_and_markdown_say_what_json_says(broken_env: Path) -> None:
    _, doc = check_json(broken_env)
    pandas = dist(doc, "pandas")
    broken = [b for b in pandas["binaries"] if b["verdict"] == "broken"]

    proc = run("check", "--python", str(broken_env), "--format", "sarif")
    assert proc.returncode == 1, proc.stderr
    sarif = json.loads(proc.stdout)
    (result,) = assert_valid_sarif(sarif)  # one result per distribution, not per shared object
    assert result["ruleId"] == "numpy-abi-broken" and result["level"] == "error"
    assert result["properties"]["distribution"] == "pandas" and result["properties"]["version"] == "2.0.3"
    assert sorted(result["properties"]["modules"]) == sorted(b["module"] for b in broken)
    assert "numpy<2" in result["message"]["text"]
    (location,) = result["locations"]
    target = artifact_path(sarif, location)
    assert target.is_file() and target.relative_to(site_packages(broken_env)).as_posix() in {b["path"] for b in broken}
    assert location["logicalLocations"][0]["fullyQualifiedName"] in {b["module"] for b in broken}
    again = assert_valid_sarif(json.loads(run("check", "--python", str(broken_env), "--format", "sarif").stdout))
    assert again[0]["partialFingerprints"] == result["partialFingerprints"]  # stable: alerts are not duplicated

    proc = run("check", "--python", str(broken_env), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    md = proc.stdout
    assert f"| **broken** | pandas 2.0.3 | {len(broken)} of {len(pandas['binaries'])} |" in md
    assert "<details><summary>broken: pandas 2.0.3</summary>" in md and md.count("<details>") == 1
    assert "`pandas._libs.algos`" in md
    assert 'numpy&lt;2' in md  # HTML-escaped: `<2"` must not start a tag


def test_sarif_and_markdown_of_a_clean_environment(good_env: Path) -> None:
    proc = run("check", "--python", str(good_env), "--format", "sarif")
    assert proc.returncode == 0, proc.stderr
    assert assert_valid_sarif(json.loads(proc.stdout)) == []
    md = run("check", "--python", str(good_env), "--format", "markdown").stdout
    assert "No NumPy ABI conflicts found." in md and "| verdict |" not in md


def test_numpy1_with_pandas_built_for_numpy1_is_clean(good_env: Path) -> None:
    code, doc = check_json(good_env)
    assert code == 0
    assert dist(doc, "pandas")["verdict"] == "ok"
    assert doc["summary"]["conflicts"] is False
    proc = run("check", "--python", str(good_env))
    assert proc.returncode == 0 and "No NumPy ABI conflicts" in proc.stdout


def test_hypothetical_numpy_judges_without_installing(good_env: Path) -> None:
    code, doc = check_json(good_env, "--numpy", "2.1")
    assert code == 1
    assert doc["environment"]["numpy"] == "2.1"
    assert doc["environment"]["numpy_installed"] == "1.26.4"
    assert doc["environment"]["hypothetical_numpy"] is True
    assert dist(doc, "pandas")["verdict"] == "broken"


def test_bad_numpy_version_is_a_one_line_error(good_env: Path) -> None:
    proc = run("check", "--python", str(good_env), "--numpy", "two")
    assert proc.returncode == 2
    assert proc.stderr.startswith("abiguard: error:") and "Traceback" not in proc.stderr


def test_reverse_direction_module_needing_numpy2_under_numpy1(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", "numpy==1.26.4")
    numpy_extension("needs_np2", "2.0.2", site_packages(python), target="NPY_2_0_API_VERSION")
    numpy_extension("fine_np2", "2.0.2", site_packages(python))  # default target accepts 1.16+
    code, doc = check_json(python)
    assert code == 1
    unowned = {b["module"]: b for b in doc["unowned"]}
    assert unowned["needs_np2"]["verdict"] == "broken"
    assert unowned["needs_np2"]["min_numpy"] == "2.0"
    assert unowned["fine_np2"]["verdict"] == "ok"
    assert unowned["fine_np2"]["min_numpy"] == "1.16"
    # No distribution is broken: the summary itself must say what made the exit code 1.
    proc = run("check", "--python", str(python))
    assert proc.returncode == 1
    summary = proc.stdout.strip().splitlines()[-1]
    assert "0 broken" in summary and "1 unowned shared object broken or at risk" in summary, proc.stdout


DAMAGED = {  # distribution -> (file of its dist-info, new bytes or None to delete it, what the report says)
    "dmg-meta-random": ("METADATA", random.Random(0).randbytes(3000), "METADATA has no Name"),
    "dmg-meta-empty": ("METADATA", b"", "METADATA has no Name"),
    "dmg-meta-gone": ("METADATA", None, "METADATA is missing"),
    "dmg-record-random": ("RECORD", random.Random(1).randbytes(3000), "RECORD is not UTF-8 text"),
    "dmg-record-gone": ("RECORD", None, "RECORD is missing"),
}


@pytest.fixture(scope="module")
def local_wheels_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy 1.26.4 with distributions no index has: `floorpkg` declares numpy>=1.19.3 but is built for NumPy
    2.0 (as h5py 3.14 is), and holds two unreadable libraries; each `dmg-*` has a damaged dist-info."""
    tmp = tmp_path_factory.mktemp("local-wheels")
    needs2 = numpy_extension("needs2", "2.0.2", tmp / "build", target="NPY_2_0_API_VERSION")
    np1 = numpy_extension("np1mod", "1.26.4", tmp / "build").read_bytes()
    suffix = needs2.name[len("needs2"):]
    wheels = [build_wheel(tmp / "wheels", "floorpkg", "1.0", {
        "floorpkg/__init__.py": b"",
        f"floorpkg/needs2{suffix}": needs2.read_bytes(),
        f"floorpkg/truncated{suffix}": needs2.read_bytes()[:3000],
        f"floorpkg/empty{suffix}": b"",
    }, ["numpy>=1.19.3"])]
    for name in DAMAGED:
        package = name.replace("-", "_")
        wheels.append(build_wheel(tmp / "wheels", name, "1.0", {f"{package}/np1mod{suffix}": np1}, ["numpy"]))
    python = make_venv(tmp / "v", "numpy==1.26.4")
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), *map(str, wheels)],
                   check=True, env=uv_env())
    site = site_packages(python)
    for name, (file, data, _) in DAMAGED.items():
        target = site / f"{name.replace('-', '_')}-1.0.dist-info" / file
        if data is None:
            target.unlink()
        else:
            target.write_bytes(data)
    return python


def test_a_build_needing_a_newer_numpy_is_explained_and_its_unreadable_libraries_named(
    local_wheels_env: Path,
) -> None:
    proc = run("check", "--python", str(local_wheels_env))
    assert proc.returncode == 1, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "broken floorpkg 1.0 (1 of 3 shared objects)" in out
    assert ("why pip allowed it: floorpkg 1.0 requires 'numpy>=1.19.3', a lower bound below the NumPy 2.0 its "
            "binaries are built for, so pip and uv accept numpy 1.26.4 and `pip check` reports nothing") in out
    assert "no upper bound" not in out
    # numpy >= 2.0 would break the NumPy-1.x modules that the damaged distributions beside it left unowned
    assert "way out: go back to an older release of floorpkg built for numpy 1.26.4" in out
    assert ("way out: moving numpy cannot help: no numpy fits every binary and numpy requirement installed (numpy<2 "
            "for unowned dmg_") in out
    assert 'pip install "numpy' not in out
    # The broken verdict must not hide the libraries that could not be read: the first, then a count.
    (line,) = [li for li in proc.stdout.splitlines() if "not judged:" in li]
    assert re.fullmatch(r"    also 2 not judged: floorpkg/(empty|truncated)\S+: .+ \(\+1 more; --verbose lists all\)",
                        line), line
    assert "2 shared objects not judged" in proc.stdout.strip().splitlines()[-1]
    verbose = run("check", "--python", str(local_wheels_env), "--verbose").stdout
    listed = [li for li in verbose.splitlines() if "not judged:" in li]
    assert sorted(li.split("floorpkg/")[1].split(".")[0] for li in listed) == ["empty", "truncated"]
    assert not any("more" in li for li in listed)


def test_a_damaged_dist_info_is_one_error_and_its_libraries_are_still_judged(local_wheels_env: Path) -> None:
    """An absent RECORD is no damage (PEP 627 makes it optional, system package managers leave it out): one
    note names such distributions instead of an error for each."""
    _, doc = check_json(local_wheels_env)
    site = site_packages(local_wheels_env)
    damaged = {name: why for name, why in DAMAGED.items() if name != "dmg-record-gone"}
    assert len(doc["errors"]) == len(damaged)
    (note,) = doc["notes"]
    assert note.startswith("1 distribution has no RECORD") and note.endswith(": dmg-record-gone 1.0"), note
    for name, (_, _, says) in damaged.items():
        (error,) = [e for e in doc["errors"] if e.startswith(f"{site}/{name.replace('-', '_')}-1.0.dist-info: ")]
        assert says in error and error.endswith("its shared objects are judged as unowned"), error
    unowned = {b["path"]: b["verdict"] for b in doc["unowned"]}
    assert {path.split("/")[0] for path in unowned} == {name.replace("-", "_") for name in DAMAGED}
    assert set(unowned.values()) == {"ok"}  # built for NumPy 1.x, under numpy 1.26.4
    named = {d["name"] for d in doc["distributions"]}
    assert "floorpkg" in named and not named & set(DAMAGED)
    text = run("check", "--python", str(local_wheels_env)).stdout
    assert sum(line.startswith("error: ") for line in text.splitlines()) == len(damaged)
    assert sum(line.startswith("note: ") for line in text.splitlines()) == 1


def test_a_way_out_never_moves_numpy_below_what_a_judged_distribution_declares(tmp_path: Path) -> None:
    """pandas 3.1 declares numpy>=2.0.2 and h5py 3.9 is built for NumPy 1.x: `pip install "numpy<2"` would fix
    h5py and break pandas (pip asked to move numpy alone does not look at pandas)."""
    python = make_venv(tmp_path / "v", "numpy==2.2.6", "pandas==3.1.0", "h5py==3.9.0")
    out = run("check", "--python", str(python)).stdout
    block = out[out.index("broken  h5py 3.9.0"):].split("\n\n")[0]
    assert 'pip install "numpy' not in block, block
    assert ("moving numpy cannot help: no numpy fits every binary and numpy requirement installed (numpy<2 for "
            "h5py 3.9.0: ") in out, out
    assert "numpy>=2.0.2 for pandas 3.1.0 declares numpy>=2.0.2" in out, out


def test_a_distribution_with_broken_and_at_risk_modules_counts_each_kind(tmp_path: Path) -> None:
    """matplotlib 3.7.1 under numpy 2: most modules fail at import, `_tri` (pybind11 < 2.12) imports and may
    misbehave. The text and Markdown say how many of each, not all as the distribution's verdict."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2", "matplotlib==3.7.1")
    _, doc = check_json(python)
    mpl = dist(doc, "matplotlib")
    kinds = Counter(b["verdict"] for b in mpl["binaries"])
    assert kinds["broken"] and kinds["at-risk"], kinds
    said = f"{kinds['broken']} broken, {kinds['at-risk']} at risk, of {len(mpl['binaries'])}"
    assert f"broken  matplotlib 3.7.1  ({said} shared objects)" in run("check", "--python", str(python)).stdout
    assert f"| {said} |" in run("check", "--python", str(python), "--format", "markdown").stdout


def test_missing_interpreter_is_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = run("check", "--python", str(tmp_path / "nope" / "python"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Python interpreter" in lines[0]


def test_what_is_wrong_with_a_python_or_a_lockfile_is_said_precisely(tmp_path: Path) -> None:
    """A bare name that is no command on PATH but a file here is that file; a venv whose interpreter link is
    dangling says so; a lockfile argument that is a directory says so."""
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    venv = tmp_path / "dv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "gone")
    said = {}
    for args in (["check", "--python", "fakepy"], ["check", "--python", "dv"], ["lock-check", "."]):
        proc = subprocess.run([sys.executable, "-m", "abiguard", *args], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", proc
        said[args[-1]] = proc.stderr
    assert said["fakepy"] == f"abiguard: error: {fake} failed to describe itself: exit status 3, no output\n"
    assert said["dv"].startswith(f"abiguard: error: dv/bin/python is a broken link (to {tmp_path / 'gone'})")
    assert said["."] == "abiguard: error: no lockfile at .: it is a directory\n"


def test_malformed_binaries_are_unknown_and_the_rest_is_reported(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    site = site_packages(python)
    good = numpy_extension("old_np", "1.26.4", site)
    data = good.read_bytes()
    suffix = good.name[len("old_np"):]
    (site / f"truncated{suffix}").write_bytes(data[: len(data) // 3])
    (site / f"empty{suffix}").write_bytes(b"")
    (site / f"garbage{suffix}").write_bytes(b"\x7fELF" + os.urandom(4000))
    (site / "garbage_pe.pyd").write_bytes(b"MZ" + os.urandom(4000))
    (site / "garbage_macho.dylib").write_bytes(b"\xcf\xfa\xed\xfe" + os.urandom(4000))
    code, doc = check_json(python)
    assert code == 1
    paths = [b["path"] for b in doc["unowned"]]
    assert paths == sorted(paths)  # in a reader's order, not the directory's
    by_path = {b["path"]: b for b in doc["unowned"]}
    assert by_path[good.name]["verdict"] == "broken"
    for name in (f"truncated{suffix}", f"empty{suffix}", f"garbage{suffix}", "garbage_pe.pyd",
                 "garbage_macho.dylib"):
        assert by_path[name]["built_for"] == "unknown", name
        assert by_path[name]["verdict"] == "unknown"
        assert by_path[name]["reason"]
    assert dist(doc, "numpy")["verdict"] == "ok"


def test_fifos_named_like_a_library_or_a_record_are_errors_not_a_hang(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer: a check must not hang on one (it did, with no output)."""
    python = make_venv(tmp_path / "v", "numpy==1.26.4")
    site = site_packages(python)
    os.mkfifo(site / "numpy" / "stray.cpython-311-x86_64-linux-gnu.so")
    info = site / "fifo_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fifo-pkg\nVersion: 1.0\n\n")
    os.mkfifo(info / "RECORD")
    proc = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", str(python), "--format", "json",
                           "--no-cache"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    (stray,) = [b for b in doc["unowned"] if b["path"] == "numpy/stray.cpython-311-x86_64-linux-gnu.so"]
    assert (stray["verdict"], stray["reason"]) == ("unknown", "cannot open: not a regular file")
    (error,) = doc["errors"]
    assert error.startswith(f"{info}: RECORD cannot be read (not a regular file)"), error


def test_plain_shared_library_is_attributed_to_its_distribution(tmp_path: Path) -> None:
    lib = numpy_extension("helper", "1.26.4", tmp_path / "build")
    wheel = build_wheel(tmp_path, "arrowish", "1.0", {
        "arrowish/__init__.py": b"",
        "arrowish/libarrowish_python.so": lib.read_bytes(),
    }, ["numpy>=1.21"])
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), str(wheel)],
                   check=True, env=uv_env())
    code, doc = check_json(python)
    assert code == 1
    arrowish = dist(doc, "arrowish")
    assert arrowish["verdict"] == "broken"
    (binary,) = arrowish["binaries"]
    assert binary["path"] == "arrowish/libarrowish_python.so"
    assert binary["module"] is None
    assert arrowish["numpy_requirement"] == "numpy>=1.21"
    assert doc["unowned"] == []


def test_declared_requirements_match_pip_check(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", "numpy==1.26.4")
    subprocess.run([uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), "pandas==2.0.3"],
                   check=True, env=uv_env())
    code, doc = check_json(python)
    assert code == 1  # pip check parity: unsatisfied requirements are conflicts too
    ours = {(p["distribution"].lower(), p["requirement"].split(";")[0].split(">")[0].split("=")[0].strip())
            for p in doc["declared"]}
    pip = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert pip.returncode == 1
    theirs = set()
    for line in pip.stdout.splitlines():
        if " requires " in line:
            who, _, rest = line.partition(" requires ")
            theirs.add((who.split()[0].lower(), rest.split(",")[0].strip().lower()))
    assert {(d, n.lower()) for d, n in ours} == theirs
    assert all(p["problem"] == "missing" for p in doc["declared"])
    assert dist(doc, "pandas")["verdict"] == "ok"
    sarif = json.loads(run("check", "--python", str(python), "--format", "sarif").stdout)
    declared = [r for r in assert_valid_sarif(sarif) if r["ruleId"] == "declared-requirement"]
    assert len(declared) == len(doc["declared"])
    for result in declared:  # where the requirement is declared: code scanning drops a result without a place
        (location,) = result["locations"]
        target = artifact_path(sarif, location)
        assert target.name == "METADATA" and target.parent.name.startswith("pandas-2.0.3") and target.is_file()


def test_declared_check_is_remembered_until_requirements_change(tmp_path: Path) -> None:
    """An unchanged environment answers from memory, without importing packaging's requirement parser; an
    install that satisfies the missing requirements changes the answer."""
    python = make_venv(tmp_path / "v", "numpy==1.26.4")
    subprocess.run([uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), "pandas==2.0.3"],
                   check=True, env=uv_env())
    _, first = check_json(python)
    assert {p["requirement"].split(">")[0] for p in first["declared"]} == {"python-dateutil", "pytz", "tzdata"}
    code = ("import sys; from abiguard.cli import main; main(['check', '--python', sys.argv[1], '--format', 'json']);"
            "print('packaging.requirements' in sys.modules, file=sys.stderr)")
    again = subprocess.run([sys.executable, "-c", code, str(python)], capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout)["declared"] == first["declared"]
    assert again.stderr.strip().splitlines()[-1] == "False", again.stderr
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), "python-dateutil", "pytz", "tzdata"],
                   check=True, env=uv_env())
    code_after, after = check_json(python)
    assert (code_after, after["declared"]) == (0, [])
    assert subprocess.run([str(python), "-m", "pip", "check"], capture_output=True).returncode == 0


def test_venv_directory_and_virtual_env_default(broken_env: Path) -> None:
    venv_dir = broken_env.parent.parent
    proc = run("check", "--python", str(venv_dir), "--format", "json")
    assert proc.returncode == 1
    proc = run("check", "--format", "json", env={"VIRTUAL_ENV": str(venv_dir)})
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["environment"]["numpy"] == "2.0.2"


def test_check_does_not_write_into_the_environment(broken_env: Path) -> None:
    site = site_packages(broken_env)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in site.rglob("*"))
    run("check", "--python", str(broken_env))
    after = sorted((str(p), p.stat().st_mtime_ns) for p in site.rglob("*"))
    assert before == after


def test_works_when_the_target_cannot_import_numpy(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", "numpy==2.0.2", "pandas==2.0.3")
    shutil.rmtree(site_packages(python) / "numpy" / "_core")  # numpy now fails at import
    code, doc = check_json(python)
    assert code == 1
    assert dist(doc, "pandas")["verdict"] == "broken"


def test_numpy_uninstalled_under_its_users_is_broken_and_explained(tmp_path: Path) -> None:
    """pip check sees this one, so the report must not claim it does not: it says what happened instead."""
    python = make_venv(tmp_path / "v", "numpy==1.26.4", "pandas==2.0.3")
    subprocess.run([uv(), "pip", "uninstall", "--quiet", "--python", str(python), "numpy"], check=True, env=uv_env())
    proc = run("check", "--python", str(python))
    assert proc.returncode == 1, proc.stderr
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "broken pandas 2.0.3" in out and "numpy is not installed: fails at import" in out
    assert "but numpy is not installed (`pip uninstall` and `pip install --no-deps` do not ask what needs it)" in out
    assert "pip check reports this one" in out
    assert "no upper bound" not in out
    # a plain `pip install numpy` takes numpy 2, under which this pandas fails all the same
    assert 'way out: pip install "numpy<2"' in out


def test_remembered_probe_follows_a_changed_pyvenv_cfg(tmp_path: Path) -> None:
    """The interpreter's self-description is reused only while the interpreter and pyvenv.cfg are unchanged."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    cfg = python.parent.parent / "pyvenv.cfg"
    _, first = check_json(python)
    _, again = check_json(python)
    own = [str(site_packages(python))]
    assert first["environment"]["site_packages"] == again["environment"]["site_packages"] == own
    cfg.write_text(cfg.read_text().replace("system-site-packages = false", "system-site-packages = true"))
    base = subprocess.run([str(python), "-I", "-c", "import sys, sysconfig; p = sysconfig.get_paths(vars={"
                           "'base': sys.base_prefix, 'platbase': sys.base_prefix}); print(p['platlib'], p['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.split()
    joined = [p for p in dict.fromkeys(base) if os.path.isdir(p)]
    _, after = check_json(python)
    assert after["environment"]["site_packages"] == [*own, *joined]


def test_remembered_listing_sees_files_added_and_removed_later(tmp_path: Path) -> None:
    """The second scan reuses directory listings by mtime; a new or removed shared object must still show."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    site = site_packages(python)
    (site / "pkg" / "sub").mkdir(parents=True)
    _, first = check_json(python)
    assert first["unowned"] == []
    added = numpy_extension("late_np1", "1.26.4", site / "pkg" / "sub")
    code, second = check_json(python)
    assert code == 1
    assert [b["path"] for b in second["unowned"]] == [f"pkg/sub/{added.name}"]
    added.unlink()
    code, third = check_json(python)
    assert code == 0 and third["unowned"] == []


def test_shared_objects_a_record_lists_but_that_are_gone_are_an_error(tmp_path: Path) -> None:
    """numpy without its core fails every import: a clean verdict over what is left would hide it."""
    python = make_venv(tmp_path / "v", "numpy==1.26.4")
    site = site_packages(python)
    core = next((site / "numpy").rglob("_multiarray_umath*.so"))
    core.unlink()
    code, doc = check_json(python)
    assert code == 2  # nothing is broken by its ABI, but numpy is damaged: not a pass
    (error,) = doc["errors"]
    assert error.startswith("numpy 1.26.4: 1 shared object its RECORD lists is not on disk")
    assert core.relative_to(site).as_posix() in error
    text = run("check", "--python", str(python)).stdout
    assert f"error: {error}" in text and "No NumPy ABI conflicts among what could be read; 1 error above." in text
    markdown = run("check", "--python", str(python), "--format", "markdown").stdout
    assert "1 error below." in markdown and markdown.index("1 error below.") < markdown.index("### Errors")


def test_a_library_rewritten_in_place_with_its_size_and_mtime_kept_is_read_again(tmp_path: Path) -> None:
    """`cp -p` into an existing file keeps its path, size, mtime and inode; only its ctime says it changed."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    site = site_packages(python)
    new = numpy_extension("inplace", "2.0.2", tmp_path / "np2").read_bytes()
    old = numpy_extension("inplace", "1.26.4", tmp_path / "np1").read_bytes()
    size = max(len(new), len(old))  # bytes after the last section change nothing an inspection reads
    target = site / f"inplace{sysconfig.get_config_var('EXT_SUFFIX')}"
    target.write_bytes(new.ljust(size, b"\0"))
    time.sleep(2.1)  # facts of a file changed within the last two seconds are not remembered
    assert check_json(python)[0] == 0
    before = target.stat()
    with open(target, "r+b") as fh:
        fh.write(old.ljust(size, b"\0"))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    code, doc = check_json(python)
    assert code == 1 and [b["verdict"] for b in doc["unowned"]] == ["broken"]


def test_user_site_packages_are_checked_where_python_imports_them(tmp_path: Path) -> None:
    """`pip install --user pandas==2.0.3` next to a venv's numpy 2 breaks `import pandas`: the user's
    site-packages is on the path of a system-site venv (and of a plain interpreter), so it is checked."""
    python = system_site_venv(tmp_path / "v", "numpy==2.0.2", "pytz", "python-dateutil", "tzdata")
    env, site = user_site(tmp_path / "userbase", "pandas==2.0.3")
    imported = subprocess.run([str(python), "-c", "import pandas"], capture_output=True, text=True,
                              env={**uv_env(), **env})
    assert imported.returncode != 0 and "numpy" in imported.stderr  # what the user sees
    proc = run("check", "--python", str(python), "--format", "json", env=env)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr
    assert str(site) in doc["environment"]["site_packages"]
    assert dist(doc, "pandas")["verdict"] == "broken"
    verified = json.loads(run("check", "--python", str(python), "--verify", "--format", "json", env=env).stdout)
    summary = verified["summary"]  # the imports see the user's site-packages too
    assert summary["confirmed"] == summary["verified"] > 0 and summary["refuted"] == 0
    quiet = json.loads(run("check", "--python", str(python), "--format", "json",
                           env={**env, "PYTHONNOUSERSITE": "1"}).stdout)
    assert str(site) not in quiet["environment"]["site_packages"] and quiet["summary"]["broken"] == 0


def test_distributions_a_venv_hides_are_neither_judged_nor_unowned(tmp_path: Path) -> None:
    """A system-site venv with pandas 2.2.2 and numpy 2 in front of an older pandas 2.0.3 and numpy 1.26.4
    further down the path: Python imports the venv's, so nothing is broken, and the hidden copies' files are
    not 'unowned' either."""
    python = system_site_venv(tmp_path / "v", "numpy==2.0.2", "pandas==2.2.2")
    env, _ = user_site(tmp_path / "userbase", "pandas==2.0.3", "numpy==1.26.4")
    imported = subprocess.run([str(python), "-c", "import pandas, numpy; print(pandas.__version__, numpy.__version__)"],
                              capture_output=True, text=True, env={**uv_env(), **env})
    assert imported.stdout.split() == ["2.2.2", "2.0.2"], imported.stderr
    doc = json.loads(run("check", "--python", str(python), "--format", "json", env=env).stdout)
    assert doc["environment"]["numpy"] == "2.0.2" and dist(doc, "pandas")["version"] == "2.2.2"
    assert doc["unowned"] == [] and doc["errors"] == [] and doc["summary"]["broken"] == 0
    # the interpreter's own site-packages is on this venv's path too: what it declares is its own business
    assert not {p["distribution"].lower() for p in doc["declared"]} & {"pandas", "numpy"}


def test_a_leftover_dist_info_beside_the_real_one_is_named_and_the_files_decide(tmp_path: Path) -> None:
    """numpy-1.26.4.dist-info left beside numpy 2.0.2's (an interrupted install): the files on disk are 2.0.2's,
    which RECORD's hashes tell, so pandas 2.0.3 is judged against numpy 2 and found broken."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2", "pandas==2.0.3")
    older = site_packages(cached_venv("np126-pandas203", "numpy==1.26.4", "pandas==2.0.3"))
    old = next(older.glob("numpy-*.dist-info"))
    shutil.copytree(old, site_packages(python) / old.name)
    code, doc = check_json(python)
    assert code == 1 and doc["environment"]["numpy"] == "2.0.2"
    assert dist(doc, "pandas")["verdict"] == "broken" and doc["unowned"] == []
    (error,) = doc["errors"]
    assert error.startswith("numpy: 2 installations in ") and "the files on disk are 2.0.2's" in error


def test_an_egg_info_install_is_a_distribution(tmp_path: Path) -> None:
    """Debian's python3-numpy is an egg-info directory with PKG-INFO and top_level.txt and no file list: numpy
    is installed (pandas is fine with it), and the shared objects under numpy/ are numpy's own."""
    python = make_venv(tmp_path / "v", "numpy==1.26.4", "pandas==2.0.3")
    as_egg_info(site_packages(python), "numpy-*.dist-info", "numpy")
    code, doc = check_json(python)
    assert code == 0, doc
    assert doc["environment"]["numpy"] == "1.26.4" and doc["declared"] == []
    # what the wheel vendored beside numpy/ (numpy.libs) is outside the tree top_level.txt names
    assert {b["path"].split("/")[0] for b in doc["unowned"]} <= {"numpy.libs"}
    numpy = dist(doc, "numpy")
    assert numpy["version"] == "1.26.4" and len(numpy["binaries"]) > 10
    code, what_if = check_json(python, "--numpy", "2")
    assert code == 1 and dist(what_if, "pandas")["verdict"] == "broken"
    assert dist(what_if, "numpy")["verdict"] == "ok"  # numpy's own files move with it
    assert all(b["verdict"] == "ok" for b in what_if["unowned"])


def test_a_file_name_that_is_not_utf8_is_judged_and_shown_escaped(tmp_path: Path) -> None:
    """SQLite and a strict UTF-8 stdout both refuse such a name (Python keeps its bytes as surrogates)."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    built = numpy_extension("oddname", "1.26.4", tmp_path / "build")
    odd = os.fsencode(site_packages(python)) + b"/bad\xffname" + os.fsencode(built.name)[len("oddname"):]
    with open(odd, "wb") as fh:
        fh.write(built.read_bytes())
    for _ in range(2):  # the second is answered from what the first remembered
        proc = run("check", "--python", str(python), env={"PYTHONIOENCODING": "utf-8:strict"})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "broken bad\\udcffname" in proc.stdout
    doc = json.loads(run("check", "--python", str(python), "--format", "json").stdout)
    (path,) = [b["path"] for b in doc["unowned"] if b["path"].startswith("bad")]
    assert path.startswith("bad\\udcffname") and path.encode("utf-8")  # as the text says it; valid Unicode


def test_editable_installs_and_pth_directories_are_on_the_path_and_checked(tmp_path: Path) -> None:
    """What .pth files put on the import path is imported like site-packages: a setuptools editable install
    (its finder's MAPPING, read not run: attributed to the project) and a plain directory line (its packages;
    not a build tree beside them)."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    np1 = numpy_extension("old_np", "1.26.4", tmp_path / "build")
    project = tmp_path / "proj"
    (project / "edpkg").mkdir(parents=True)
    (project / "edpkg" / "__init__.py").write_text("")
    shutil.copy(np1, project / "edpkg" / np1.name)
    (project / "setup.py").write_text("from setuptools import setup\n"
                                      "setup(name='edproj', version='0.1', packages=['edpkg'],"
                                      " package_data={'edpkg': ['*.so']})\n")
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), "-e", str(project)], check=True,
                   env=uv_env())
    extra = tmp_path / "extra"
    (extra / "pthpkg").mkdir(parents=True)
    (extra / "pthpkg" / "__init__.py").write_text("")
    shutil.copy(np1, extra / "pthpkg" / np1.name)
    (extra / "build").mkdir()  # no __init__.py: not a package, nothing in it is imported as such
    shutil.copy(np1, extra / "build" / np1.name)
    (site_packages(python) / "extra.pth").write_text(f"# a comment\nimport os\n{extra}\n")
    for module in ("edpkg.old_np", "pthpkg.old_np"):  # what the user meets
        proc = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        assert "numpy.core.multiarray failed to import" in proc.stderr, proc.stderr
    code, doc = check_json(python)
    assert code == 1
    edproj = dist(doc, "edproj")
    assert edproj["verdict"] == "broken" and [b["module"] for b in edproj["binaries"]] == ["edpkg.old_np"]
    assert [(b["path"], b["verdict"]) for b in doc["unowned"]] == [(f"pthpkg/{np1.name}", "broken")]
    assert not (project / "edpkg" / "__pycache__").exists()  # read, not run


def test_a_linked_package_directory_is_followed_and_a_loop_is_not(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    outside = tmp_path / "outside"
    outside.mkdir()
    np1 = numpy_extension("old_np", "1.26.4", outside)
    (outside / "loop").symlink_to(outside)  # a link back up: followed, it would never end
    (site_packages(python) / "linked").symlink_to(outside)
    code, doc = check_json(python, "--thorough")
    assert code == 1
    assert [(b["path"], b["verdict"]) for b in doc["unowned"]] == [(f"linked/{np1.name}", "broken")]


def test_a_library_dropped_beside_installed_ones_is_found_and_judged(tmp_path: Path) -> None:
    """Unowned libraries are looked for beside the ones installers put (here: numpy's own core directory)."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    site = site_packages(python)
    core = next((site / "numpy").rglob("_multiarray_umath*.so")).parent
    added = numpy_extension("dropped_np1", "1.26.4", core)
    code, doc = check_json(python)
    assert code == 1
    assert {b["path"]: b["verdict"] for b in doc["unowned"]} == {added.relative_to(site).as_posix(): "broken"}
    assert dist(doc, "numpy")["verdict"] == "ok"


def test_thorough_also_looks_where_installers_put_only_headers_and_data(tmp_path: Path) -> None:
    """A library copied by hand into a directory an installer made for headers is not looked for by default
    (the README says so), and is found and judged with --thorough."""
    python = make_venv(tmp_path / "v", "numpy==2.0.2")
    site = site_packages(python)
    headers = next((site / "numpy").rglob("ndarraytypes.h")).parent
    assert not any(is_shared_object_name(p.name) for p in headers.iterdir())
    added = numpy_extension("hidden_np1", "1.26.4", headers)
    code, quick = check_json(python)
    assert code == 0 and quick["unowned"] == []
    code, thorough = check_json(python, "--thorough")
    assert code == 1
    assert {b["path"]: b["verdict"] for b in thorough["unowned"]} == {added.relative_to(site).as_posix(): "broken"}
    assert dist(thorough, "numpy") == dist(quick, "numpy")


def test_help_explains_each_command_and_its_exit_codes() -> None:
    for command in ("check", "inspect", "fix", "rollback", "install", "lock-check", "constraints"):
        proc = run(command, "--help", env={"COLUMNS": "100"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: abiguard {command}") and "exit codes" in proc.stdout
        assert max(len(line) for line in proc.stdout.splitlines()) <= 100


def test_an_unknown_option_is_named_with_the_help_of_its_command() -> None:
    proc = run("install", "--bogus", "--", "six")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "abiguard: error: unrecognized arguments: --bogus (installer options go after --)",
        "  hint: see `abiguard install --help`",
    ]
    proc = run("check", "--frobnicate")
    assert proc.returncode == 2 and "hint: see `abiguard check --help`" in proc.stderr


def test_a_stale_virtual_env_is_an_error_not_another_environment(tmp_path: Path) -> None:
    proc = run("check", env={"VIRTUAL_ENV": str(tmp_path / "deleted")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"VIRTUAL_ENV is {tmp_path / 'deleted'}, which has no bin/python" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_a_bad_verify_timeout_is_an_argument_error(good_env: Path, value: str) -> None:
    proc = run("check", "--python", str(good_env), "--verify", "--verify-timeout", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("abiguard: error: argument --verify-timeout:")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("cached", [False, True])
def test_output_that_cannot_be_written_is_an_error_never_a_pass(broken_env: Path, cached: bool) -> None:
    """A closed pipe or a full disk must not turn a broken environment's exit 1 into 0 (`set -o pipefail`)."""
    run("check", "--python", str(broken_env))  # keeps the answer the cached run recalls
    extra = [] if cached else ["--no-cache"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", str(broken_env), *extra],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "abiguard: error: cannot write the output: No space left on device\n"

    closed = subprocess.Popen([sys.executable, "-m", "abiguard", "check", "--python", str(broken_env), "-v",
                               *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert closed.stdout is not None and closed.stderr is not None
    closed.stdout.close()  # the reader went away before the report was written, as `| head -0` does
    assert closed.wait(timeout=300) == 2
    assert closed.stderr.read() == ""

    # started with standard output or standard error closed (`>&-`, `2>&-`), as a careless script does
    command = shlex.join([sys.executable, "-m", "abiguard", "check", "--python", str(broken_env), *extra])
    no_out = subprocess.run(f"{command} >&-", shell=True, stderr=subprocess.PIPE, text=True, timeout=300)
    assert no_out.returncode == 2 and no_out.stderr.startswith("abiguard: error: standard output is closed")
    no_err = subprocess.run(f"{command} 2>&-", shell=True, stdout=subprocess.PIPE, text=True, timeout=300)
    assert no_err.returncode == 1 and "broken  pandas 2.0.3" in no_err.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", ["", "1"])
@pytest.mark.parametrize(("args", "full"), [(["--help"], "stdout"), (["check", "--help"], "stdout"),
                                            (["--version"], "stdout"), (["--bogus"], "stderr"),
                                            (["check", "--python", "/nonexistent"], "stderr")])
def test_help_and_errors_that_cannot_be_written_exit_2(args: list[str], full: str, unbuffered: str) -> None:
    """--help into a full disk is not a pass either, and an error message that standard error cannot take
    still exits 2 (not Python's 1 for a traceback, nor 120 for a failed flush at exit), buffered or not."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    with open("/dev/full", "w") as sink:
        streams = {"stdout": sink, "stderr": subprocess.DEVNULL} if full == "stdout" else {
            "stdout": subprocess.DEVNULL, "stderr": sink}
        proc = subprocess.run([sys.executable, "-m", "abiguard", *args], env=env, timeout=60, **streams)
    assert proc.returncode == 2


def test_no_command_is_a_usage_error_on_standard_error() -> None:
    proc = run()
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("usage: abiguard") and "check" in proc.stderr
