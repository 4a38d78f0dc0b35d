"""`abiguard constraints`: the printed file really keeps a plain installer from breaking the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.build import numpy_extension
from tests.support.venvs import cached_venv, make_venv, site_packages, uv, uv_env

pytestmark = [pytest.mark.venv, pytest.mark.network]


def constraints(python: Path, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "ABIGUARD_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "abiguard", "constraints", "--python", str(python), *extra],
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

    doc = json.loads(constraints(python, tmp_path, "--format", "json"))
    assert doc["schema"] == 1 and doc["constraint"] == "numpy<2" and doc["not_judged"] == []
    assert [b["specifier"] for b in doc["bounds"]] == ["<2"]
    assert doc["bounds"][0]["reasons"][0].startswith("pandas 2.0.3: ")
    assert doc["environment"]["numpy_installed"] == "1.26.4"


def test_a_bound_the_installed_numpy_breaks_says_so(tmp_path: Path) -> None:
    python = cached_venv("np2-pandas203", "numpy==2.0.2", "pandas==2.0.3")
    text = constraints(python, tmp_path)
    assert "# the installed numpy 2.0.2 does not meet this: the environment is broken now" in text
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == ["numpy<2"]
    healthy = constraints(cached_venv("np126-pandas203", "numpy==1.26.4", "pandas==2.0.3"), tmp_path)
    assert "does not meet this" not in healthy


def test_numpy2_builds_give_a_floor(tmp_path: Path) -> None:
    python = cached_venv("np2-pandas223", "numpy==2.0.2", "pandas==2.2.3")
    lines = [ln for ln in constraints(python, tmp_path).splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("numpy>=")
    assert "<2" not in lines[0]


def test_an_unowned_numpy1_build_bounds_numpy_too(tmp_path: Path) -> None:
    """A module copied into site-packages by hand is on the import path like any other."""
    python = make_venv(tmp_path / "venv", "numpy==1.26.4")
    numpy_extension("handmade_np1", "1.26.4", site_packages(python))
    text = constraints(python, tmp_path)
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == ["numpy<2"]
    assert "#   numpy<2: unowned handmade_np1" in text


def test_bounds_that_contradict_each_other_are_an_error_not_a_file(tmp_path: Path) -> None:
    """pandas 2.0.3 (NumPy 1.x builds) next to h5py 3.16.0 (built for NumPy >= 2.0): `numpy<2,>=2.0` would make
    installers pick absurd releases, so nothing is written. Without pandas the floor stands, and a shared
    object that cannot be read is named, since its bound cannot be."""
    python = make_venv(tmp_path / "venv", "numpy==2.0.2", "pandas==2.0.3", "h5py==3.16.0")
    env = {**os.environ, "ABIGUARD_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "constraints.txt"
    run = [sys.executable, "-m", "abiguard", "constraints", "--python", str(python)]
    proc = subprocess.run([*run, "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no numpy fits every installed binary" in proc.stderr and "Traceback" not in proc.stderr
    assert "pandas 2.0.3" in proc.stderr and "h5py 3.16.0" in proc.stderr
    assert not out.exists()
    as_json = subprocess.run([*run, "--format", "json"], capture_output=True, text=True, env=env)
    assert as_json.returncode == 2 and as_json.stdout == "" and "no numpy fits" in as_json.stderr
    # `check` does not send the user to a numpy that breaks the other half either
    checked = subprocess.run([sys.executable, "-m", "abiguard", "check", "--python", str(python)], capture_output=True,
                             text=True, env=env).stdout
    assert "pip install \"numpy" not in checked and "way out: moving numpy cannot help" in checked
    assert "way out: upgrade pandas to a release built for NumPy 2" in checked

    subprocess.run([uv(), "pip", "uninstall", "--quiet", "--python", str(python), "pandas"], check=True,
                   env=uv_env())
    victim = next((site_packages(python) / "h5py").glob("_conv.*.so"))
    victim.unlink()  # uv links installed files to its cache: write a new file, never into the linked one
    victim.write_bytes(b"\x7fELF" + b"\0" * 60)
    proc = subprocess.run([*run, "-o", "-"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")] == ["numpy>=2.0"]
    assert "# not judged: h5py 3.16.0" in proc.stdout
    assert not (tmp_path / "-").exists()
    doc = json.loads(subprocess.run([*run, "--format", "json"], capture_output=True, text=True, env=env).stdout)
    assert doc["constraint"] == "numpy>=2.0" and doc["not_judged"] == ["h5py 3.16.0"]
