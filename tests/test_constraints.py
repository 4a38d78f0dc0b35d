"""`abiguard constraints`: the printed file really keeps a plain installer from breaking the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.venvs import cached_venv, uv, uv_env

pytestmark = [pytest.mark.venv, pytest.mark.network]


def constraints(python: Path, tmp_path: Path) -> str:
    env = {**os.environ, "ABIGUARD_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "abiguard", "constraints", "--python", str(python)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_numpy1_builds_give_an_upper_bound_that_uv_honours(tmp_path: Path) -> None:
    python = cached_venv("np126-pandas203", "numpy==1.26.4", "pandas==2.0.3")
    text = constraints(python, tmp_path)
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["numpy<2"]
    assert "pandas 2.0.3" in text
    cfile = tmp_path / "constraints.txt"
    cfile.write_text(text)
    proc = subprocess.run([uv(), "pip", "install", "--dry-run", "--python", str(python), "-c", str(cfile),
                           "numpy>=2"], capture_output=True, text=True, env=uv_env())
    assert proc.returncode != 0  # the bound refuses the break a plain install would make
    assert "numpy" in proc.stderr


def test_numpy2_builds_give_a_floor(tmp_path: Path) -> None:
    python = cached_venv("np2-pandas223", "numpy==2.0.2", "pandas==2.2.3")
    lines = [ln for ln in constraints(python, tmp_path).splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("numpy>=")
    assert "<2" not in lines[0]
