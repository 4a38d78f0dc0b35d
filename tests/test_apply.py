"""Safe apply and rollback on real venvs with real uv and pip: every restore must be byte-exact.

"Exact" is checked on the whole venv (minus `__pycache__`): every path, its bytes, mode and mtime, and the set
of directories; RECORD files are also compared byte for byte on their own, since that is the promise.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from abiguard.fix import apply as apply_mod
from abiguard.fix.apply import (
    APPLIED,
    PENDING,
    ROLLED_BACK,
    ApplyError,
    apply_changes,
    last_snapshot,
    rollback,
    snapshot_state,
)
from abiguard.model import TargetEnvironment
from abiguard.sources.environment import probe
from tests.support.venvs import make_venv, site_packages, uv_env

pytestmark = [pytest.mark.venv, pytest.mark.network]

BASE = ("numpy==2.0.2", "pandas==2.0.3")
INSTALLERS = ["uv", "pip"]


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _uv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installers abiguard runs use the test's uv cache (fast, offline after the first run)."""
    monkeypatch.setenv("UV_CACHE_DIR", uv_env()["UV_CACHE_DIR"])
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # an unreachable index fails at once instead of after 11 s
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A fresh venv with numpy 2.0.2 + pandas 2.0.3 (pandas built for NumPy 1: the classic break)."""
    return make_venv(tmp_path / "venv", *BASE)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def snapshot_tree(root: Path) -> dict[str, Any]:
    """Every file (bytes, mode, mtime) and directory (mode) under `root`, ignoring bytecode caches."""
    out: dict[str, Any] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for d in dirs:
            path = os.path.join(dirpath, d)
            out[os.path.relpath(path, root) + "/"] = ("dir", os.lstat(path).st_mode)
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if os.path.islink(p):
                content = "link:" + os.readlink(p)
            else:
                with open(p, "rb") as fh:
                    content = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(p, root)] = (content, st.st_mode, st.st_mtime_ns)
    return out


def records(python: Path) -> dict[str, bytes]:
    site = site_packages(python)
    return {p.parent.name: p.read_bytes() for p in sorted(site.glob("*.dist-info/RECORD"))}


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def installed(python: Path) -> dict[str, str]:
    out = {}
    for info in site_packages(python).glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        out[name.lower().replace("_", "-")] = version
    return out


def env_of(python: Path) -> TargetEnvironment:
    return probe(str(python))


def venv_root(python: Path) -> Path:
    return python.parent.parent


class SlowIndex:
    """A package index on 127.0.0.1 that holds every request until released, then answers 404.

    Keeps an installer running (and the environment locked) for as long as a test needs."""

    def __init__(self) -> None:
        self.hit = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hit.set()
                outer.release.wait(120)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_index() -> Iterator[SlowIndex]:
    index = SlowIndex()
    yield index
    index.close()


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from abiguard.fix.apply import apply_changes
    from abiguard.sources.environment import probe

    python, args, touched, installer, state = sys.argv[1:6]
    r = apply_changes(probe(python), json.loads(args), touched=json.loads(touched), installer=installer,
                      state_dir=Path(state))
    print(json.dumps({"ok": r.ok, "restored": r.restored, "message": r.message}))
    """
)


def start_child(
    python: Path, args: list[str], touched: list[str], installer: str, state: Path
) -> subprocess.Popen[str]:
    """Another abiguard process applying a change to the same environment."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(python), json.dumps(args), json.dumps(touched), installer, str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def wheel(path: Path, name: str, files: dict[str, bytes], version: str = "1.0") -> Path:
    """A minimal pure-Python wheel; file order in the archive is the order given."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = dict(files)
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    files[f"{dist}.dist-info/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    rows = []
    for n, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{n},sha256={digest},{len(data)}")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join([*rows, f"{dist}.dist-info/RECORD,,"]) + "\n").encode()
    out = path / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    return out


# -- apply, then roll back ---------------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_apply_then_rollback_is_byte_exact(venv: Path, state: Path, installer: str) -> None:
    root = venv_root(venv)
    tree, recs = snapshot_tree(root), records(venv)
    env = env_of(venv)

    result = apply_changes(env, ["numpy==1.26.4"], touched={"NumPy"}, installer=installer, state_dir=state)
    assert result.ok, result.message
    assert not result.restored
    assert installed(venv)["numpy"] == "1.26.4"
    assert result.snapshot is not None and snapshot_state(result.snapshot) == APPLIED
    assert result.output_tail and "1.26.4" in result.output_tail
    assert snapshot_tree(root) != tree

    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert "numpy==2.0.2 (was 1.26.4)" in back.message
    assert records(venv) == recs
    assert diff(tree, snapshot_tree(root)) == []
    assert snapshot_state(result.snapshot) == ROLLED_BACK

    again = rollback(env, state_dir=state)  # idempotent
    assert again.ok and not again.restored and "nothing to do" in again.message
    assert diff(tree, snapshot_tree(root)) == []

    # the restored environment imports (the copy is a working numpy, not just equal bytes)
    out = subprocess.run([str(venv), "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    assert out.stdout.strip() == "2.0.2", out.stderr


def test_snapshot_manifest_freeze_and_journal(venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABIGUARD_STATE_DIR", str(tmp_path / "from-env"))
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy", "pandas"], installer="uv",
                           keep_snapshots=1)
    assert result.ok, result.message
    snap = result.snapshot
    assert snap is not None and snap.is_relative_to(tmp_path / "from-env" / "snapshots")
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["schema"] == 1
    assert manifest["prefix"] == env.prefix
    assert manifest["python"] == env.executable
    assert manifest["installer"] == "uv"
    assert manifest["install_args"] == ["numpy==1.26.4"]
    assert manifest["touched"] == ["numpy", "pandas"]
    by_key = {d["key"]: d for d in manifest["dists"]}
    assert by_key["numpy"]["dist_info"] == "numpy-2.0.2.dist-info"
    assert by_key["pandas"]["version"] == "2.0.3"
    site_rel = os.path.relpath(site_packages(venv), os.path.realpath(env.prefix)).replace(os.sep, "/")
    assert f"{site_rel}/numpy/__init__.py" in by_key["numpy"]["files"]
    assert f"{site_rel}/numpy-2.0.2.dist-info/RECORD" in by_key["numpy"]["files"]
    assert "bin/f2py" in by_key["numpy"]["files"]  # RECORD's ../../../bin/f2py, resolved inside the prefix
    for rel in by_key["numpy"]["files"]:
        copy = snap / "files" / rel
        original_bytes = copy.read_bytes()
        assert copy.stat().st_size == len(original_bytes)
    freeze = (snap / "freeze.txt").read_text().splitlines()
    assert "numpy==2.0.2" in freeze and "pandas==2.0.3" in freeze
    journal = json.loads((snap / "journal.json").read_text())
    assert [h["state"] for h in journal["history"]] == [PENDING, APPLIED]
    assert f"{site_rel}/numpy-1.26.4.dist-info" in journal["after_dist_infos"]
    assert last_snapshot(env) == snap

    # a second change to the same env: old finished snapshots beyond `keep_snapshots` are pruned
    second = apply_changes(env, ["numpy==1.26.3"], touched=["numpy"], installer="uv", keep_snapshots=1)
    assert second.ok, second.message
    assert [p.name for p in snap.parent.iterdir()] == [second.snapshot.name if second.snapshot else ""]
    back = rollback(env)
    assert back.ok and installed(venv)["numpy"] == "1.26.4"  # the last snapshot is the one rolled back


def test_rollback_of_an_applied_change_keeps_later_installs(venv: Path, state: Path, tmp_path: Path) -> None:
    root = venv_root(venv)
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert result.ok
    tree = snapshot_tree(root)
    # the user installs something else afterwards; a rollback of the fix must not take it away
    extra = wheel(tmp_path, "abiguard-extra", {"abiguard_extra.py": b"X = 1\n"})
    subprocess.run([apply_mod.find_uv() or "uv", "pip", "install", "--quiet", "--python", str(venv), str(extra)],
                   check=True)
    back = rollback(env, state_dir=state)
    assert back.ok, back.message
    assert installed(venv)["numpy"] == "2.0.2"
    assert installed(venv)["abiguard-extra"] == "1.0"
    assert tree != snapshot_tree(root)


def directories(root: Path) -> set[str]:
    """Every directory under `root`, bytecode caches included: a leftover one imports as a namespace package."""
    return {os.path.relpath(d, root) for d, _dirs, _files in os.walk(root)}


@pytest.mark.parametrize("installer", INSTALLERS)
def test_rollback_leaves_no_folder_of_what_it_removed(venv: Path, state: Path, tmp_path: Path, installer: str) -> None:
    """pip lists each .pyc after its .py in RECORD, and an import writes `__pycache__` under uv too: the folders
    of a removed distribution, and those an upgrade added to a restored one, must go with their files."""
    root = venv_root(venv)
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    v1 = wheel(tmp_path / "v1", "abiguard-grow", {"abiguard_grow/__init__.py": b""})
    v2 = wheel(tmp_path / "v2", "abiguard-grow", {"abiguard_grow/__init__.py": b"",
                                                  "abiguard_grow/added/__init__.py": b"X = 2\n"}, version="2.0")
    new = wheel(tmp_path, "abiguard-new", {"abiguard_new/__init__.py": b"", "abiguard_new/sub/__init__.py": b""})
    subprocess.run([apply_mod.find_uv() or "uv", "pip", "install", "--quiet", "--python", str(venv), str(v1)],
                   check=True)
    tree, folders = snapshot_tree(root), directories(root)
    env = env_of(venv)
    result = apply_changes(env, [str(v2), str(new)], touched=["abiguard-grow", "abiguard-new"], installer=installer,
                           state_dir=state)
    assert result.ok, result.message
    subprocess.run([str(venv), "-c", "import abiguard_grow.added, abiguard_new.sub"], check=True)

    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert "removed abiguard-new==1.0" in back.message and not back.notes
    # (running the venv's python writes bytecode for what its .pth files import, such as _distutils_hack)
    assert sorted(d for d in directories(root) - folders if "abiguard_" in d) == []
    assert diff(tree, snapshot_tree(root)) == []
    gone = subprocess.run([str(venv), "-c", "import abiguard_new"], capture_output=True, text=True)
    assert "No module named 'abiguard_new'" in gone.stderr


@pytest.mark.parametrize("installer", INSTALLERS)
def test_rollback_restores_directory_modes(venv: Path, state: Path, installer: str) -> None:
    """A read-only site-packages and a group-writable setgid package tree come back with their modes, not 755."""
    root = venv_root(venv)
    site = site_packages(venv)
    for folder in [p for p in (site / "numpy").rglob("*") if p.is_dir()]:
        folder.chmod(0o2775)
    for folder in [site / "numpy" / "linalg", site / "numpy", site]:  # the parent last: as root, it still writes
        folder.chmod(0o555)
    tree = snapshot_tree(root)
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer=installer, state_dir=state)
    assert result.ok, result.message
    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert diff(tree, snapshot_tree(root)) == []
    assert (site / "numpy" / "fft").stat().st_mode & 0o7777 == 0o2775
    assert site.stat().st_mode & 0o7777 == 0o555
    site.chmod(0o755)  # let pytest clean up


def test_rollback_into_a_venv_recreated_with_another_python_is_refused(
    venv: Path, state: Path, tmp_path: Path
) -> None:
    version = "3.10" if sys.version_info[:2] == (3, 11) else "3.11"
    pyenv = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python3")
    found = [shutil.which(f"python{version}"), *glob.glob(pyenv)]
    other = next((p for p in found if p and subprocess.run(
        [p, "-c", f"import sys; assert sys.version.startswith('{version}.')"], capture_output=True).returncode == 0),
        None)
    if other is None:
        pytest.skip(f"needs CPython {version} too")
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert result.ok, result.message
    root = venv_root(venv)
    subprocess.run([apply_mod.find_uv() or "uv", "venv", "--quiet", "--clear", "--seed", "--python", other, str(root)],
                   check=True, env=uv_env())
    tree = snapshot_tree(root)
    with pytest.raises(ApplyError, match=rf"snapshot .* was taken when .* ran cpython {sys.version_info[0]}\."
                                         rf"{sys.version_info[1]}, but it runs cpython {version} now"):
        rollback(env_of(venv), state_dir=state)
    assert diff(tree, snapshot_tree(root)) == []


# -- failures restore --------------------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_installer_failing_midway_is_restored(venv: Path, state: Path, tmp_path: Path, installer: str) -> None:
    """The second wheel writes a file where pandas' directory is: the install fails after numpy changed."""
    root = venv_root(venv)
    tree, recs = snapshot_tree(root), records(venv)
    bad = wheel(tmp_path, "abiguard-bad", {"abiguard_bad/__init__.py": b"X = 1\n", "pandas": b"not a dir\n"})
    result = apply_changes(env_of(venv), ["numpy==1.26.4", str(bad)], touched=["numpy", "abiguard-bad"],
                           installer=installer, state_dir=state)
    assert not result.ok
    assert result.restored
    assert f"{installer} failed (exit" in result.message and "restored" in result.message
    assert "\n" not in result.message
    assert result.output_tail
    assert records(venv) == recs
    assert diff(tree, snapshot_tree(root)) == []
    assert result.snapshot is not None and snapshot_state(result.snapshot) == ROLLED_BACK


@pytest.mark.parametrize(
    ("installer", "args", "expect"),
    [
        ("uv", ["--index-url", "http://127.0.0.1:9/simple", "numpy==1.25.2"], "Connection refused"),
        ("uv", ["numpy==1.26.4", "pandas==0.0.0"], "uv failed"),
        ("pip", ["numpy==1.26.4", "pandas==0.0.0"], "No matching distribution"),
    ],
)
def test_installer_failing_before_any_change(
    venv: Path, state: Path, installer: str, args: list[str], expect: str
) -> None:
    root = venv_root(venv)
    tree, recs = snapshot_tree(root), records(venv)
    result = apply_changes(env_of(venv), args, touched=["numpy", "pandas"], installer=installer, state_dir=state)
    assert not result.ok and result.restored
    assert expect in result.message, result.message
    assert result.returncode not in (0, None)
    assert records(venv) == recs
    assert diff(tree, snapshot_tree(root)) == []


@pytest.mark.parametrize("how", ["reason", "raises"])
def test_after_rejecting_the_change_restores(venv: Path, state: Path, how: str) -> None:
    root = venv_root(venv)
    tree, recs = snapshot_tree(root), records(venv)
    seen: list[str] = []

    def after() -> str | None:
        seen.append(installed(venv)["numpy"])
        if how == "raises":
            raise RuntimeError("verify crashed\nwith two lines")
        return "pandas._libs.algos still fails to import"

    result = apply_changes(env_of(venv), ["numpy==1.26.4"], touched=["numpy"], installer="uv", after=after,
                           state_dir=state)
    assert seen == ["1.26.4"]  # after() ran on the changed environment
    assert not result.ok and result.restored
    expected = "still fails to import" if how == "reason" else "RuntimeError: verify crashed with two lines"
    assert expected in result.message and "\n" not in result.message
    assert records(venv) == recs
    assert diff(tree, snapshot_tree(root)) == []


def test_untouched_distribution_changed_by_the_installer_is_kept_and_reported(
    venv: Path, state: Path, tmp_path: Path
) -> None:
    """A resolver set that missed a distribution: the restore keeps its new version rather than nothing."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    v1 = wheel(tmp_path / "v1", "abiguard-extra", {"abiguard_extra.py": b"X = 1\n"})
    v2 = wheel(tmp_path / "v2", "abiguard-extra", {"abiguard_extra.py": b"X = 2\n"}, version="2.0")
    subprocess.run([apply_mod.find_uv() or "uv", "pip", "install", "--quiet", "--python", str(venv), str(v1)],
                   check=True)
    result = apply_changes(env_of(venv), ["numpy==1.26.4", str(v2)], touched=["numpy"], installer="uv",
                           after=lambda: "reject", state_dir=state)
    assert not result.ok and not result.restored
    assert "except abiguard-extra==1.0 (now 2.0): not in the touched set" in result.message
    assert installed(venv)["numpy"] == "2.0.2"
    assert installed(venv)["abiguard-extra"] == "2.0"


def test_new_distributions_are_removed_and_nothing_outside_the_prefix_is_touched(
    venv: Path, state: Path, tmp_path: Path
) -> None:
    """RECORD paths may point anywhere; a restore never deletes outside the environment."""
    root = venv_root(venv)
    site = site_packages(venv)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    # an installed distribution whose RECORD names a file outside the prefix, by absolute and relative path
    info = site / "evil-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n\n")
    (site / "evil.py").write_text("X = 1\n")
    rel_out = os.path.relpath(outside, site)
    (info / "RECORD").write_text(f"evil.py,,\n{outside},,\n{rel_out},,\nevil-1.0.dist-info/RECORD,,\n")
    tree = snapshot_tree(root)

    def after() -> str | None:
        # the "installer" added a distribution that also claims the outside file
        new = site / "intruder-2.0.dist-info"
        new.mkdir()
        (new / "METADATA").write_text("Metadata-Version: 2.1\nName: intruder\nVersion: 2.0\n\n")
        (site / "intruder").mkdir()
        (site / "intruder" / "__init__.py").write_text("")
        (new / "RECORD").write_text(f"intruder/__init__.py,,\n{outside},,\n{rel_out},,\n")
        (info / "RECORD").write_text("changed\n")
        return "reject"

    result = apply_changes(env_of(venv), ["numpy==2.0.2"], touched=["evil"], installer="uv", after=after,
                           state_dir=state)
    assert not result.ok and result.restored, result.message
    assert outside.read_text() == "keep me"
    assert diff(tree, snapshot_tree(root)) == []
    assert result.snapshot is not None
    manifest = json.loads((result.snapshot / "manifest.json").read_text())
    assert sorted(manifest["dists"][0]["outside_prefix"]) == sorted([str(outside), rel_out])


def test_a_rollback_that_dies_midway_can_be_run_again(
    venv: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = venv_root(venv)
    tree = snapshot_tree(root)
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert result.ok and result.snapshot is not None
    real_copy = apply_mod._copy_files

    def broken(pairs: list[tuple[str, str]], *, replace: bool = False) -> None:
        real_copy(pairs[: len(pairs) // 2], replace=replace)
        raise exc

    monkeypatch.setattr(apply_mod, "_copy_files", broken)
    exc: BaseException = OSError(5, "Input/output error")
    with pytest.raises(ApplyError, match=r"rollback from .* failed: \[Errno 5\] Input/output error"):
        rollback(env, state_dir=state)
    assert snapshot_state(result.snapshot) == "restore-failed"
    exc = KeyboardInterrupt()  # dies without a chance to write the journal
    with pytest.raises(KeyboardInterrupt):
        rollback(env, state_dir=state)
    assert snapshot_state(result.snapshot) == "restoring"
    with pytest.raises(ApplyError, match="did not finish"):
        apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    monkeypatch.setattr(apply_mod, "_copy_files", real_copy)
    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert diff(tree, snapshot_tree(root)) == []


def test_ctrl_c_during_the_recheck_restores_and_says_so(venv: Path, state: Path) -> None:
    root = venv_root(venv)
    tree = snapshot_tree(root)

    def pressed() -> str | None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread while the re-check runs

    with pytest.raises(apply_mod.Interrupted) as raised:
        apply_changes(env_of(venv), ["numpy==1.26.4"], touched=["numpy"], installer="uv", after=pressed,
                      state_dir=state)
    assert "interrupted during the re-check; the environment was restored from the snapshot" in str(raised.value)
    assert isinstance(raised.value, KeyboardInterrupt)  # still stops whatever called it
    assert diff(tree, snapshot_tree(root)) == []


def test_a_second_ctrl_c_during_the_restore_says_what_to_do(
    venv: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Ctrl-C stops the re-check and starts the restore; a second one stops the restore halfway. The
    message must say packages may be missing and how to finish, and the rollback it names must do so."""
    root = venv_root(venv)
    tree = snapshot_tree(root)
    env = env_of(venv)
    real_copy = apply_mod._copy_files

    def pressed_again(pairs: list[tuple[str, str]], *, replace: bool = False) -> None:
        if not replace:  # the snapshot being taken
            return real_copy(pairs)
        real_copy(pairs[: len(pairs) // 2], replace=True)
        raise KeyboardInterrupt

    def pressed() -> str | None:
        raise KeyboardInterrupt

    monkeypatch.setattr(apply_mod, "_copy_files", pressed_again)
    with pytest.raises(apply_mod.Interrupted) as raised:
        apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", after=pressed, state_dir=state)
    message = str(raised.value)
    assert "interrupted during the re-check; the restore was interrupted, so packages may be missing" in message
    assert f"run `abiguard rollback --python {env.executable}` to finish it" in message
    snap = last_snapshot(env, state)
    assert snap is not None and snapshot_state(snap) == "restore-failed"
    monkeypatch.setattr(apply_mod, "_copy_files", real_copy)
    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert diff(tree, snapshot_tree(root)) == []


def test_ctrl_c_while_the_snapshot_is_written_leaves_no_partial_copy(venv: Path, state: Path) -> None:
    """A real SIGINT to an abiguard copying numpy and pandas (110 MB) into its snapshot; then a stale partial
    copy (from an abiguard killed outright) is pruned by the next rollback."""
    child = start_child(venv, ["numpy==1.26.4"], ["numpy", "pandas"], "uv", state)
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while not partial and child.poll() is None and time.monotonic() < deadline:
        partial = list(state.glob("snapshots/*/*.partial/files"))
        time.sleep(0.001)
    assert partial, child.communicate()
    os.kill(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert "KeyboardInterrupt" in err
    assert not list(state.glob("snapshots/*/*.partial"))
    assert installed(venv)["numpy"] == "2.0.2"

    stale = partial[0].parent.parent / "20200101T000000.000000Z.partial"
    (stale / "files").mkdir(parents=True)
    back = rollback(env_of(venv), state_dir=state)
    assert back.ok and not back.restored, back.message
    assert not stale.exists()


def test_a_damaged_snapshot_is_refused_before_anything_changes(venv: Path, state: Path) -> None:
    env = env_of(venv)
    result = apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert result.ok and result.snapshot is not None
    root = venv_root(venv)
    tree = snapshot_tree(root)
    site_rel = os.path.relpath(site_packages(venv), os.path.realpath(env.prefix))
    victim = result.snapshot / "files" / site_rel / "numpy" / "__init__.py"
    victim.write_bytes(victim.read_bytes()[:10])  # as if the machine crashed before the copy reached the disk
    with pytest.raises(ApplyError, match=r"snapshot .* is damaged \(1 files missing or cut short"):
        rollback(env, state_dir=state)
    assert diff(tree, snapshot_tree(root)) == []
    assert snapshot_state(result.snapshot) == APPLIED


# -- interrupted applies -----------------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_sigkill_mid_install_then_rollback(venv: Path, state: Path, installer: str) -> None:
    """abiguard and its installer are SIGKILLed the moment the old numpy's dist-info disappears."""
    root = venv_root(venv)
    site = site_packages(venv)
    tree, recs = snapshot_tree(root), records(venv)
    child = start_child(venv, ["numpy==1.26.4"], ["numpy"], installer, state)
    old_info = site / "numpy-2.0.2.dist-info"
    deadline = time.monotonic() + 120
    while old_info.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    assert not old_info.exists()
    assert snapshot_tree(root) != tree  # the installer had started changing files

    env = env_of(venv)
    snap = last_snapshot(env, state)
    assert snap is not None
    # pip extracts for seconds after removing the old numpy, so it is always caught mid-install; uv takes
    # milliseconds, and on a busy machine it may have finished (then the rollback undoes a complete change)
    interrupted = snapshot_state(snap) == PENDING
    assert interrupted or (installer == "uv" and snapshot_state(snap) == APPLIED)
    if interrupted:
        with pytest.raises(ApplyError, match=r"did not finish.*rollback"):
            apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer=installer, state_dir=state)

    back = rollback(env, state_dir=state)
    assert back.ok and back.restored, back.message
    assert ("interrupted" in back.message) == interrupted
    assert records(venv) == recs
    assert diff(tree, snapshot_tree(root)) == []
    assert snapshot_state(snap) == ROLLED_BACK
    assert rollback(env, state_dir=state).restored is False


def test_killed_abiguard_leaves_the_lock_to_its_installer(venv: Path, state: Path, slow_index: SlowIndex) -> None:
    """Only abiguard dies; its installer keeps the lock, so a rollback cannot race it, and then succeeds."""
    root = venv_root(venv)
    tree = snapshot_tree(root)
    child = start_child(venv, ["--index-url", slow_index.url, "numpy==1.25.2"], ["numpy"], "uv", state)
    assert slow_index.hit.wait(60), child.stderr.read() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    env = env_of(venv)
    with pytest.raises(ApplyError, match=r"being changed by another abiguard.*installer is still running"):
        rollback(env, state_dir=state, lock_timeout=0.3)
    slow_index.release.set()  # the orphaned uv gets its 404, fails and exits, dropping the lock
    back = rollback(env, state_dir=state, lock_timeout=60)
    assert back.ok and back.restored, back.message
    assert diff(tree, snapshot_tree(root)) == []


def test_concurrent_apply_waits_then_fails_clearly_or_proceeds(
    venv: Path, state: Path, slow_index: SlowIndex
) -> None:
    env = env_of(venv)
    child = start_child(venv, ["--index-url", slow_index.url, "numpy==1.25.2"], ["numpy"], "uv", state)
    assert slow_index.hit.wait(60), child.stderr.read() if child.stderr else ""

    started = time.monotonic()
    with pytest.raises(ApplyError) as info:
        apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state, lock_timeout=1)
    assert time.monotonic() - started >= 1
    message = str(info.value)
    assert "being changed by another abiguard" in message and f"pid {child.pid}" in message
    assert "gave up after waiting 1 s" in message and "\n" not in message

    # a patient second abiguard waits for the first to finish, then applies its own change
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(apply_changes(
        env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state, lock_timeout=120)))
    waiter.start()
    time.sleep(0.5)
    assert not results  # still waiting
    slow_index.release.set()
    out, err = child.communicate(timeout=120)
    first = json.loads(out)
    assert not first["ok"] and first["restored"], (first, err)
    waiter.join(120)
    assert results and results[0].ok, results
    assert installed(venv)["numpy"] == "1.26.4"


# -- user errors -------------------------------------------------------------------------------------


def test_rollback_without_snapshot_has_nothing_to_do(venv: Path, state: Path) -> None:
    """Not an error: the environment is as abiguard found it, which is what a rollback asks for."""
    result = rollback(env_of(venv), state_dir=state)
    assert result.ok and not result.restored and result.snapshot is None
    assert result.message.startswith("nothing to roll back: abiguard took no snapshot of")


def test_pip_without_pip_in_the_target_is_abiguards_own(tmp_path: Path, state: Path) -> None:
    """uv makes venvs without pip; abiguard's pip installs into them with `--python`, and the rollback undoes it."""
    bare = tmp_path / "bare"
    subprocess.run([apply_mod.find_uv() or "uv", "venv", "--quiet", "--python", sys.executable, str(bare)],
                   check=True, env=uv_env())
    python = bare / "bin" / "python"
    tree = snapshot_tree(bare)
    extra = wheel(tmp_path, "abiguard-extra", {"abiguard_extra.py": b"X = 1\n"})
    env = env_of(python)
    result = apply_changes(env, [str(extra)], touched=["abiguard-extra"], installer="pip", state_dir=state)
    assert result.ok, result.message
    assert installed(python) == {"abiguard-extra": "1.0"}
    assert rollback(env, state_dir=state).ok
    assert diff(tree, snapshot_tree(bare)) == []


def test_missing_installers_are_clear_errors(tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bare"
    subprocess.run([apply_mod.find_uv() or "uv", "venv", "--quiet", "--python", sys.executable, str(bare)],
                   check=True, env=uv_env())
    env = env_of(bare / "bin" / "python")
    monkeypatch.setattr(apply_mod, "find_uv", lambda: None)
    with pytest.raises(ApplyError, match="uv not found"):
        apply_changes(env, ["numpy"], touched=["numpy"], installer="uv", state_dir=state)
    with pytest.raises(ApplyError, match="unknown installer 'conda'"):
        apply_changes(env, ["numpy"], touched=["numpy"], installer="conda", state_dir=state)
    with pytest.raises(ApplyError, match="nothing to install"):
        apply_changes(env, [], touched=["numpy"], installer="uv", state_dir=state)
    assert not (state / "snapshots").exists() or not any((state / "snapshots").rglob("manifest.json"))


def test_read_only_environment_is_refused_before_any_change(
    venv: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = os.path.realpath(venv_root(venv))
    real_access = os.access
    # tests run as root here, where chmod does not stop writes: simulate a read-only environment
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(root) else real_access(p, mode))
    with pytest.raises(ApplyError, match=r"cannot write to .*: run abiguard as the owner"):
        apply_changes(env_of(venv), ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert installed(venv)["numpy"] == "2.0.2"


def test_snapshot_that_cannot_be_written_refuses_cleanly(
    venv: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(pairs: list[tuple[str, str]], **kw: Any) -> None:
        raise OSError(28, "No space left on device", pairs[0][1])

    monkeypatch.setattr(apply_mod, "_copy_files", full)
    env = env_of(venv)
    with pytest.raises(ApplyError, match=r"cannot write the snapshot under .*: No space left on device"):
        apply_changes(env, ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=state)
    assert installed(venv)["numpy"] == "2.0.2"
    assert last_snapshot(env, state) is None
    assert not any((state / "snapshots").rglob("*.partial"))


def test_unwritable_state_dir_is_a_clear_error(venv: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ApplyError, match=r"cannot create .*ABIGUARD_STATE_DIR"):
        apply_changes(env_of(venv), ["numpy==1.26.4"], touched=["numpy"], installer="uv", state_dir=blocker / "x")
