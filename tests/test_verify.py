"""The import runner against real misbehaving extension modules, real venvs and real NumPy 1.x/2.x."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import time
from pathlib import Path

import pytest

from abiguard import verify
from abiguard.model import Verdict
from abiguard.verify import ImportOutcome, VerifyError, confirms, to_verification, verify_modules
from tests.support.build import numpy_extension, plain_extension
from tests.support.venvs import make_venv, site_packages

pytestmark = pytest.mark.venv

MISBEHAVING = {
    "vf_segv": {"init": "raise(SIGSEGV);", "body": "#include <signal.h>"},
    "vf_hang": {"init": "for (;;) sleep(1000);", "body": "#include <unistd.h>"},
    "vf_exit": {"init": "exit(3);", "body": "#include <stdlib.h>"},
    "vf_raise": {"init": 'PyErr_SetString(PyExc_ImportError, "vf_raise refuses to load"); return NULL;'},
    "vf_ok": {},
}


def snapshot(root: Path) -> dict[str, int]:
    """Every path under `root` with its mtime: a new file, a new __pycache__ or an edit changes it."""
    found = {str(root): root.stat().st_mtime_ns}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[path] = os.lstat(path).st_mtime_ns
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A fresh venv whose site-packages holds every kind of module that can go wrong; (python, sp, tmp)."""
    tmp = tmp_path_factory.mktemp("verify")
    python = make_venv(tmp / "v")
    sp = site_packages(python)
    for name, parts in MISBEHAVING.items():
        plain_extension(name, sp, **parts)
    # A package whose __init__ fails: its extension must be reported as parent-failed.
    (sp / "vf_badpkg").mkdir()
    (sp / "vf_badpkg" / "__init__.py").write_text("raise RuntimeError('vf_badpkg init is broken')\n")
    plain_extension("vf_inner", sp / "vf_badpkg")
    # A healthy package: its failing extension is the module's own import-error.
    (sp / "vf_goodpkg").mkdir()
    (sp / "vf_goodpkg" / "__init__.py").write_text("VALUE = 1\n")
    plain_extension("vf_inner", sp / "vf_goodpkg")
    plain_extension("vf_refuse", sp / "vf_goodpkg", init=MISBEHAVING["vf_raise"]["init"])
    # Python modules that end or flood the interpreter; also where -B matters (they would leave .pyc).
    (sp / "vf_sysexit.py").write_text("import sys\nsys.exit(4)\n")
    (sp / "vf_osexit.py").write_text("import os\nos._exit(5)\n")
    (sp / "vf_noisy.py").write_text(
        "import os, sys\n"
        "sys.stdout.write('abiguard-verify-0000000000000000:(\\'failed\\', \\'x\\', [\\'X\\'])\\n')\n"
        "for _ in range(300):\n"
        "    sys.stdout.write('o' * 65536)\n"
        "    sys.stderr.write('e' * 65536)\n"
        "os.write(1, b'raw fd 1 garbage\\n')\n"
        "sys.stdout.close()\n"
    )
    (sp / "vf_stdin.py").write_text("import sys\nDATA = sys.stdin.read()\n")
    (sp / "vf_cwd.py").write_text("import os\nCWD = os.getcwd()\nopen('vf_litter.txt', 'w').write('x')\n")
    pidfile = tmp / "spawned.pid"
    (sp / "vf_spawn.py").write_text(
        f"import subprocess\np = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\n"
    )
    return python, sp, tmp


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_every_failure_mode_is_reported_and_the_run_completes(env: tuple[Path, Path, Path]) -> None:
    python, sp, _ = env
    modules = [
        "vf_segv", "vf_hang", "vf_exit", "vf_raise", "vf_ok", "vf_badpkg.vf_inner", "vf_goodpkg.vf_inner",
        "vf_goodpkg.vf_refuse", "vf_sysexit", "vf_osexit", "vf_noisy", "vf_stdin", "vf_spawn",
        "vf_missing", "vf_ok",
    ]  # fmt: skip
    before = snapshot(sp.parent.parent.parent)  # the whole venv, not only site-packages
    calls: list[tuple[int, int]] = []
    started = time.monotonic()
    result = verify_modules(str(python), modules, jobs=4, timeout=3, progress=lambda d, t: calls.append((d, t)))
    elapsed = time.monotonic() - started

    assert list(result) == list(dict.fromkeys(modules))  # input order, duplicates once
    outcomes = {name: (r.outcome, r.message) for name, r in result.items()}
    assert outcomes == {
        "vf_segv": ("crashed", "SIGSEGV"),
        "vf_hang": ("timeout", "timed out after 3 s"),
        "vf_exit": ("crashed", "exited with status 3 during import"),
        "vf_raise": ("import-error", "ImportError: vf_raise refuses to load"),
        "vf_ok": ("ok", None),
        "vf_badpkg.vf_inner": ("parent-failed", "RuntimeError: vf_badpkg init is broken"),
        "vf_goodpkg.vf_inner": ("ok", None),
        "vf_goodpkg.vf_refuse": ("import-error", "ImportError: vf_raise refuses to load"),
        "vf_sysexit": ("import-error", "SystemExit: 4"),
        "vf_osexit": ("crashed", "exited with status 5 during import"),
        "vf_noisy": ("ok", None),
        "vf_stdin": ("ok", None),
        "vf_spawn": ("ok", None),
        "vf_missing": ("import-error", "ModuleNotFoundError: No module named 'vf_missing'"),
    }
    bad = result["vf_badpkg.vf_inner"]
    assert (bad.parent, bad.parent_outcome) == ("vf_badpkg", "import-error")
    # faulthandler's last words: where it crashed, and where it hung just before it was killed.
    assert "Segmentation fault" in (result["vf_segv"].detail or "")
    assert "Timeout" in (result["vf_hang"].detail or "")
    assert 2.9 <= result["vf_hang"].seconds < 6
    assert elapsed < 10  # the hang cost its timeout once, in parallel with everything else
    # Progress: 0 first, then one call per distinct module, from this thread, ending at the total.
    assert calls == [(i, 14) for i in range(15)]
    # Nothing was written into the environment: no bytecode, no new files, no changed mtimes.
    assert snapshot(sp.parent.parent.parent) == before
    assert not (sp / "__pycache__").exists() and not (sp / "vf_goodpkg" / "__pycache__").exists()


def test_background_processes_started_by_an_import_are_ended(env: tuple[Path, Path, Path]) -> None:
    python, _, tmp = env
    pidfile = tmp / "spawned.pid"
    pidfile.unlink(missing_ok=True)
    assert verify_modules(str(python), ["vf_spawn"])["vf_spawn"].outcome == "ok"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_an_interrupted_run_ends_its_children_at_once(env: tuple[Path, Path, Path]) -> None:
    python, _, _ = env

    def progress(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt  # what Ctrl-C raises in the calling thread

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        verify_modules(str(python), ["vf_hang", "vf_ok"], jobs=2, timeout=60, progress=progress)
    assert time.monotonic() - started < 10  # not the hang's 60 s timeout


def test_child_runs_in_an_empty_temporary_directory(
    env: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python, sp, _ = env
    # A directory named like an installed module in our cwd must not shadow it (nor receive litter).
    (tmp_path / "vf_goodpkg").mkdir()
    (tmp_path / "vf_goodpkg" / "__init__.py").write_text("raise ImportError('shadowed by the cwd')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # -I: ignored
    result = verify_modules(str(python), ["vf_goodpkg.vf_inner", "vf_cwd"])
    assert result["vf_goodpkg.vf_inner"].outcome == "ok"
    assert result["vf_cwd"].outcome == "ok"
    assert not (tmp_path / "vf_litter.txt").exists()
    assert not (sp / "vf_litter.txt").exists()


def test_not_isolated_honours_pythonpath(
    env: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python, _, _ = env
    (tmp_path / "vf_frompath.py").write_text("X = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert verify_modules(str(python), ["vf_frompath"])["vf_frompath"].outcome == "import-error"
    assert verify_modules(str(python), ["vf_frompath"], isolated=False)["vf_frompath"].outcome == "ok"
    assert not (tmp_path / "__pycache__").exists()  # -B also applies without -I


def test_an_unusable_interpreter_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="cannot run"):
        verify_modules(str(tmp_path / "no-python"), ["json"])
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Unknown option: -I' >&2\nexit 2\n")
    fake.chmod(0o755)
    with pytest.raises(VerifyError, match="Unknown option: -I"):
        verify_modules(str(fake), ["json"])
    assert verify_modules(str(fake), []) == {}


def test_child_script_is_plain_python_3_6() -> None:
    ast.parse(verify._CHILD, feature_version=(3, 6))
    assert "import json" not in verify._CHILD  # ~8 ms per module on 3.11; the report is an ascii() tuple


def old_pythons() -> list[str]:
    found = {shutil.which(f"python3.{minor}") for minor in range(6, 10)}
    found.update(glob.glob(os.path.expanduser("~/.pyenv/versions/3.[6-9].*/bin/python3")))
    return sorted(p for p in found if p and "/shims/" not in p)


@pytest.mark.skipif(not old_pythons(), reason="no Python 3.6-3.9 on this machine")
def test_child_runs_on_old_pythons() -> None:
    for python in old_pythons():
        result = verify_modules(python, ["json", "email.mime.text", "vf_missing", "vf_missing.sub"])
        assert [r.outcome for r in result.values()] == ["ok", "ok", "import-error", "parent-failed"], python


# ---------------------------------------------------------------------------------------------------
# Real NumPy: a module built for the other major version fails with NumPy's own message.


@pytest.fixture(scope="module")
def numpy2_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    python = make_venv(tmp_path_factory.mktemp("np2") / "v", "numpy==2.0.2")
    sp = site_packages(python)
    numpy_extension("old_np", "1.26.4", sp)
    numpy_extension("new_np", "2.0.2", sp, target="NPY_2_0_API_VERSION")
    return python, sp


@pytest.fixture(scope="module")
def numpy1_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    python = make_venv(tmp_path_factory.mktemp("np1") / "v", "numpy==1.26.4")
    sp = site_packages(python)
    numpy_extension("old_np", "1.26.4", sp)
    numpy_extension("new_np", "2.0.2", sp, target="NPY_2_0_API_VERSION")
    return python, sp


@pytest.mark.network
def test_numpy1_module_under_numpy2(numpy2_env: tuple[Path, Path]) -> None:
    python, sp = numpy2_env
    before = snapshot(sp)
    result = verify_modules(str(python), ["old_np", "new_np", "numpy"], jobs=2)
    old = result["old_np"]
    assert old.outcome == "numpy-abi"
    assert old.message == "ImportError: numpy.core.multiarray failed to import"
    assert old.detail is not None
    assert old.detail.startswith("A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.2")
    assert "Traceback" not in old.detail
    # Controls: the same venv imports a NumPy-2 build and numpy itself.
    assert (result["new_np"].outcome, result["numpy"].outcome) == ("ok", "ok")
    assert snapshot(sp) == before
    assert confirms(Verdict.BROKEN, old) is True
    assert confirms(Verdict.OK, old) is False
    assert confirms(Verdict.BROKEN, result["new_np"]) is False


@pytest.mark.network
def test_numpy2_module_under_numpy1(numpy1_env: tuple[Path, Path]) -> None:
    python, sp = numpy1_env
    before = snapshot(sp)
    result = verify_modules(str(python), ["new_np", "old_np"], jobs=2)
    new = result["new_np"]
    assert new.outcome == "numpy-abi"
    assert new.message == "ImportError: numpy._core.multiarray failed to import"
    assert new.detail is not None
    assert new.detail.startswith(
        "RuntimeError: module was compiled against NumPy C-API version 0x12 (NumPy 2.0) "
        "but the running NumPy has C-API version 0x11."
    )
    assert result["old_np"].outcome == "ok"
    assert snapshot(sp) == before


# ---------------------------------------------------------------------------------------------------
# Classification and agreement, on outcomes as the runner builds them.


@pytest.mark.parametrize(
    ("chain", "stderr", "expected"),
    [
        (["ImportError: numpy.core.multiarray failed to import"], "", "numpy-abi"),
        (["ImportError: numpy._core.multiarray failed to import"], "", "numpy-abi"),
        (["ImportError: numpy.core.umath failed to import"], "", "numpy-abi"),
        (["AttributeError: _ARRAY_API not found"], "", "numpy-abi"),
        (["ValueError: numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C "
          "header, got 88 from PyObject"], "", "numpy-abi"),
        (["ImportError: failed to load the extension"], "RuntimeError: module was compiled against NumPy "
         "C-API version 0x12 (NumPy 2.0) but the running NumPy has C-API version 0x11.\n", "numpy-abi"),
        (["ImportError: wrapper failed", "ImportError: numpy.core.multiarray failed to import"], "",
         "numpy-abi"),
        (["ImportError: libfoo.so.1: cannot open shared object file"], "", "import-error"),
        (["ModuleNotFoundError: No module named 'numpy'"], "", "import-error"),
    ],
)  # fmt: skip
def test_numpy_abi_classification(chain: list[str], stderr: str, expected: str) -> None:
    outcome = verify._classify("m", ("failed", "m", chain), 0, stderr, "", 0.1)
    assert (outcome.outcome, outcome.message) == (expected, chain[0])
    parent = verify._classify("p.m", ("failed", "p", chain), 0, stderr, "", 0.1)
    assert (parent.outcome, parent.parent, parent.parent_outcome) == ("parent-failed", "p", expected)


def test_stderr_is_not_searched_when_the_import_succeeded() -> None:
    outcome = verify._classify("m", ("ok",), 0, "numpy.core.multiarray failed to import\n", "", 0.1)
    assert (outcome.outcome, outcome.detail) == ("ok", None)


@pytest.mark.parametrize(
    ("verdict", "outcome", "expected"),
    [
        ("broken", "numpy-abi", True), ("broken", "ok", False),
        ("ok", "ok", True), ("ok", "numpy-abi", False), ("none", "numpy-abi", False),
        ("at-risk", "ok", True), ("at-risk", "numpy-abi", False),
        ("unknown", "ok", None), ("unknown", "numpy-abi", None),
        ("broken", "crashed", None), ("broken", "timeout", None), ("broken", "import-error", None),
        ("broken", "parent-failed", None), ("ok", "crashed", None), ("ok", "import-error", None),
    ],
)  # fmt: skip
def test_confirms(verdict: str, outcome: str, expected: bool | None) -> None:
    assert confirms(verdict, ImportOutcome(outcome, None)) is expected
    assert confirms(Verdict(verdict) if verdict != "none" else verdict, ImportOutcome(outcome, None)) is expected


def test_to_verification_names_the_failed_parent() -> None:
    outcome = ImportOutcome("parent-failed", "RuntimeError: boom", parent="pkg", parent_outcome="import-error")
    v = to_verification(Verdict.BROKEN, outcome)
    assert (v.outcome, v.message, v.confirms) == ("parent-failed", "pkg: RuntimeError: boom", None)
