"""The import runner against real misbehaving extension modules, real venvs and real NumPy 1.x/2.x."""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from abiguard import verify
from abiguard.check import check, verify_findings
from abiguard.model import BinaryFinding, Verdict
from abiguard.verify import ImportOutcome, VerifyError, confirms, to_verification, verify_modules
from tests.support.build import numpy_extension, plain_extension
from tests.support.venvs import cached_venv, make_venv, site_packages

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
    # A package whose __init__ fails: reported as the parent; its extension is then imported on its own.
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
        "vf_missing", "vf_missing.sub", "vf_ok",
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
        "vf_badpkg.vf_inner": ("ok", None),
        "vf_goodpkg.vf_inner": ("ok", None),
        "vf_goodpkg.vf_refuse": ("import-error", "ImportError: vf_raise refuses to load"),
        "vf_sysexit": ("import-error", "SystemExit: 4"),
        "vf_osexit": ("crashed", "exited with status 5 during import"),
        "vf_noisy": ("ok", None),
        "vf_stdin": ("ok", None),
        "vf_spawn": ("ok", None),
        "vf_missing": ("import-error", "ModuleNotFoundError: No module named 'vf_missing'"),
        # The one case where the module cannot be imported without its parent: no parent to be found.
        "vf_missing.sub": ("parent-failed", "ModuleNotFoundError: No module named 'vf_missing'"),
    }
    bad = result["vf_badpkg.vf_inner"]
    assert (bad.parent, bad.parent_outcome, bad.parent_message) == (
        "vf_badpkg",
        "import-error",
        "RuntimeError: vf_badpkg init is broken",
    )
    assert result["vf_missing.sub"].parent == "vf_missing"
    assert all(r.parent is None for name, r in result.items() if name not in ("vf_badpkg.vf_inner", "vf_missing.sub"))
    # faulthandler's last words: where it crashed, and where it hung just before it was killed.
    assert "Segmentation fault" in (result["vf_segv"].detail or "")
    assert "Timeout" in (result["vf_hang"].detail or "")
    assert 2.9 <= result["vf_hang"].seconds < 6
    assert elapsed < 10  # the hang cost its timeout once, in parallel with everything else
    # Progress: 0 first, then one call per distinct module, from this thread, ending at the total.
    assert calls == [(i, 15) for i in range(16)]
    # Nothing was written into the environment: no bytecode, no new files, no changed mtimes.
    assert snapshot(sp.parent.parent.parent) == before
    assert not (sp / "__pycache__").exists() and not (sp / "vf_goodpkg" / "__pycache__").exists()


def test_check_text_names_every_failed_import_and_counts_as_json_does(
    env: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash, a hang or an exit confirms no verdict (the modules here use no NumPy, all are unowned): the text
    must still name each, and count the imports the JSON counts."""
    from abiguard.report.json import check_document
    from abiguard.report.markup import PlainOut
    from abiguard.report.text import render_check

    python, _, _ = env
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path))
    report = verify_findings(check(str(python)), everything=True, timeout=3)
    summary = check_document(report)["summary"]
    stream = io.StringIO()
    render_check(report, PlainOut(stream))
    lines = stream.getvalue().splitlines()
    failed = {line for line in lines if line.startswith("  vf_")}
    assert failed == {
        "  vf_segv: crashed: SIGSEGV",
        "  vf_hang: timeout: timed out after 3 s",
        "  vf_exit: crashed: exited with status 3 during import",
        "  vf_raise: import-error: ImportError: vf_raise refuses to load",
        "  vf_goodpkg.vf_refuse: import-error: ImportError: vf_raise refuses to load",
    }
    assert (summary["verified"], summary["confirmed"], summary["refuted"]) == (8, 3, 0)
    (total,) = [line for line in lines if "with compiled code" in line]
    assert total.endswith("; verified 8 imports: 3 confirmed, 0 refuted, 5 failed otherwise"), total

    from abiguard.report.markdown import render_markdown

    listed = [line for line in render_markdown(report).splitlines() if line.startswith("- `vf_")]
    assert sorted(line.split("`")[1] for line in listed) == sorted(f.split(":")[0].strip() for f in failed)


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
def test_child_runs_on_old_pythons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A package whose __init__ fails, two levels deep, reached through PYTHONPATH (hence isolated=False).
    (tmp_path / "vf_oldpkg" / "sub").mkdir(parents=True)
    (tmp_path / "vf_oldpkg" / "__init__.py").write_text("raise RuntimeError('vf_oldpkg init is broken')\n")
    (tmp_path / "vf_oldpkg" / "sub" / "__init__.py").write_text("from .. import helper\n")
    (tmp_path / "vf_oldpkg" / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "vf_oldpkg" / "sub" / "mod.py").write_text("from ..helper import VALUE\nimport vf_oldpkg.sub\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    modules = ["json", "email.mime.text", "vf_missing", "vf_missing.sub", "vf_oldpkg.sub.mod"]
    for python in old_pythons():
        result = verify_modules(python, modules, isolated=False)
        assert [r.outcome for r in result.values()] == ["ok", "ok", "import-error", "parent-failed", "ok"], python
        mod = result["vf_oldpkg.sub.mod"]
        assert (mod.parent, mod.parent_message) == ("vf_oldpkg", "RuntimeError: vf_oldpkg init is broken"), python
        assert not list(tmp_path.rglob("__pycache__")), python  # -B (3.6, 3.7) or a bytecode directory elsewhere


# ---------------------------------------------------------------------------------------------------
# Real NumPy: a module built for the other major version fails with NumPy's own message.


@pytest.fixture(scope="module")
def numpy2_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    python = make_venv(tmp_path_factory.mktemp("np2") / "v", "numpy==2.0.2")
    sp = site_packages(python)
    numpy_extension("old_np", "1.26.4", sp)
    numpy_extension("new_np", "2.0.2", sp, target="NPY_2_0_API_VERSION")
    # Packages whose __init__ fails, each holding a NumPy-1 and a NumPy-2 build of the same extension:
    # vf_npabi fails as pandas 2.0 does under NumPy 2 (its __init__ imports its broken extension), and
    # its sub-package's __init__ works and must still run; vf_npraise fails for another reason, and
    # so does its sub-package.
    for package in ("vf_npabi", "vf_npraise"):
        for where in (sp / package, sp / package / "sub"):
            where.mkdir()
            numpy_extension("old_np", "1.26.4", where)
            numpy_extension("new_np", "2.0.2", where, target="NPY_2_0_API_VERSION")
    (sp / "vf_npabi" / "__init__.py").write_text("from . import old_np\n")
    (sp / "vf_npabi" / "sub" / "__init__.py").write_text("from .. import new_np\nREADY = new_np.zeros().tolist()\n")
    (sp / "vf_npabi" / "sub" / "uses_new.py").write_text(
        "from . import READY\nfrom .. import new_np\nimport vf_npabi.sub\n"
        "assert vf_npabi.sub.READY == READY == [0.0] * 3\n"
    )
    (sp / "vf_npabi" / "sub" / "uses_old.py").write_text("from ..old_np import zeros\n")
    (sp / "vf_npraise" / "__init__.py").write_text("raise RuntimeError('vf_npraise init is broken')\n")
    (sp / "vf_npraise" / "sub" / "__init__.py").write_text("raise RuntimeError('vf_npraise.sub init is broken')\n")
    # A module that uses no NumPy but imports, from its init, a package whose __init__ imports a broken
    # build (scipy 1.11's interpolate modules import scipy.linalg so): its failure is the package's.
    (sp / "vf_npuser").mkdir()
    numpy_extension("old_np", "1.26.4", sp / "vf_npuser")
    numpy_extension("new_np", "2.0.2", sp / "vf_npuser", target="NPY_2_0_API_VERSION")
    (sp / "vf_npuser" / "__init__.py").write_text("from . import old_np\n")
    plain_extension("vf_imports_npuser", sp, init='PyObject *m = PyImport_ImportModule("vf_npuser");'
                    " if (m == NULL) return NULL; Py_DECREF(m);")
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


BANNER = "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.2"


@pytest.mark.network
def test_a_failure_of_a_module_it_imports_is_not_its_own(numpy2_env: tuple[Path, Path]) -> None:
    python, _ = numpy2_env
    result = verify_modules(str(python), ["vf_imports_npuser", "vf_npuser.old_np", "old_np"], jobs=2)
    user = result["vf_imports_npuser"]
    assert (user.outcome, user.via) == ("numpy-abi", "vf_npuser")
    assert confirms(Verdict.OK, user) is None and confirms(Verdict.BROKEN, user) is None  # vf_npuser's doing
    v = to_verification(Verdict.OK, user)
    assert (v.via, v.confirms) == ("vf_npuser", None)
    # The broken builds themselves fail on their own account, as before.
    assert all(result[m].outcome == "numpy-abi" and result[m].via is None for m in ("vf_npuser.old_np", "old_np"))
    assert confirms(Verdict.BROKEN, result["old_np"]) is True


@pytest.mark.network
def test_a_failed_parent_is_reported_apart_from_the_module(numpy2_env: tuple[Path, Path]) -> None:
    python, sp = numpy2_env
    before = snapshot(sp)
    modules = [
        "vf_npabi.old_np", "vf_npabi.new_np", "vf_npabi.sub.old_np", "vf_npabi.sub.uses_new",
        "vf_npabi.sub.uses_old", "vf_npraise.old_np", "vf_npraise.new_np", "vf_npraise.sub.old_np",
        "vf_npraise.sub.new_np", "vf_npabi",
    ]  # fmt: skip
    result = verify_modules(str(python), modules, jobs=4)
    assert snapshot(sp) == before
    seen = {name: (r.outcome, r.parent, r.parent_outcome) for name, r in result.items()}
    assert seen == {
        # The parent failed on the NumPy ABI, because of its own broken extension: each module still
        # gets its own outcome, and the sub-package's working __init__ ran (uses_new checks).
        "vf_npabi.old_np": ("numpy-abi", "vf_npabi", "numpy-abi"),
        "vf_npabi.new_np": ("ok", "vf_npabi", "numpy-abi"),
        "vf_npabi.sub.old_np": ("numpy-abi", "vf_npabi", "numpy-abi"),
        "vf_npabi.sub.uses_new": ("ok", "vf_npabi", "numpy-abi"),
        "vf_npabi.sub.uses_old": ("numpy-abi", "vf_npabi", "numpy-abi"),
        # The parent (and its sub-package) failed for a reason of their own: the first one is named.
        "vf_npraise.old_np": ("numpy-abi", "vf_npraise", "import-error"),
        "vf_npraise.new_np": ("ok", "vf_npraise", "import-error"),
        "vf_npraise.sub.old_np": ("numpy-abi", "vf_npraise", "import-error"),
        "vf_npraise.sub.new_np": ("ok", "vf_npraise", "import-error"),
        # Control: the package itself, imported as usual.
        "vf_npabi": ("numpy-abi", None, None),
    }
    old, new = result["vf_npabi.old_np"], result["vf_npabi.new_np"]
    assert old.message == "ImportError: numpy.core.multiarray failed to import"
    assert old.parent_message == "ImportError: numpy.core.multiarray failed to import"
    assert old.detail is not None and old.detail.startswith(BANNER)
    # The banner the parent's attempt printed is the parent's: not the detail of a module that imports.
    assert (new.message, new.detail) == (None, None)
    assert result["vf_npraise.old_np"].parent_message == "RuntimeError: vf_npraise init is broken"
    assert result["vf_npraise.sub.old_np"].parent_message == "RuntimeError: vf_npraise init is broken"

    # Agreement is the module's own.
    v = to_verification(Verdict.BROKEN, old)
    assert (v.outcome, v.message, v.confirms, v.parent) == ("numpy-abi", old.message, True, "vf_npabi")
    assert v.detail == old.detail
    assert to_verification(Verdict.OK, new).confirms is True
    assert to_verification(Verdict.BROKEN, new).confirms is False
    assert to_verification(Verdict.BROKEN, result["vf_npraise.sub.old_np"]).confirms is True


@pytest.mark.network
def test_check_verify_confirms_per_module_and_not_against_a_hypothetical_numpy(
    numpy2_env: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python, _ = numpy2_env
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path))

    def verified(numpy: str | None) -> dict[str, Any]:
        report = verify_findings(check(str(python), numpy))  # the affected modules
        findings: list[BinaryFinding] = [b for d in report.distributions for b in d.binaries]
        findings += report.unowned
        return {b.module: (b.verdict.value, b.verified) for b in findings if b.module and b.verified is not None}

    real = verified(None)
    assert set(real) == {
        "old_np", "vf_npabi.old_np", "vf_npabi.sub.old_np", "vf_npraise.old_np", "vf_npraise.sub.old_np",
        "vf_npuser.old_np",
    }  # fmt: skip
    assert {verdict for verdict, _ in real.values()} == {"broken"}
    assert all(v.outcome == "numpy-abi" and v.confirms is True for _, v in real.values()), real
    assert real["vf_npabi.old_np"][1].parent == "vf_npabi"
    # Judged against numpy 1.26 (the new_np builds are the broken ones) but imported under the real
    # 2.0.2, where they import: the imports show what they show, and confirm or refute nothing.
    what_if = verified("1.26.4")
    assert set(what_if) == {name.replace("old_np", "new_np") for name in real}
    assert all(verdict == "broken" and v.outcome == "ok" for verdict, v in what_if.values()), what_if
    assert all(v.confirms is None for _, v in what_if.values()), what_if
    # --numpy naming the installed version judges against the numpy the imports run with.
    same = verified("2.0.2")
    assert set(same) == set(real) and all(v.confirms is True for _, v in same.values()), same


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


def test_a_module_that_fails_for_want_of_numpy_confirms_a_broken_verdict() -> None:
    """numpy uninstalled: the static verdict says "uses NumPy's C-API but numpy is not installed"."""
    missing = ImportOutcome("import-error", "ModuleNotFoundError: No module named 'numpy'")
    assert confirms(Verdict.BROKEN, missing) is True
    assert confirms(Verdict.OK, missing) is None  # a Python-level `import numpy` says nothing of the ABI
    other = ImportOutcome("import-error", "ModuleNotFoundError: No module named 'numpyx'")
    assert confirms(Verdict.BROKEN, other) is None


def test_to_verification_names_the_failed_parent() -> None:
    outcome = ImportOutcome("parent-failed", "RuntimeError: boom", parent="pkg", parent_outcome="import-error")
    v = to_verification(Verdict.BROKEN, outcome)
    assert (v.outcome, v.message, v.confirms, v.parent) == ("parent-failed", "pkg: RuntimeError: boom", None, "pkg")
    own = ImportOutcome("numpy-abi", "ImportError: x", "banner", parent="pkg", parent_outcome="numpy-abi")
    v = to_verification(Verdict.BROKEN, own)
    assert (v.outcome, v.message, v.confirms) == ("numpy-abi", "ImportError: x", True)
    assert (v.detail, v.parent) == ("banner", "pkg")
    assert to_verification(Verdict.BROKEN, own, comparable=False).confirms is None


ABI = "ImportError: numpy.core.multiarray failed to import"


def test_reports_are_read_in_order_and_malformed_ones_dropped() -> None:
    token = "abiguard-verify-0123456789abcdef:"
    lines = [f"('parent', 'p', [{ABI!r}])", "('bogus',)", "(not python", "('failed', 'p.m', ['E: x'])"]
    data = "".join(f"\n{token}{line}\n" for line in lines).encode()
    assert verify._read_reports(data, token) == [("parent", "p", [ABI]), ("failed", "p.m", ["E: x"])]
    assert verify._read_reports(b"no report", token) == []


@pytest.mark.parametrize(
    ("head", "tail", "reached", "expected"),
    [
        ("parent\nTOKdirect\nmodule\n", "", True, ("parent\n", "module\n", "")),
        ("parent\nTOKdi", "rect\nmodule\n", True, ("parent\n", "module\n", "")),  # nothing dropped between
        ("parent\n", "module\n", True, ("parent\n", "", "module\n")),  # the marker fell in the dropped middle
        ("parent\n", "more\n", False, ("parent\nmore\n", "parent\n", "more\n")),  # never got to the module
    ],
)  # fmt: skip
def test_stderr_is_split_between_the_parent_and_the_module(
    head: str, tail: str, reached: bool, expected: tuple[str, str, str]
) -> None:
    assert verify._split_stderr(head, tail, "TOKdirect\n", reached) == expected


def test_classification_with_a_failed_parent() -> None:
    parent = ("parent", "p", ["ValueError: numpy.dtype size changed, may indicate binary incompatibility"])
    ok = verify._classify("p.m", ("ok",), 0, "", "", 0.1, parent, "")
    assert (ok.outcome, ok.parent, ok.parent_outcome) == ("ok", "p", "numpy-abi")
    assert ok.parent_message == parent[2][0]
    # The parent's kind comes from its own stderr; the module's from the rest.
    plain = ("parent", "p", ["RuntimeError: boom"])
    own = verify._classify("p.m", ("failed", "p.m", ["ImportError: libx.so"]), 0, "", "", 0.1, plain, ABI)
    assert (own.outcome, own.message, own.parent_outcome) == ("import-error", "ImportError: libx.so", "numpy-abi")
    crashed = verify._classify("p.m", None, -11, "", "Fatal Python error", 0.1, plain, "")
    assert (crashed.outcome, crashed.message, crashed.parent) == ("crashed", "SIGSEGV", "p")
    slow = verify._classify("p.m", None, -9, "", "", 0.1, plain, "", timed_out=30)
    assert (slow.outcome, slow.message, slow.parent) == ("timeout", "timed out after 30 s", "p")


# ---------------------------------------------------------------------------------------------------
# End to end on real broken and healthy environments: every static verdict the imports can speak to
# is confirmed, none is refuted.


def check_json(python: Path, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ, ABIGUARD_CACHE_DIR=str(tmp_path / "cache"))
    argv = [sys.executable, "-m", "abiguard", "check", "--python", str(python), "--format", "json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def verified_binaries(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    binaries = [(d["name"], b) for d in doc["distributions"] for b in d["binaries"]]
    binaries += [("", b) for b in doc["unowned"]]
    return [(name, b) for name, b in binaries if "verified" in b]


@pytest.mark.network
@pytest.mark.timeout(90)
def test_numpy2_with_pandas_2_0_is_confirmed_module_by_module(tmp_path: Path) -> None:
    python = cached_venv("np2-pandas203", "numpy==2.0.2", "pandas==2.0.3")
    started = time.monotonic()
    code, doc = check_json(python, tmp_path, "--verify")
    elapsed = time.monotonic() - started
    summary = doc["summary"]
    assert code == 1 and summary["broken"] == 1
    pandas = [b for name, b in verified_binaries(doc) if name == "pandas"]
    # pandas/__init__ imports its broken modules and fails with NumPy's own error; each module is then
    # imported on its own and fails the same way.
    assert len(pandas) == summary["binaries_broken"] == summary["verified"] > 30
    for b in pandas:
        assert b["verdict"] == "broken", b
        assert b["verified"]["outcome"] == "numpy-abi", b
        assert b["verified"]["parent"] == "pandas", b
        assert b["verified"]["confirms"] is True, b
    assert (summary["confirmed"], summary["refuted"]) == (summary["verified"], 0)
    print(f"check --verify: {summary['verified']} imports in {elapsed:.1f} s")


@pytest.mark.network
@pytest.mark.timeout(120)
def test_numpy2_with_pandas_2_2_is_confirmed(tmp_path: Path) -> None:
    python = cached_venv("np2-pandas223", "numpy==2.0.2", "pandas==2.2.3")
    started = time.monotonic()
    code, doc = check_json(python, tmp_path, "--verify=all")
    elapsed = time.monotonic() - started
    summary = doc["summary"]
    assert code == 0 and summary["broken"] == summary["at_risk"] == 0
    found = verified_binaries(doc)
    assert {name for name, _ in found} == {"numpy", "pandas"}
    assert summary["verified"] == len(found) > 50
    assert summary["refuted"] == 0
    assert summary["confirmed"] > 0
    # What cannot confirm is a module that failed for a reason other than NumPy's ABI; say which.
    unconfirmed = {b["module"]: b["verified"] for _, b in found if b["verified"]["confirms"] is not True}
    assert all(v["outcome"] not in ("ok", "numpy-abi") for v in unconfirmed.values()), unconfirmed
    assert summary["confirmed"] + len(unconfirmed) == summary["verified"]
    print(f"check --verify=all: {summary['verified']} imports in {elapsed:.1f} s")
