"""Real virtual environments made with uv, from the same cached index downloads uv keeps."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.cache import cache_root


def uv() -> str:
    found = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if found is None:
        from uv import find_uv_bin  # the uv wheel is a dependency of abiguard

        found = find_uv_bin()
    return found


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", str(cache_root() / "uv-cache"))
    env.pop("VIRTUAL_ENV", None)
    return env


def make_venv(path: Path, *requirements: str) -> Path:
    """Create a venv at `path` with `requirements` installed by uv; returns its python."""
    subprocess.run([uv(), "venv", "--quiet", "--seed", "--python", sys.executable, str(path)],
                   check=True, env=uv_env())
    python = path / "bin" / "python"
    if requirements:
        subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), *requirements],
                       check=True, env=uv_env())
    return python


def cached_venv(name: str, *requirements: str) -> Path:
    """A venv kept in the test cache across runs, one per Python version running the suite (its venvs are
    made with that interpreter); tests must not change it (copy it with `clone`)."""
    root = cache_root() / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    name = f"{name}-py{sys.version_info[0]}{sys.version_info[1]}"
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = path / ".abiguard-test-requirements"
        if not (stamp.exists() and stamp.read_text() == "\n".join(requirements)):
            shutil.rmtree(path, ignore_errors=True)
            make_venv(path, *requirements)
            stamp.write_text("\n".join(requirements))
    return path / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def system_site_venv(path: Path, *requirements: str) -> Path:
    """A venv that also imports from the base interpreter's site-packages (`--system-site-packages`)."""
    subprocess.run([uv(), "venv", "--quiet", "--system-site-packages", "--python", sys.executable, str(path)],
                   check=True, env=uv_env())
    python = path / "bin" / "python"
    if requirements:
        subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), *requirements], check=True,
                       env=uv_env())
    return python


def user_site(base: Path, *requirements: str) -> tuple[dict[str, str], Path]:
    """A user site-packages under PYTHONUSERBASE=base, filled as `pip install --user` would."""
    site = base / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", sys.executable, "--target", str(site), "--no-deps",
                    *requirements], check=True, env=uv_env())
    return {"PYTHONUSERBASE": str(base)}, site


def as_egg_info(site: Path, dist_info: str, top_level: str) -> Path:
    """Turn the installed `dist_info` (a glob, e.g. `numpy-*.dist-info`) into an egg-info directory with PKG-INFO
    and a top_level.txt naming `top_level`, and no file list: how Debian's packages look."""
    (info,) = site.glob(dist_info)
    egg = site / (info.name.removesuffix(".dist-info") + ".egg-info")
    egg.mkdir()
    (egg / "PKG-INFO").write_bytes((info / "METADATA").read_bytes())
    (egg / "top_level.txt").write_text(f"{top_level}\n")
    shutil.rmtree(info)
    return egg
