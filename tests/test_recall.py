"""Recall: an unchanged environment's check is answered again from what the last one printed, and any
change the answer rested on makes it a full check. Real venvs, a real wheel installed by uv, real compiled
modules; "recalled" is read from `-X importtime` (a recalled check never imports abiguard.check)."""

from __future__ import annotations

import fcntl
import json
import marshal
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from abiguard import recall, stamps
from tests.support.build import numpy_extension
from tests.support.venvs import as_egg_info, make_venv, site_packages, uv, uv_env
from tests.support.wheels import build_wheel

pytestmark = [pytest.mark.venv, pytest.mark.network]

SETTLE_S = stamps.RACY_NS / 1e9 + 0.2


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test keeps its answers in a directory of its own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(cache))
    return cache


def check(python: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str, bool]:
    """Exit code, stdout, and whether the answer was recalled."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "COLUMNS")}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "abiguard", "check", "--python", str(python),
                           *extra], capture_output=True, text=True, env=full_env, timeout=300)
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert said == [], proc.stderr[-3000:]
    return proc.returncode, proc.stdout, "abiguard.check" not in proc.stderr


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy 2 and `oldext` 1.0, a wheel whose extension module was compiled against NumPy 1.x: broken."""
    root = tmp_path_factory.mktemp("recall")
    ext = numpy_extension("oldext", "1.26.4", root / "build")
    wheel = build_wheel(root / "wheels", "oldext", "1.0", {"oldext/__init__.py": b"",
                                                           f"oldext/{ext.name}": ext.read_bytes()}, ["numpy"])
    python = make_venv(root / "base", "numpy==2.0.2")
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), str(wheel)], check=True, env=uv_env())
    return python


@pytest.fixture(scope="module")
def envs(base_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Copies of the base env, made together and left to settle once (an answer resting on a file changed
    less than RACY_NS ago is not kept), so that each test starts from a state whose answer can be kept."""
    root = tmp_path_factory.mktemp("copies")
    names = ("unchanged", "library", "rewritten", "metadata", "pyvenv", "removed", "columns", "tty", "damaged",
             "warning", "no-cache", "egg-info")
    made = {}
    for name in names:
        shutil.copytree(base_env.parent.parent, root / name, symlinks=True)
        made[name] = root / name / "bin" / "python"
    time.sleep(SETTLE_S)
    yield made.__getitem__


def kept_then_recalled(python: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    code, out, recalled = check(python, *extra, env=env)
    assert not recalled
    again = check(python, *extra, env=env)
    assert again == (code, out, True)
    return code, out


def test_an_unchanged_environment_gets_the_same_answer_recalled(envs: Callable[[str], Path]) -> None:
    python = envs("unchanged")
    code, text = kept_then_recalled(python)
    assert code == 1 and "oldext 1.0" in text and "broken" in text
    json_code, doc = kept_then_recalled(python, "--format", "json")  # another output, another answer
    assert json_code == 1 and "oldext" in {d["name"] for d in json.loads(doc)["distributions"]}
    full = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", str(python), "--no-cache"],
                          capture_output=True, text=True, timeout=300)
    assert (full.returncode, full.stdout) == (code, text)


def _write_into(path: Path, data: bytes) -> None:
    """Rewrite a file in place, as `cp` over it does: same inode, so its directory does not change."""
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(data)


def _library(python: Path) -> str:
    numpy_extension("dropped_in", "1.26.4", site_packages(python) / "oldext")
    return "dropped_in"


def _rewritten(python: Path) -> str:
    (binary,) = (site_packages(python) / "oldext").glob("oldext*.so")
    fixed = numpy_extension("oldext", "2.0.2", binary.parent.parent.parent / "np2build")
    _write_into(binary, fixed.read_bytes())
    return "No NumPy ABI conflicts"


def _metadata(python: Path) -> str:
    (meta,) = site_packages(python).glob("oldext-1.0.dist-info/METADATA")
    _write_into(meta, meta.read_bytes().replace(b"Version: 1.0", b"Version: 1.1"))
    return "oldext 1.1"


def _pyvenv(python: Path) -> str:
    cfg = python.parent.parent / "pyvenv.cfg"
    cfg.write_text(cfg.read_text() + "# edited\n")
    return "oldext 1.0"


def _removed(python: Path) -> str:
    subprocess.run([uv(), "pip", "uninstall", "--quiet", "--python", str(python), "oldext"], check=True, env=uv_env())
    return "No NumPy ABI conflicts"


@pytest.mark.parametrize("change", [_library, _rewritten, _metadata, _pyvenv, _removed],
                         ids=["new-library", "binary-rewritten-in-place", "metadata-edited", "pyvenv-cfg-edited",
                              "distribution-removed"])
def test_a_change_it_rested_on_makes_a_full_check(envs: Callable[[str], Path], change: Callable[[Path], str]) -> None:
    python = envs(change.__name__.strip("_"))
    kept_then_recalled(python)
    expected = change(python)
    _code, out, recalled = check(python)
    assert not recalled
    assert expected in out


def test_an_egg_info_claiming_another_tree_makes_a_full_check(envs: Callable[[str], Path]) -> None:
    """What an egg-info's top_level.txt claims decides whose shared objects are whose: an edit of it in place
    (its directory's mtime unchanged) must not be answered from before."""
    python = envs("egg-info")
    egg = as_egg_info(site_packages(python), "oldext-1.0.dist-info", "elsewhere")
    time.sleep(SETTLE_S)
    _code, before = kept_then_recalled(python)
    assert "Shared objects that no installed distribution owns" in before
    _write_into(egg / "top_level.txt", b"oldext\n")
    _code, after, recalled = check(python)
    assert not recalled and "broken  oldext 1.0" in after


def test_output_settings_are_part_of_the_question(envs: Callable[[str], Path]) -> None:
    python = envs("columns")
    kept_then_recalled(python, env={"COLUMNS": "100"})
    assert not check(python, env={"COLUMNS": "120"})[2]


def test_on_a_terminal_the_coloured_answer_is_recalled_and_progress_does_not_prevent_it(
    envs: Callable[[str], Path],
) -> None:
    python = envs("tty")

    def on_terminal() -> str:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "VIRTUAL_ENV", "COLUMNS", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        proc = subprocess.Popen([sys.executable, "-m", "abiguard", "check", "--python", str(python)],
                                stdout=follower, stderr=follower, env=env)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=300)
        os.close(leader)
        return b"".join(chunks).decode(errors="replace")

    first = on_terminal()
    assert "scanning shared objects" in first and "\x1b[" in first  # progress, and colours
    second = on_terminal()
    assert "scanning shared objects" not in second  # recalled: no scan to show
    assert first.endswith(second) and "oldext" in second


def test_a_damaged_answer_only_costs_a_full_check(envs: Callable[[str], Path], _own_cache: Path) -> None:
    python = envs("damaged")
    code, out = kept_then_recalled(python)
    (answer,) = _own_cache.glob("answer-*.marshal")
    answer.write_bytes(b"\x00garbage")
    assert check(python) == (code, out, False)
    assert check(python) == (code, out, True)
    answer.write_bytes(marshal.dumps([1, 2, 3]))
    assert check(python) == (code, out, False)


def test_a_run_that_warned_is_not_kept(envs: Callable[[str], Path], _own_cache: Path) -> None:
    python = envs("warning")
    _own_cache.mkdir(parents=True, exist_ok=True)
    (_own_cache / "cache.sqlite3").write_bytes(b"not a database" * 100)
    proc = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", str(python)], capture_output=True,
                          text=True, timeout=300)
    assert "warning" in proc.stderr
    assert not list(_own_cache.glob("answer-*"))
    kept_then_recalled(python)  # the cache is healthy again


def test_no_cache_verify_and_a_path_search_neither_keep_nor_recall(
    envs: Callable[[str], Path], _own_cache: Path,
) -> None:
    python = envs("no-cache")
    for extra in (("--no-cache",), ("--verify",)):
        assert not check(python, *extra)[2]
        assert not check(python, *extra)[2]
    # `--python python` is looked up on PATH: a new interpreter earlier on PATH would change the answer
    # without any stat of ours seeing it.
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", "python"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and "oldext" in proc.stdout, proc.stderr
    assert not list(_own_cache.glob("answer-*"))


def test_files_changed_moments_ago_are_not_trusted(tmp_path: Path, base_env: Path) -> None:
    """Within one tick of the file system's clock a second change keeps the stamp: not kept (racy)."""
    python = make_venv(tmp_path / "fresh", "numpy==2.0.2")
    metadata = next((tmp_path / "fresh").glob("lib*/python*/site-packages/numpy-*.dist-info/METADATA"))
    for _attempt in range(3):  # a loaded machine can take longer than the racy window to run a check
        os.chmod(metadata, metadata.stat().st_mode)  # changes its ctime: a change moments ago
        changed = time.time()
        check(python)
        if time.time() - changed < 1.0:  # some file systems stamp whole seconds: that must never be trusted
            break
    else:
        pytest.skip("no check finished within the racy window of a change on this loaded machine")
    assert not check(python)[2]  # so the first run kept nothing
    time.sleep(SETTLE_S)
    check(python)
    assert check(python)[2]


def test_only_the_latest_answers_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    folder.mkdir()
    for i in range(recall.KEEP + 4):
        old = folder / f"answer-{i:08x}.marshal"
        old.write_bytes(b"x")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    recall._write(str(folder / "answer-newest.marshal"), b"y")
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == recall.KEEP
    assert "answer-newest.marshal" in left and "answer-00000000.marshal" not in left
    assert f"answer-{recall.KEEP + 3:08x}.marshal" in left
