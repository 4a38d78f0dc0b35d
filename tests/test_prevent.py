"""Prevention, end to end through the CLI: the guarded `install` on real venvs with real uv and pip, and
`lock-check` on lockfiles written by the real uv. Nothing is mocked; the index is the configured one.

The classic break: pandas 2.0.3 is built for NumPy 1.x, so `numpy>=2` must not be installed next to it, while
pandas 2.2.2 and later are built for NumPy 2.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.support.build import numpy_extension
from tests.support.sarif import artifact_path, assert_valid_sarif
from tests.support.venvs import make_venv, site_packages, uv, uv_env
from tests.support.wheels import build_wheel, corrupt_shared_objects, fetch_wheel
from tests.test_remote import WheelServer, nobody_listens

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

pytestmark = [pytest.mark.network, pytest.mark.venv]

OLD = ("numpy==1.26.4", "pandas==2.0.3")
BROKEN_PINS = "pandas==2.0.3\nnumpy==2.0.2\n"
FIXED_PINS = "pandas==2.2.3\nnumpy==2.0.2\n"
LINUX = ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]
UNKNOWN = "nonexistent-package-abiguard-xyz"

Cli = Callable[..., subprocess.CompletedProcess[str]]


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One result cache for the module: wheels read once are not read again by the next test."""
    return tmp_path_factory.mktemp("abiguard-cache")


@pytest.fixture
def cli(tmp_path: Path, result_cache: Path) -> Cli:
    """`cli("check", "--python", PY)`: abiguard in a subprocess, with its cache and state in temporary dirs."""
    env = uv_env()  # no VIRTUAL_ENV; the installers share the tests' uv cache
    env["ABIGUARD_CACHE_DIR"] = str(result_cache)
    env["ABIGUARD_STATE_DIR"] = str(tmp_path / "state")
    env.pop("CI", None)

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "abiguard", *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=300, stdin=subprocess.DEVNULL)

    return run


def records(python: Path) -> dict[str, bytes]:
    """Every RECORD of the venv, byte for byte: any install, upgrade or removal changes this."""
    site = site_packages(python)
    return {p.parent.name: p.read_bytes() for p in sorted(site.glob("*.dist-info/RECORD"))}


def version_of(python: Path, name: str) -> str:
    out = subprocess.run([str(python), "-I", "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def document(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["verdict"] for d in doc["distributions"]}


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single `abiguard: error:` line (no traceback, nothing else on stderr)."""
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("abiguard: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def old_venv(tmp_path: Path) -> Path:
    """numpy 1.26.4 + pandas 2.0.3: consistent today, broken by any `numpy>=2`."""
    return make_venv(tmp_path / "venv", *OLD)


# -- guarded install ---------------------------------------------------------------------------------


def test_install_refuses_numpy2_and_its_alternative_works(cli: Cli, old_venv: Path) -> None:
    py = old_venv
    before = records(py)
    assert {"numpy-1.26.4.dist-info", "pandas-2.0.3.dist-info"} <= set(before)

    # text: refused, names pandas and why, proposes a ready command
    refused = cli("install", "--python", py, "--", "numpy>=2")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    out = refused.stdout
    assert "This install would break the environment" in out
    assert "pandas: pandas 2.0.3 is built for NumPy 1.x but numpy would be 2." in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("Safe alternative: ")]
    text_command = shlex.split(line.removeprefix("Safe alternative: "))

    # JSON: the same verdict, as a document
    doc = document(cli("install", "--python", py, "--format", "json", "--", "numpy>=2"))
    assert doc["action"] == "refused"
    assert doc["args"] == ["numpy>=2"]
    (numpy_change,) = [c for c in doc["changes"] if c["name"] == "numpy"]
    assert numpy_change["from"] == "1.26.4" and Version(numpy_change["to"]) >= Version("2")
    assert numpy_change["kind"] == "upgrade"
    assert set(doc["problems"]) == {"pandas"}
    assert "built for NumPy 1.x" in doc["problems"]["pandas"]
    alt = doc["alternative"]
    assert sorted(alt["args"]) == ["numpy>=2", "pandas==2.2.2"]  # 2.2.2: the first pandas built for NumPy 2
    assert alt["command"] == text_command
    # abiguard runs here as `python -m abiguard`, not from PATH: the command says how to run this very one
    assert alt["command"][:7] == [sys.executable, "-m", "abiguard", "install", "--python", os.path.abspath(py), "--"]
    by_name = {c["name"]: c for c in alt["changes"]}
    assert by_name["pandas"]["kind"] == "upgrade" and by_name["pandas"]["to"] == "2.2.2"  # not the newest
    assert Version(by_name["numpy"]["to"]) >= Version("2")

    # dry-run of the alternative: judged safe, nothing installed
    dry = cli("install", "--python", py, "--dry-run", "--format", "json", "--", "pandas>=2.2.2", "numpy>=2")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert document(dry)["action"] == "dry-run" and document(dry)["problems"] == {}
    dry_text = cli("install", "--python", py, "--dry-run", "--", "numpy>=2")
    assert dry_text.returncode == 1 and "Dry run: nothing was installed." in dry_text.stdout

    # nothing of the above touched the environment
    assert records(py) == before
    assert version_of(py, "numpy") == "1.26.4"

    # the proposed command, run as printed: installs, and the result checks clean and imports
    done = cli(*text_command[3:])  # what `cli` runs: the same `python -m abiguard`
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed with uv" in done.stdout
    assert Version(version_of(py, "numpy")) >= Version("2")
    assert version_of(py, "pandas") == "2.2.2"
    check = cli("check", "--python", py)
    assert check.returncode == 0, check.stdout + check.stderr
    imported = subprocess.run([str(py), "-c", "import pandas; pandas.DataFrame({'a': [1, 2]}).sum()"],
                              capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr

    # the same requirements again: nothing to do
    again = document(cli("install", "--python", py, "--format", "json", "--", "pandas>=2.2.2", "numpy>=2"))
    assert again["action"] == "nothing-to-do" and again["changes"] == []


def test_install_that_breaks_a_numpy2_floor_offers_an_older_release(cli: Cli, tmp_path: Path) -> None:
    """h5py 3.16.0 is built for NumPy >= 2.0 though it declares numpy>=1.21.2: `numpy<2` resolves and `pip check`
    stays quiet, but h5py would fail to import. The alternative goes back to h5py 3.13.0, which accepts 1.26."""
    py = make_venv(tmp_path / "venv", "numpy==2.0.2", "h5py==3.16.0")
    before = records(py)
    refused = cli("install", "--python", py, "--format", "json", "--", "numpy<2")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    doc = document(refused)
    assert doc["action"] == "refused" and set(doc["problems"]) == {"h5py"}
    assert "needs numpy >= 2.0 but numpy would be 1." in doc["problems"]["h5py"]
    alt = doc["alternative"]
    assert alt is not None and alt["args"] == ["numpy<2", "h5py==3.13.0"]
    assert doc["alternatives"] == [alt]  # raising numpy to h5py's floor contradicts the install itself
    assert {c["name"]: (c["kind"], c["to"]) for c in alt["changes"]} == {
        "h5py": ("downgrade", "3.13.0"), "numpy": ("downgrade", "1.26.4")}
    assert records(py) == before

    done = cli(*alt["command"][3:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert version_of(py, "h5py") == "3.13.0" and version_of(py, "numpy") == "1.26.4"
    imported = subprocess.run([str(py), "-c", "import h5py"], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr


def test_install_offers_every_way_out_that_is_safe(cli: Cli, tmp_path: Path) -> None:
    """`install h5py` next to numpy 1.26.4 would bring h5py 3.16.0, built for NumPy >= 2.0. Two installs are
    safe and the user chooses: h5py's newest release that accepts numpy 1.26.4, or numpy raised to the floor."""
    py = make_venv(tmp_path / "venv", "numpy==1.26.4")
    before = records(py)
    refused = cli("install", "--python", py, "--", "h5py")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    lines = refused.stdout.splitlines()
    first = [ln for ln in lines if ln.startswith("Safe alternative: ")]
    second = [ln for ln in lines if ln.startswith("or: ")]
    assert len(first) == 1 and len(second) == 1, refused.stdout

    doc = document(cli("install", "--python", py, "--format", "json", "--", "h5py"))
    ways = doc["alternatives"]
    assert doc["alternative"] == ways[0] and len(ways) == 2
    assert [shlex.join(w["command"]) for w in ways] == [first[0].removeprefix("Safe alternative: "),
                                                        second[0].removeprefix("or: ")]
    moved = [{c["name"]: c["to"] for c in w["changes"]} for w in ways]
    assert "numpy" not in moved[0] and Version(moved[0]["h5py"]) < Version(next(
        c["to"] for c in doc["changes"] if c["name"] == "h5py"))
    assert Version(moved[1]["numpy"]) >= Version("2") and moved[1]["h5py"] == next(
        c["to"] for c in doc["changes"] if c["name"] == "h5py")
    for way in ways:  # each judged safe on its own
        dry = cli("install", "--python", py, "--dry-run", "--format", "json", "--", *way["args"])
        assert dry.returncode == 0 and document(dry)["problems"] == {}, dry.stdout + dry.stderr
    assert records(py) == before


def test_install_raises_numpy_and_moves_the_numpy1_builds_along_when_only_that_is_safe(
    cli: Cli, old_venv: Path,
) -> None:
    """`h5py>=3.14` needs numpy >= 2 (no older h5py is allowed), and numpy 2 breaks pandas 2.0.3: the way out
    is the three moves at once, which each alone missed ("No safe alternative found")."""
    before = records(old_venv)
    doc = document(cli("install", "--python", old_venv, "--dry-run", "--format", "json", "--", "h5py>=3.14"))
    assert doc["action"] == "refused" and "h5py" in doc["problems"]
    (way,) = doc["alternatives"]
    moved = {c["name"]: c["to"] for c in way["changes"]}
    assert Version(moved["numpy"]) >= Version("2") and Version(moved["pandas"]) >= Version("2.2")
    dry = cli("install", "--python", old_venv, "--dry-run", "--format", "json", "--", *way["args"])
    assert dry.returncode == 0 and document(dry)["problems"] == {}, dry.stdout + dry.stderr
    assert records(old_venv) == before


def test_install_offers_the_way_out_with_the_fewest_changes_first(cli: Cli, old_venv: Path) -> None:
    """opencv-python-headless would bring numpy 2 and break pandas 2.0.3. Moving pandas along turns out needless
    once resolved (the resolver then takes an opencv that keeps numpy 1.x), so `numpy<2` alone, one change
    fewer, is the first way out offered."""
    doc = document(cli("install", "--python", old_venv, "--dry-run", "--format", "json", "--",
                       "opencv-python-headless"))
    ways = doc["alternatives"]
    assert len(ways) == 2, ways
    assert [len(w["changes"]) for w in ways] == sorted(len(w["changes"]) for w in ways)
    assert ways[0]["args"] == ["opencv-python-headless", "numpy<2"] and doc["alternative"] == ways[0]


def test_install_judges_exactly_the_command_it_runs(cli: Cli, old_venv: Path, tmp_path: Path) -> None:
    """`-U numpy` upgrades numpy alone (pandas 2.0.3 stays, now broken): the dry run must say so, not judge a
    resolution of the whole environment that would also have upgraded pandas. Options that install elsewhere,
    or abiguard's own options given after the requirements, are refused before anything runs."""
    py = old_venv
    before = records(py)
    dry = cli("install", "--python", py, "--dry-run", "--format", "json", "--", "-U", "numpy")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    doc = document(dry)
    assert [c["name"] for c in doc["changes"]] == ["numpy"] and set(doc["problems"]) == {"pandas"}
    for args, words in ((["idna", "--dry-run"], "--dry-run cannot be used in a guarded install"),
                        (["--", "--target", str(tmp_path / "t"), "idna"], "installs outside the environment"),
                        (["idna", "--python", sys.executable], "give --python to abiguard")):
        refused = cli("install", "--python", py, *args)
        assert refused.returncode == 2 and words in refused.stderr, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
    assert records(py) == before and not (tmp_path / "t").exists()


def test_install_force_installs_after_a_warning(cli: Cli, old_venv: Path) -> None:
    py = old_venv
    dry = cli("install", "--python", py, "--force", "--dry-run", "--", "numpy>=2")
    assert dry.returncode == 1 and "installing anyway" not in dry.stdout, dry.stdout + dry.stderr
    forced = cli("install", "--python", py, "--force", "--", "numpy>=2")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "This install would break the environment" in forced.stdout
    assert forced.stdout.index("--force: installing anyway.") < forced.stdout.index("installed with uv")
    assert Version(version_of(py, "numpy")) >= Version("2")
    assert version_of(py, "pandas") == "2.0.3"

    check = cli("check", "--python", py, "--format", "json")
    assert check.returncode == 1, check.stdout + check.stderr
    assert verdicts(document(check))["pandas"] == "broken"


def test_install_refusal_with_pip(cli: Cli, old_venv: Path) -> None:
    py = old_venv
    before = records(py)
    proc = cli("install", "--python", py, "--installer", "pip", "--format", "json", "--", "numpy>=2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = document(proc)
    assert doc["installer"] == "pip" and doc["action"] == "refused"
    assert set(doc["problems"]) == {"pandas"}
    assert any(c["name"] == "numpy" and c["from"] == "1.26.4" for c in doc["changes"])
    assert doc["alternative"] is not None
    assert any(a.startswith("pandas==") for a in doc["alternative"]["args"])
    command = doc["alternative"]["command"]  # pasted, it installs with pip too
    assert command[command.index("--installer"):][:2] == ["--installer", "pip"]
    assert records(py) == before


def test_install_into_an_already_broken_env_is_not_undone_for_old_conflicts(cli: Cli, tmp_path: Path) -> None:
    """pandas 2.0.3 on numpy 2.0.2 is broken before the install; adding a package nothing there depends on
    (iniconfig: six, the obvious small one, comes with older python-dateutil releases) does not make it worse."""
    py = make_venv(tmp_path / "broken", "numpy==2.0.2", "pandas==2.0.3")
    assert not list(site_packages(py).glob("iniconfig-*.dist-info"))
    dry = cli("install", "--python", py, "--dry-run", "--", "iniconfig==2.0.0").stdout
    assert dry.startswith(f"Python {sys.version.split()[0]} at {py}, numpy 2.0.2\n"), dry  # which environment
    assert "note: the environment already has ABI conflicts, which this install leaves as they are: pandas 2.0.3 " \
           "(broken)" in dry
    assert "Dry run: this install breaks nothing more; nothing was installed." in dry  # not "safe"
    proc = cli("install", "--python", py, "--format", "json", "--", "iniconfig==2.0.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = document(proc)
    assert doc["problems"] == {} and doc["action"] == "installed" and doc["applied"]["ok"] is True
    assert version_of(py, "iniconfig") == "2.0.0"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_install_of_what_has_no_wheel_on_the_index_is_a_note_not_a_refusal(
    cli: Cli, tmp_path: Path, installer: str
) -> None:
    """An sdist-only release (docopt), a local directory and an editable are built at install: nothing to read
    before it, so a note (the installed result is re-checked); a local wheel is read from disk, and one built
    for NumPy 1.x next to numpy 2 is still refused."""
    py = make_venv(tmp_path / "venv", "numpy==2.0.2")
    project = tmp_path / "pkgs" / "pinpandas"
    (project / "pinpandas").mkdir(parents=True)
    (project / "pinpandas" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n'
                                             'build-backend = "setuptools.build_meta"\n'
                                             '[project]\nname = "pinpandas"\nversion = "1.0"\n')
    pure = build_wheel(tmp_path / "wheels", "pinpure", "1.0", {"pinpure/__init__.py": b""}, [])
    ext = numpy_extension("pinold_core", "1.26.4", tmp_path / "build")
    old = build_wheel(tmp_path / "wheels", "pinold", "1.0", {f"pinold/{ext.name}": ext.read_bytes()}, ["numpy"])
    before = records(py)
    for args, built in ((["docopt==0.6.2"], installer == "pip"), ([str(pure)], False), ([str(project)], True),
                        (["-e", str(project)], True)):
        proc = cli("install", "--python", py, "--installer", installer, "--dry-run", "--format", "json", "--", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = document(proc)
        assert doc["action"] == "dry-run" and doc["problems"] == {}, doc
        name = canonical(doc["changes"][0]["name"])
        assert [c["built"] for c in doc["changes"] if c["name"] == name] == [built]
        assert bool(doc["notes"]) == (name != "pinpure"), doc["notes"]
        assert all("re-checked" in n for n in doc["notes"])
    refused = cli("install", "--python", py, "--installer", installer, "--dry-run", "--", str(old))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "pinold: pinold 1.0 is built for NumPy 1.x but numpy would be 2.0.2" in refused.stdout
    assert records(py) == before

    done = cli("install", "--python", py, "--installer", installer, "--", "-e", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "install   pinpandas" in done.stdout and "(built at install)" in done.stdout
    assert f"installed with {installer}" in done.stdout
    assert version_of(py, "pinpandas") == "1.0"

    # what the user put there since is left in place, and the rollback says so
    (site_packages(py) / "user_data").mkdir()
    (site_packages(py) / "user_data" / "kept.txt").write_text("mine")
    back = cli("rollback", "--python", py)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "removed pinpandas==1.0" in back.stdout
    assert re.search(r"^  note: left in place: \S+/user_data \(new; no RECORD lists it\)$", back.stdout, re.M)
    assert records(py) == before


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_install_without_a_usable_index_is_an_error_not_a_refusal(cli: Cli, old_venv: Path, tmp_path: Path) -> None:
    """abiguard reads wheels only from http(s) indexes: a configuration it cannot use (a file:// index, or none
    and no pip to tell the default one) means nothing could be asked, which is not "this would break"."""
    env = {**uv_env(), "PIP_INDEX_URL": (tmp_path / "simple").as_uri(), "ABIGUARD_STATE_DIR": str(tmp_path / "s")}
    env.pop("CI", None)
    proc = subprocess.run([sys.executable, "-m", "abiguard", "install", "--python", str(old_venv), "--dry-run", "--",
                           "six==1.16.0"], capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("abiguard: error: the package index cannot answer: no usable http(s) package index")
    assert "hint: install reads the index given to the installer: abiguard install -- --index-url URL" in proc.stderr
    assert "would break" not in proc.stdout and "Traceback" not in proc.stderr
    fix = subprocess.run([sys.executable, "-m", "abiguard", "fix", "--python", str(make_venv(
        tmp_path / "broken", "numpy==2.0.2", "pandas==2.0.3")), "--strategy", "upgrade", "--no-cache"],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert fix.returncode == 2, fix.stdout + fix.stderr
    assert "no usable http(s) package index" in fix.stderr and "No safe plan" not in fix.stdout


_INDEX_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL",
                    "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE")


@pytest.fixture
def local_only_index(tmp_path: Path) -> Iterator[str]:
    """An index on 127.0.0.1 holding one project no other index has (abg-local-only 1.0, pure Python)."""
    import hashlib

    from abiguard.sources.index import JSON_TYPE

    made = build_wheel(tmp_path / "served", "abg-local-only", "1.0", {"abg_local_only/__init__.py": b""}, [])
    with zipfile.ZipFile(made) as zf:  # served apart (PEP 658): the server answers no HEAD for uv to probe
        metadata = zf.read("abg_local_only-1.0.dist-info/METADATA")
    server = WheelServer()
    server.files[made.name] = made.read_bytes()
    server.files[f"{made.name}.metadata"] = metadata
    files = [{"filename": made.name, "url": f"../../ok/{made.name}",
              "hashes": {"sha256": hashlib.sha256(made.read_bytes()).hexdigest()},
              "core-metadata": {"sha256": hashlib.sha256(metadata).hexdigest()}}]
    server.pages["/simple/abg-local-only/"] = (JSON_TYPE, json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "abg-local-only", "files": files}).encode())
    yield f"{server.base}/simple/"
    server.close()


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_install_takes_the_wheels_from_the_index_it_judged(tmp_path: Path, local_only_index: str,
                                                           installer: str) -> None:
    """The index is configured only where the other installer looks (pip's config file for uv, uv's variable
    for pip): abiguard reads the wheels there, so the installer is told to resolve and install from there too,
    and a project only that index has installs."""
    py = make_venv(tmp_path / "venv")
    env = {k: v for k, v in uv_env().items() if k not in _INDEX_VARIABLES and k != "CI"}
    env.update({"ABIGUARD_STATE_DIR": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    if installer == "uv":
        (tmp_path / "pip.conf").write_text(f"[global]\nindex-url = {local_only_index}\n")
        env["PIP_CONFIG_FILE"] = str(tmp_path / "pip.conf")
    else:
        env["UV_INDEX_URL"] = local_only_index

    def abiguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "abiguard", "install", "--python", str(py), "--installer",
                               installer, *args, "--", "abg-local-only"], capture_output=True, text=True, env=env,
                              timeout=300, stdin=subprocess.DEVNULL)

    dry = abiguard("--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [(c["name"], c["to"]) for c in document(dry)["changes"]] == [("abg-local-only", "1.0")]
    done = abiguard()  # the install itself (the step `fix --apply` shares) goes to the same index
    assert done.returncode == 0, done.stdout + done.stderr
    assert version_of(py, "abg-local-only") == "1.0"


def test_install_with_a_pip_option_uv_does_not_take_hints_at_pip(cli: Cli, tmp_path: Path) -> None:
    """uv refuses `--upgrade-strategy` in its own words; the hint says pip takes it, and pip does."""
    py = make_venv(tmp_path / "venv")
    args = ("--dry-run", "--", "--upgrade-strategy", "eager", "six==1.16.0")
    refused = cli("install", "--python", py, "--installer", "uv", *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "unexpected argument '--upgrade-strategy'" in refused.stderr and "Traceback" not in refused.stderr
    hint = "hint: uv does not take that option; pip may: put --installer pip before --"
    assert refused.stderr.rstrip().endswith(hint)
    assert "Usage:" not in refused.stderr and "--output-format" not in refused.stderr  # uv's usage of abiguard's call
    done = cli("install", "--python", py, "--installer", "pip", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_with_a_missing_requirements_file_says_only_that(cli: Cli, old_venv: Path, tmp_path: Path) -> None:
    proc = cli("install", "--python", old_venv, "--", "-r", tmp_path / "nonexist.txt")
    assert proc.returncode == 2
    assert "File not found" in one_line_error(proc) and "installed.txt" not in proc.stderr


# -- lock-check: real lockfiles written by uv --------------------------------------------------------


def _uv(*args: str, cwd: Path) -> None:
    done = subprocess.run([uv(), *args], cwd=cwd, env=uv_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _compile(root: Path, pins: str, *extra: str, target: str = "x86_64-manylinux_2_28") -> Path:
    """`uv pip compile` of `pins` in a directory of its own; `extra` picks the format and output name."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "req.in").write_text(pins)
    _uv("pip", "compile", "--quiet", "--python-version", "3.11", "--python-platform", target, *extra, "req.in",
        cwd=root)
    return root


def _project(root: Path, pins: str) -> Path:
    deps = ", ".join(json.dumps(p) for p in pins.split())
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.10"\ndependencies = [{deps}]\n'
    )
    _uv("lock", "--quiet", "--python", sys.executable, cwd=root)
    return root / "uv.lock"


@pytest.fixture(scope="module")
def locks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("locks")
    found: dict[str, Path] = {}
    for pair, pins in (("broken", BROKEN_PINS), ("fixed", FIXED_PINS)):
        d = _compile(root / f"pylock-{pair}", pins, "--format", "pylock.toml", "-o", "pylock.toml")
        found[f"pylock-{pair}"] = d / "pylock.toml"
        d = _compile(root / f"req-{pair}", pins, "--generate-hashes", "-o", "requirements.txt")
        found[f"requirements-{pair}"] = d / "requirements.txt"
        found[f"uvlock-{pair}"] = _project(root / f"project-{pair}", pins)
        for triple, tag in (("x86_64-pc-windows-msvc", "win_amd64"), ("aarch64-apple-darwin", "macosx_11_0_arm64")):
            d = _compile(root / f"pylock-{tag}-{pair}", pins, "--format", "pylock.toml", "-o", "pylock.toml",
                         target=triple)
            found[f"pylock-{tag}-{pair}"] = d / "pylock.toml"
    return found


@pytest.mark.parametrize("kind", ["pylock", "uvlock", "requirements"])
def test_lock_check_broken_pair(cli: Cli, locks: dict[str, Path], kind: str) -> None:
    lockfile = locks[f"{kind}-broken"]
    if kind == "requirements":  # pins and hashes only: each wheel is looked up on the index
        assert "--hash=sha256:" in lockfile.read_text() and "https://" not in lockfile.read_text()
    text = cli("lock-check", lockfile, *LINUX)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "broken  pandas 2.0.3" in text.stdout
    assert "1 broken" in text.stdout

    proc = cli("lock-check", lockfile, *LINUX, "--format", "json")
    assert proc.returncode == 1
    doc = document(proc)
    assert doc["errors"] == []
    assert doc["environment"]["numpy"] == "2.0.2"
    assert verdicts(doc) == {"pandas": "broken"}
    (pandas,) = doc["distributions"]
    assert pandas["version"] == "2.0.3"
    assert any(b["built_for"] == "numpy1" and b["path"].endswith("x86_64-linux-gnu.so") for b in pandas["binaries"])
    # reading stops once a member settles the verdict: the text says how many were not read, as the JSON lists
    assert pandas["unread"]
    read = len(pandas["binaries"])
    broken = sum(b["verdict"] == "broken" for b in pandas["binaries"])
    assert (f"({broken} broken of the {read} shared object{'s' * (read > 1)} read; {len(pandas['unread'])} more not "
            "read, since one built for NumPy 1.x was found)") in text.stdout

    # code scanning annotates the line of the lockfile that pins the culprit
    proc = cli("lock-check", lockfile, *LINUX, "--format", "sarif")
    assert proc.returncode == 1, proc.stderr
    sarif = json.loads(proc.stdout)
    (result,) = assert_valid_sarif(sarif)
    assert result["ruleId"] == "numpy-abi-broken" and result["properties"]["distribution"] == "pandas"
    (location,) = result["locations"]
    assert artifact_path(sarif, location) == lockfile
    line = lockfile.read_text().splitlines()[location["physicalLocation"]["region"]["startLine"] - 1]
    assert re.match(r'\s*(name = "pandas"|pandas==2\.0\.3)', line), line
    assert "pin \"numpy<2\"" in result["message"]["text"]
    md = cli("lock-check", lockfile, *LINUX, "--format", "markdown").stdout
    assert (f"| **broken** | pandas 2.0.3 | {broken} broken of the {read} read; {len(pandas['unread'])} more not "
            "read, since one built for NumPy 1.x was found |") in md


def test_lock_check_way_out_is_a_pin_and_its_command_finds_one(cli: Cli, locks: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """A lockfile user cannot run `abiguard fix` or `pip install`: the way out is a pin, and the `inspect`
    command printed for it, run as printed, names a release that makes the lockfile clean."""
    text = cli("lock-check", locks["requirements-broken"], *LINUX).stdout
    assert 'way out: pin "numpy<2"' in text and "abiguard fix" not in text and "pip install" not in text
    (line,) = [line for line in text.splitlines() if "--first-compatible" in line]
    command = shlex.split(line.split("`")[1])
    assert command[:2] == ["abiguard", "inspect"] and command[-4:] == LINUX
    answer = cli(*command[1:], "--format", "json")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    (item,) = document(answer)["results"]
    first = item["found"]
    assert Version(first) > Version("2.0.3")
    repinned = tmp_path / "requirements.txt"
    repinned.write_text(f"pandas=={first}\nnumpy==2.0.2\n")
    assert cli("lock-check", repinned, *LINUX).returncode == 0


@pytest.mark.parametrize("kind", ["pylock", "uvlock", "requirements"])
def test_lock_check_fixed_pair_is_clean(cli: Cli, locks: dict[str, Path], kind: str) -> None:
    proc = cli("lock-check", locks[f"{kind}-fixed"], *LINUX, "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = document(proc)
    assert doc["errors"] == []
    assert verdicts(doc) == {"pandas": "ok"}
    (pandas,) = doc["distributions"]
    assert pandas["version"] == "2.2.3"
    assert any(b["built_for"] == "numpy2" for b in pandas["binaries"])


@pytest.mark.parametrize(("tag", "suffix"), [("win_amd64", ".cp311-win_amd64.pyd"),
                                             ("macosx_11_0_arm64", "-darwin.so")])
def test_lock_check_windows_and_macos_targets(cli: Cli, locks: dict[str, Path], tag: str, suffix: str) -> None:
    broken = cli("lock-check", locks[f"pylock-{tag}-broken"], "--python-version", "3.11", "--platform", tag,
                 "--format", "json")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    doc = document(broken)
    assert doc["environment"]["platform"] == tag and doc["errors"] == []
    assert verdicts(doc) == {"pandas": "broken"}
    bad = [b for b in doc["distributions"][0]["binaries"] if b["verdict"] == "broken"]
    assert bad and all(b["path"].endswith(suffix) for b in bad)

    fixed = cli("lock-check", locks[f"pylock-{tag}-fixed"], "--python-version", "3.11", "--platform", tag,
                "--format", "json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert verdicts(document(fixed)) == {"pandas": "ok"}


def _glibc_x86_64_2_28() -> bool:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return False
    name, _, version = libc.partition(" ")
    return name == "glibc" and Version(version) >= Version("2.28")


@pytest.mark.skipif(not _glibc_x86_64_2_28(), reason="needs an x86_64 glibc >= 2.28 machine for the manylinux lock")
def test_lock_check_default_platform_is_this_machine(cli: Cli, locks: dict[str, Path]) -> None:
    """Without --platform the target is this machine, which accepts manylinux wheels (not only `linux_x86_64`)."""
    doc = document(cli("lock-check", locks["pylock-broken"], "--python-version", "3.11", "--format", "json"))
    assert doc["errors"] == []
    assert doc["environment"]["platform"].startswith("manylinux_")
    assert verdicts(doc) == {"pandas": "broken"}


# -- lock-check: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content"), [
    ("pylock.toml", 'lock-version = "1.0"\n[[packages]\nname = "pandas"\n'),
    ("uv.lock", "version = 1\n[[package]]\nname = \n"),
])
def test_lock_check_malformed_toml(cli: Cli, tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    proc = cli("lock-check", path, *LINUX)
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = one_line_error(proc)
    assert str(path) in line and "invalid TOML" in line


def test_lock_check_uses_the_extra_indexes_a_requirements_file_names(cli: Cli, tmp_path: Path) -> None:
    """As pip and uv do: the file's own --index-url fails (nothing listens there), its --extra-index-url answers.
    The index that failed is a note (once, not once per entry): its files were not considered, whichever one
    it is."""
    from abiguard.sources.index import default_index_url

    closed = f"{nobody_listens()}/simple/"
    pins = tmp_path / "requirements.txt"
    for options in (f"--index-url {closed}\n--extra-index-url {default_index_url()}\n",
                    f"--extra-index-url {closed}\n"):
        pins.write_text(f"{options}{BROKEN_PINS}")
        proc = cli("lock-check", pins, *LINUX, "--format", "json")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        doc = document(proc)
        assert verdicts(doc) == {"pandas": "broken"}
        (note,) = [n for n in doc["notes"] if closed in n]
        assert note.startswith(f"index {closed} could not be read, so only the other indexes' files were "
                               f"considered: Connection refused from {closed}"), note

    bad = cli("inspect", "pandas==2.0.3", "--index-url", "banana")
    assert bad.returncode == 2
    assert "skipped index banana (from --index-url): not an http(s) URL" in bad.stdout + bad.stderr


def test_lock_check_holds_the_index_wheel_to_the_files_hashes(cli: Cli, locks: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """uv's hashed requirements pass (test_lock_check_broken_pair); the same file with other digests names
    wheels no installer would accept, so nothing is judged from the index's wheels."""
    forged = tmp_path / "requirements.txt"
    forged.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, locks["requirements-broken"].read_text()))
    doc = document(cli("lock-check", forged, *LINUX, "--format", "json"))
    assert doc["distributions"] == []
    assert {"package numpy 2.0.2", "package pandas 2.0.3"} <= {e.split(":")[0] for e in doc["errors"]}
    assert all("matches none of the file's hashes" in e for e in doc["errors"])


def test_lock_check_looks_numpy_up_like_any_other_pin(cli: Cli, tmp_path: Path) -> None:
    """numpy's own wheel is not judged, but a numpy pin that no release answers is an error like any other."""
    pins = tmp_path / "requirements.txt"
    pins.write_text("numpy==99.0.0\npandas==2.0.3\n")
    doc = document(cli("lock-check", pins, *LINUX, "--format", "json"))
    assert doc["errors"] == ["package numpy 99.0.0: no release of numpy matches ==99.0.0"]


def test_lock_check_unknown_package_is_one_error_among_results(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "requirements.txt"
    broken.parent.mkdir()
    broken.write_text(BROKEN_PINS + f"{UNKNOWN}==1.0\n")
    # conflicts and errors: the conflict decides (exit 1), the error is reported with it
    proc = cli("lock-check", broken, *LINUX, "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pandas": "broken"}
    (error,) = doc["errors"]
    assert UNKNOWN in error and "1.0" in error and "\n" not in error

    text = cli("lock-check", broken, *LINUX)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert "broken  pandas 2.0.3" in text.stdout
    assert len([ln for ln in text.stdout.splitlines() if UNKNOWN in ln]) == 1

    # errors only: exit 2, the other entries still judged
    clean = tmp_path / "clean" / "requirements.txt"
    clean.parent.mkdir()
    clean.write_text(FIXED_PINS + f"{UNKNOWN}==1.0\n")
    proc = cli("lock-check", clean, *LINUX, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pandas": "ok"}
    assert len(doc["errors"]) == 1 and UNKNOWN in doc["errors"][0]
    assert "; 1 error above." in cli("lock-check", clean, *LINUX).stdout


def test_lock_check_missing_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "pylock.toml"
    proc = cli("lock-check", missing, *LINUX)
    assert proc.returncode == 2
    assert str(missing) in one_line_error(proc)


def test_lock_check_help_says_what_exit_2_means(cli: Cli) -> None:
    out = " ".join(cli("lock-check", "--help").stdout.split())  # argparse wraps the epilog
    assert "unreadable lockfile" in out and "could not be checked" in out and "no network" in out
    assert "1 conflicts found (also when some entries could not be checked)" in out
    assert "interpreter" not in out


def test_install_help_keeps_the_lines_of_its_epilog(cli: Cli) -> None:
    lines = cli("install", "--help").stdout.splitlines()
    assert 'example: abiguard install -- "numpy>=2"' in lines
    assert any(line.startswith("exit codes: 0 installed") for line in lines)


@pytest.mark.parametrize("platform", ["aarch64-apple-darwin", "x86_64-manylinux_2_28", "x86_64-pc-windows-msvc",
                                      "linux", "macos", "windows"])
def test_lock_check_refuses_uv_platform_names(cli: Cli, tmp_path: Path, platform: str) -> None:
    """uv's --python-platform names are refused up front, not taken for tags that match no wheel."""
    path = tmp_path / "requirements.txt"
    path.write_text(BROKEN_PINS)
    proc = cli("lock-check", path, "--python-version", "3.11", "--platform", platform)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line_error(proc)
    assert f"{platform!r} is not a wheel platform tag" in line and "manylinux_2_28_x86_64" in line


@pytest.mark.parametrize(("name", "content"), [
    ("requirements.txt", ""),
    ("requirements.txt", "# nothing pinned yet\n\n"),
    ("pylock.toml", 'lock-version = "1.0"\ncreated-by = "hand"\npackages = "x"\n'),
])
def test_lock_check_file_with_nothing_to_check_says_so(cli: Cli, tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    text = cli("lock-check", path, *LINUX)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "Nothing was checked" in text.stdout and "No NumPy ABI conflicts" not in text.stdout
    doc = document(cli("lock-check", path, *LINUX, "--format", "json"))
    assert doc["summary"]["checked"] == 0 and doc["errors"] == [] and doc["distributions"] == []


def test_lock_check_rye_lock_name_and_hash_option_with_a_space(cli: Cli, locks: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """Rye's requirements-dev.lock is pip's format; `--hash sha256:...` is read like `--hash=sha256:...`."""
    spaced = locks["requirements-broken"].read_text().replace("--hash=", "--hash ")
    assert "--hash sha256:" in spaced
    path = tmp_path / "requirements-dev.lock"
    path.write_text(spaced)
    doc = document(cli("lock-check", path, *LINUX, "--format", "json"))
    assert doc["errors"] == [] and verdicts(doc) == {"pandas": "broken"}


def test_lock_check_numpy_not_pinned_in_requirements_is_not_broken(cli: Cli, tmp_path: Path) -> None:
    """A requirements file without numpy leaves the choice to the installer: h5py's binaries use NumPy's C-API,
    but nothing says which numpy they meet, so they are not judged broken and the error says why."""
    path = tmp_path / "requirements.txt"
    path.write_text("h5py==3.16.0\n")
    proc = cli("lock-check", path, *LINUX, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"h5py": "unknown"}
    (error,) = doc["errors"]
    assert error.startswith(f"numpy is not pinned in {path}") and "h5py" in error
    reasons = {b["reason"] for b in doc["distributions"][0]["binaries"] if b["verdict"] == "unknown"}
    assert reasons == {"uses NumPy's C-API, but numpy is not pinned to one version in the file: cannot be judged"}
    text = cli("lock-check", path, *LINUX).stdout
    assert "unknown  h5py 3.16.0" in text and "0 broken" in text
    assert "not installed" not in text and "add numpy" not in text

    # a NumPy-1.x build stops the reading of its wheel, which the count says, without calling the verdict settled
    path.write_text("numpy>=2\npandas==2.0.3\n")
    text = cli("lock-check", path, *LINUX).stdout
    assert re.search(r"^unknown  pandas 2\.0\.3  \(1 unknown of the \d+ shared objects? read; \d+ more not read, "
                     r"since one built for NumPy 1\.x was found\)$", text, re.M), text
    assert "settled" not in text


def test_lock_check_reports_the_declared_numpy_requirement_and_a_pin_that_breaks_it(cli: Cli, tmp_path: Path) -> None:
    """pandas 3.1.1 is built for NumPy >= 1.20 but declares numpy>=2.0.2: next to numpy 1.26.4 its binaries are
    fine, its requirement is not, and that is a conflict as `check` reports it (exit 1). pandas 1.5.3's own
    requirement is reported with it; a complete lock without numpy lacks what it declares."""
    pins = tmp_path / "requirements.txt"
    pins.write_text("numpy==1.26.4\npandas==3.1.1\n")
    proc = cli("lock-check", pins, *LINUX, "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pandas": "ok"} and doc["summary"]["declared"] == 1
    (problem,) = doc["declared"]
    assert problem["distribution"] == "pandas" and problem["problem"] == "conflict" and problem["installed"] == "1.26.4"
    assert problem["requirement"].startswith("numpy>=2.0.2")
    text = cli("lock-check", pins, *LINUX)
    assert text.returncode == 1 and "No NumPy ABI conflicts" not in text.stdout
    assert "Declared requirements the pins break" in text.stdout
    assert "pandas 3.1.1 requires numpy>=2.0.2" in text.stdout and "but the lockfile pins 1.26.4" in text.stdout

    pins.write_text("numpy==1.26.4\npandas==1.5.3\n")
    proc = cli("lock-check", pins, *LINUX, "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = document(proc)
    assert [(d["name"], d["numpy_requirement"]) for d in doc["distributions"]] == [
        ("pandas", "numpy>=1.21.0,>=1.23.2")] and doc["declared"] == []

    pylock = tmp_path / "pylock.toml"
    pylock.write_text('lock-version = "1.0"\ncreated-by = "hand"\n[[packages]]\nname = "pandas"\n'
                      'version = "1.5.3"\n')
    doc = document(cli("lock-check", pylock, *LINUX, "--format", "json"))
    assert [(p["problem"], p["installed"]) for p in doc["declared"]] == [("missing", None)]


def test_lock_check_double_pin_is_an_error_and_a_repeated_pin_counts_once(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "np2.txt").write_text("numpy==2.0.2\n")
    (tmp_path / "base.txt").write_text("pandas==2.0.3\n")
    docs = []
    for order in ("numpy==1.26.4\n-r np2.txt\npandas==2.0.3\n", "-r np2.txt\npandas==2.0.3\nnumpy==1.26.4\n"):
        path = tmp_path / "requirements.txt"
        path.write_text(order)
        proc = cli("lock-check", path, *LINUX, "--format", "json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        docs.append(document(proc))
    for doc in docs:  # the same answer whichever pin comes first: pandas cannot be judged, neither one wins
        (error,) = doc["errors"]
        assert error.startswith("numpy is pinned to more than one version") and "1.26.4, 2.0.2" in error
        assert verdicts(doc) == {"pandas": "unknown"} and doc["environment"]["numpy"] is None

    path = tmp_path / "dup.txt"
    path.write_text("-r base.txt\npandas==2.0.3\nnumpy==2.0.2\n")
    doc = document(cli("lock-check", path, *LINUX, "--format", "json"))
    assert doc["errors"] == [] and [d["name"] for d in doc["distributions"]] == ["pandas"]
    text = cli("lock-check", path, *LINUX).stdout
    assert text.count("broken  pandas 2.0.3") == 1 and "1 broken" in text


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A clean uv project (numpy 1.26.4 with pandas 2.0.3) that also depends on a local pure-Python fork named
    h5py at 3.16.0 (the index's h5py 3.16.0 is built for NumPy >= 2) and on docopt 0.6.2, which has only an
    sdist; its uv.lock and `uv export` as pylock.toml and hashed requirements."""
    root = tmp_path_factory.mktemp("exported")
    build = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    fork = root / "fork"
    (fork / "src" / "h5py").mkdir(parents=True)
    (fork / "src" / "h5py" / "__init__.py").write_text("")
    (fork / "pyproject.toml").write_text(f'[project]\nname = "h5py"\nversion = "3.16.0"\n{build}')
    project = root / "p2"
    (project / "src" / "p2").mkdir(parents=True)
    (project / "src" / "p2" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p2"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["numpy==1.26.4", "pandas==2.0.3", "docopt==0.6.2", "h5py"]\n'
        f'{build}[tool.uv.sources]\nh5py = {{ path = "../fork" }}\n'
    )
    _uv("lock", "--quiet", "--python", sys.executable, cwd=project)
    _uv("export", "--quiet", "--frozen", "--format", "pylock.toml", "-o", "pylock.toml", cwd=project)
    _uv("export", "--quiet", "--frozen", "-o", "requirements.txt", cwd=project)
    return {"uvlock": project / "uv.lock", "pylock": project / "pylock.toml",
            "requirements": project / "requirements.txt"}


@pytest.mark.parametrize("kind", ["uvlock", "pylock", "requirements"])
def test_lock_check_exported_project_with_local_and_sdist_sources_is_clean(cli: Cli, exported: dict[str, Path],
                                                                          kind: str) -> None:
    """The project itself, the local fork and the sdist-only package are built at install: notes, exit 0, and the
    fork is not judged by the index's h5py wheel of the same version."""
    lockfile = exported[kind]
    if kind == "uvlock":  # the lock names docopt's sdist and no wheel: that is what decides, not the index
        raw = tomllib.loads(lockfile.read_text())
        (docopt,) = [p for p in raw["package"] if p["name"] == "docopt"]
        assert "sdist" in docopt and "wheels" not in docopt
    proc = cli("lock-check", lockfile, *LINUX, "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = document(proc)
    assert doc["errors"] == [] and verdicts(doc) == {"pandas": "ok"}
    notes = doc["notes"]
    assert any("docopt 0.6.2: sdist only" in n for n in notes), notes
    assert any("h5py" in n and "built from source at install" in n for n in notes) or any(
        n.endswith("../fork: built from source at install, not checked") for n in notes), notes
    assert any(re.match(r"package p2 (0\.1\.0 )?\((directory|editable): \.\)", n) or "-e ." in n
               for n in notes), notes  # the project itself, in uv.lock too
    text = cli("lock-check", lockfile, *LINUX)
    assert text.returncode == 0 and "No NumPy ABI conflicts found." in text.stdout
    assert text.stdout.count("note: ") == len(notes)


def test_lock_check_sdist_from_the_lock_needs_no_index(cli: Cli, exported: dict[str, Path]) -> None:
    """uv.lock names docopt's sdist itself: with an index that cannot be reached the answer is the same."""
    proc = cli("lock-check", exported["uvlock"], *LINUX, "--index-url", "http://127.0.0.1:9/simple",
               "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("docopt 0.6.2: sdist only" in n for n in document(proc)["notes"])


def test_lock_check_reads_local_wheels(cli: Cli, tmp_path: Path) -> None:
    """Wheels a lockfile names on disk (a PEP 751 `path`, a uv.lock from a find-links directory) are read from
    disk, so the broken pair is found; without numpy in a complete lock the wording is about the lockfile."""
    (tmp_path / "wh").mkdir()
    wheel = tmp_path / "wh" / fetch_wheel("pandas==2.0.3", "manylinux2014_x86_64", "3.11").name
    shutil.copyfile(fetch_wheel("pandas==2.0.3", "manylinux2014_x86_64", "3.11"), wheel)
    pandas = f'[[packages]]\nname = "pandas"\nversion = "2.0.3"\nwheels = [{{ path = "wh/{wheel.name}" }}]\n'
    head = 'lock-version = "1.0"\ncreated-by = "hand"\n'
    pylock = tmp_path / "pylock.toml"
    pylock.write_text(head + '[[packages]]\nname = "numpy"\nversion = "2.0.2"\n' + pandas)
    doc = document(cli("lock-check", pylock, *LINUX, "--format", "json"))
    assert doc["errors"] == [] and verdicts(doc) == {"pandas": "broken"}

    alone = tmp_path / "alone" / "pylock.toml"
    alone.parent.mkdir()
    alone.write_text(head + pandas.replace('path = "wh/', 'path = "../wh/'))
    text = cli("lock-check", alone, *LINUX)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "numpy is not in the lockfile" in text.stdout and "not installed" not in text.stdout

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["numpy==2.0.2", "pandas==2.0.3"]\n[tool.uv]\nfind-links = ["../wh"]\n'
    )
    _uv("lock", "--quiet", "--python", sys.executable, cwd=project)
    raw = tomllib.loads((project / "uv.lock").read_text())
    (entry,) = [p for p in raw["package"] if p["name"] == "pandas"]
    assert entry["wheels"] == [{"path": wheel.name}]  # uv took pandas from the find-links directory
    doc = document(cli("lock-check", project / "uv.lock", *LINUX, "--format", "json"))
    assert doc["errors"] == [] and verdicts(doc) == {"pandas": "broken"}


def test_lock_check_a_damaged_local_wheel_is_an_error_line_not_a_traceback(cli: Cli, tmp_path: Path) -> None:
    """A wheel whose deflate data is corrupt: its members are unknown, each says why, and the run exits 2."""
    wheel = corrupt_shared_objects(fetch_wheel("pymsis==0.8.0", "manylinux2014_x86_64", "3.11"), tmp_path / "wh")
    pylock = tmp_path / "pylock.toml"
    pylock.write_text('lock-version = "1.0"\ncreated-by = "hand"\n[[packages]]\nname = "numpy"\nversion = "1.26.4"\n'
                      f'[[packages]]\nname = "pymsis"\nversion = "0.8.0"\nwheels = [{{ path = "wh/{wheel.name}" }}]\n')
    proc = cli("lock-check", pylock, *LINUX, "--format", "json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pymsis": "unknown"} and doc["errors"]
    assert all(e.startswith(f"package pymsis 0.8.0: {wheel.name}: pymsis/") and "cannot read from the wheel: Error -3"
               in e for e in doc["errors"])


def test_lock_check_chooses_among_the_files_the_hashes_allow(cli: Cli, tmp_path: Path) -> None:
    """scikit-learn 1.4.0 has build-number rebuilds (`-1-cp311-...`) that rank first by tag; a hash that allows
    only the first build makes the installer take that one, so there is nothing to complain about. A pin that
    names no release says so, in the words `inspect` uses."""
    from abiguard.sources.index import IndexClient, default_index_url, load_index_config

    wanted = "scikit_learn-1.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    files = IndexClient(load_index_config(default_index_url())).files("scikit-learn")
    assert any(f.filename == wanted.replace("-1.4.0-", "-1.4.0-1-") for f in files)  # the better-ranked rebuild
    digest = next(f.sha256 for f in files if f.filename == wanted)
    pins = tmp_path / "requirements.txt"
    pins.write_text(f"numpy==1.26.4\nscikit-learn==1.4.0 --hash=sha256:{digest}\npandas==99.0\n")
    doc = document(cli("lock-check", pins, *LINUX, "--format", "json"))
    assert verdicts(doc) == {"scikit-learn": "ok"}
    assert doc["errors"] == ["package pandas 99.0: no release of pandas matches ==99.0"]


def test_lock_check_an_unreachable_index_is_one_error_not_one_per_entry(cli: Cli, tmp_path: Path) -> None:
    """Nothing listens at the index: after it is found unreachable it is not asked again; one error names the
    entries not checked, and the exit is 2 ("no network or an index that cannot answer")."""
    closed = f"{nobody_listens()}/simple"
    pins = tmp_path / "requirements.txt"
    names = ["numpy", "pandas", "scipy", "h5py", "six", "requests", "pytz"]
    pins.write_text("".join(f"{n}==1.0\n" for n in names))
    proc = cli("lock-check", pins, *LINUX, "--index-url", closed, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (error,) = document(proc)["errors"]
    assert error.startswith("the package index cannot be reached (Connection refused from ")
    assert error.endswith("7 entries that need it not checked (numpy, pandas, scipy, h5py, six, ...)")


def test_lock_check_judges_against_a_numpy_pinned_only_in_a_constraints_file(cli: Cli, tmp_path: Path) -> None:
    """pandas pulls numpy in and `-c` pins it, so pip installs numpy 2.0.2 next to pandas 2.0.3: broken, with a
    note that the constraint is what judged it. A constraint that pins nothing leaves numpy unpinned."""
    (tmp_path / "numpyc.txt").write_text("numpy==2.0.2\n")
    (tmp_path / "loose.txt").write_text("numpy<2.1\n")
    pins = tmp_path / "requirements.txt"
    pins.write_text("pandas==2.0.3\n-c numpyc.txt\n")
    proc = cli("lock-check", pins, *LINUX, "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pandas": "broken"} and doc["errors"] == [] and doc["environment"]["numpy"] == "2.0.2"
    assert doc["notes"] == [f"numpy is not pinned in {pins}; its -c constraint numpy==2.0.2 is the numpy the "
                            "installer takes when a requirement pulls it in, so pandas is judged against it"]
    pins.write_text("pandas==2.0.3\n-c loose.txt\n")
    doc = document(cli("lock-check", pins, *LINUX, "--format", "json"))
    assert verdicts(doc) == {"pandas": "unknown"} and doc["errors"][0].startswith("numpy is not pinned")


def test_lock_check_follows_the_files_format_and_find_links_options(cli: Cli, tmp_path: Path) -> None:
    """`--no-index -f DIR`: the wheels come from DIR (read there; the index is never asked, here one nobody
    listens at); a pin DIR lacks is an error. `--no-binary pandas`: pandas is built at install, a note.
    `--only-binary :all:` and an sdist-only release: the installer fails, an error."""
    closed = f"{nobody_listens()}/simple"
    (tmp_path / "wh").mkdir()
    for pin in ("pandas==2.0.3", "numpy==2.0.2"):
        wheel = fetch_wheel(pin, "manylinux2014_x86_64" if pin.startswith("pandas") else "manylinux_2_28_x86_64")
        shutil.copyfile(wheel, tmp_path / "wh" / wheel.name)
    pins = tmp_path / "requirements.txt"
    pins.write_text(f"--no-index\n-f wh\n{BROKEN_PINS}six==1.16.0\n")
    proc = cli("lock-check", pins, *LINUX, "--index-url", closed, "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = document(proc)
    assert verdicts(doc) == {"pandas": "broken"}
    assert doc["errors"] == [f"package six 1.16.0: no file of it in the --find-links locations ({tmp_path / 'wh'}),"
                             " and --no-index keeps the installer off the index"]

    pins.write_text(f"--no-binary pandas\n{BROKEN_PINS}")
    doc = document(cli("lock-check", pins, *LINUX, "--format", "json"))
    assert verdicts(doc) == {} and doc["errors"] == []
    assert doc["notes"] == ["package pandas 2.0.3 (sdist: --no-binary pandas): built from source at install, "
                            "not checked"]

    pins.write_text("--only-binary :all:\ndocopt==0.6.2\n")
    doc = document(cli("lock-check", pins, *LINUX, "--format", "json"))
    assert doc["errors"] == ["package docopt 0.6.2: sdist only for Python 3.11 on manylinux_2_28_x86_64, and "
                             "--only-binary forbids building it: the installer fails"] and doc["notes"] == []
