"""Build the real environments the benchmarks scan (once; cached under a root directory).

Variants:

* ``large``: NumPy 2.x and a broad scientific / ML / Jupyter stack (~250 distributions, >1,000 shared
  objects), all built for NumPy 2: the "clean, big" case that peers are timed on.
* ``mixed``: the same set, then a few NumPy-1.x-built releases forced in next to NumPy 2.x with
  ``uv pip install --no-deps``, so abiguard has real findings (broken and at-risk modules).

Each variant is a venv made by ``uv venv --seed`` and filled by ``uv pip install``, with ``UV_CACHE_DIR``
inside the root. A stamp file holds the exact inputs (requirements, overrides, interpreter, uv version); the
variant is rebuilt only when they change. The summary (counts, bytes, build time, the frozen set) is kept
next to the stamp in ``info.json`` for ``benchmarks/run.py``.

Usage::

    python benchmarks/build_env.py [--variant large|mixed|both] [--root DIR] [--python PY] [--force]

Stdlib only.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "abiguard-bench"
FIND_LINKS = Path(os.environ.get("ABIGUARD_BENCH_FIND_LINKS", "/opt/wheels"))
TORCH_VERSION = "2.13.0+cpu"

# Distributions that use NumPy (C-API, Cython, pybind11, f2py, or the Python API) plus a few big stacks
# that bring many dependencies and compiled modules (Jupyter, spaCy). xgboost-cpu instead of xgboost:
# the latter pulls nvidia-nccl-cu12 on Linux.
LARGE_REQUIREMENTS: tuple[str, ...] = (
    "numpy>=2",
    "pandas",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "pyarrow",
    "h5py",
    "scikit-image",
    "statsmodels",
    "numba",
    "opencv-python-headless",
    "astropy",
    "pyerfa",
    "shapely",
    "xarray",
    "numexpr",
    "bottleneck",
    "tables",
    "pywavelets",
    "contourpy",
    "kiwisolver",
    "lightgbm",
    "xgboost-cpu",
    "catboost",
    "sympy",
    "pillow",
    "netCDF4",
    "cftime",
    "zarr",
    "numcodecs",
    "imageio",
    "tifffile",
    "pymsis",
    "pyproj",
    "seaborn",
    "fastparquet",
    "gensim",
    "polars",
    "onnxruntime",
    "jax",
    "jaxlib",
    "spacy",
    "jupyterlab",
    "ipywidgets",
    # more NumPy users with many compiled modules
    "healpy",
    "casadi",
    "cvxpy",
    "mahotas",
    "biopython",
    "av",
    "duckdb",
    "rasterio",
    "pyogrio",
    "geopandas",
    "vtk",
    "pyvista",
    "pygame",
    # widely installed, many compiled modules, no NumPy (mypyc, Cython, C): the bulk a scan must skip fast
    "mypy",
    "black",
    "gevent",
    "pycryptodome",
    "pysam",
    "lxml",
    "aiohttp",
    "sqlalchemy",
    "cytoolz",
    "rapidfuzz",
    "zstandard",
)

# NumPy-1.x-built releases (cp311 manylinux wheels exist for each; checked with `uv pip install --dry-run`)
# forced over the large set with --no-deps. contourpy 1.2.0 is pybind11 < 2.12 (at-risk, imports fine).
MIXED_OVERRIDES: tuple[str, ...] = (
    "pandas==2.0.3",
    "pymsis==0.8.0",
    "contourpy==1.2.0",
    "scikit-learn==1.3.2",
    "h5py==3.9.0",
    "shapely==2.0.2",
    "pywavelets==1.4.1",
    "numexpr==2.8.7",
    "bottleneck==1.3.7",
)

VARIANTS = ("large", "mixed")


@dataclass
class EnvSummary:
    variant: str
    python: str
    distributions: int
    shared_objects: int
    shared_object_bytes: int
    build_seconds: float
    built_now: bool


def uv_binary() -> str:
    found = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if found is None:
        try:
            from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            sys.exit("build_env: uv not found (install it, or run with the dev venv's python)")
        found = find_uv_bin()
    return found


def default_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def torch_requirement() -> list[str]:
    """`torch==2.13.0+cpu` when the local CPU wheel is there; otherwise nothing (never the CUDA build)."""
    if any(FIND_LINKS.glob(f"torch-{TORCH_VERSION}-*.whl")):
        return [f"torch=={TORCH_VERSION}"]
    print(f"build_env: no torch {TORCH_VERSION} wheel in {FIND_LINKS}; leaving torch out", file=sys.stderr)
    return []


def requirements_for(variant: str) -> tuple[list[str], list[str]]:
    """(requirements installed with dependencies, overrides installed with --no-deps afterwards)."""
    base = list(LARGE_REQUIREMENTS) + torch_requirement()
    return base, (list(MIXED_OVERRIDES) if variant == "mixed" else [])


def uv_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UV_CACHE_DIR"] = str(root / "uv-cache")
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_PREFIX", None)
    return env


def env_python(root: Path, variant: str) -> Path:
    return root / variant / "venv" / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def is_shared_object_name(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def shared_objects(prefix: Path) -> list[Path]:
    """Every regular ELF file named like a shared object under `prefix` (symlinks not followed)."""
    found: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(prefix):
        for name in filenames:
            if not is_shared_object_name(name):
                continue
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def measure(python: Path) -> tuple[int, int, int]:
    """(distributions, shared objects, bytes of shared objects) of the env whose interpreter is `python`."""
    sp = site_packages(python)
    dists = sum(1 for p in sp.iterdir() if p.name.endswith(".dist-info"))
    sos = shared_objects(python.parent.parent)
    return dists, len(sos), sum(p.stat().st_size for p in sos)


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env)


def stamp_text(variant: str, python: str, uv: str) -> str:
    reqs, overrides = requirements_for(variant)
    uv_version = subprocess.run([uv, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    return json.dumps(
        {"variant": variant, "python": python, "uv": uv_version, "find_links": str(FIND_LINKS),
         "compile_bytecode": True,
         "requirements": reqs, "overrides_no_deps": overrides},
        indent=2, sort_keys=True,
    ) + "\n"


def build(root: Path, variant: str, python: str, force: bool = False) -> EnvSummary:
    uv = uv_binary()
    env = uv_env(root)
    vdir = root / variant
    stamp = vdir / "stamp.json"
    info_file = vdir / "info.json"
    want = stamp_text(variant, python, uv)
    py = env_python(root, variant)
    if not force and stamp.exists() and stamp.read_text() == want and info_file.exists() and py.exists():
        info = json.loads(info_file.read_text())
        return EnvSummary(**{**info["summary"], "built_now": False})

    shutil.rmtree(vdir, ignore_errors=True)
    vdir.mkdir(parents=True)
    reqs, overrides = requirements_for(variant)
    (vdir / "requirements.txt").write_text("\n".join(reqs) + "\n")
    started = time.perf_counter()
    run([uv, "venv", "--quiet", "--seed", "--python", python, str(vdir / "venv")], env)
    find_links = ["--find-links", str(FIND_LINKS)] if FIND_LINKS.is_dir() else []
    # --compile-bytecode: like pip, which writes .pyc at install; otherwise every timed start compiles.
    common = ["--python", str(py), "--only-binary", ":all:", "--compile-bytecode", *find_links]
    run([uv, "pip", "install", *common, "-r", str(vdir / "requirements.txt")], env)
    if overrides:
        run([uv, "pip", "install", *common, "--no-deps", *overrides], env)
    # pip is seeded, but make sure `python -m pip check` works even if a resolution removed it.
    run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(py), "pip"], env)
    seconds = time.perf_counter() - started

    freeze = subprocess.run([uv, "pip", "freeze", "--python", str(py)], check=True, env=env,
                            capture_output=True, text=True).stdout
    (vdir / "freeze.txt").write_text(freeze)
    dists, n_so, so_bytes = measure(py)
    summary = EnvSummary(variant, str(py), dists, n_so, so_bytes, round(seconds, 1), True)
    info = {"summary": {k: v for k, v in asdict(summary).items() if k != "built_now"},
            "requirements": reqs, "overrides_no_deps": overrides}
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    stamp.write_text(want)  # last: a half-built env is never taken for a finished one
    return summary


def ensure(
    root: Path, variants: list[str], python: str | None = None, force: bool = False
) -> list[EnvSummary]:
    """Build (or reuse) the variants under `root`, holding a lock so concurrent callers wait."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return [build(root, v, python or default_python(), force) for v in variants]


def print_summary(summaries: list[EnvSummary]) -> None:
    header = f"{'variant':<8} {'dists':>6} {'.so files':>9} {'.so MB':>9} {'build s':>8}  python"
    print(header, file=sys.stderr)
    for s in summaries:
        note = "" if s.built_now else " (cached)"
        print(f"{s.variant:<8} {s.distributions:>6} {s.shared_objects:>9} "
              f"{s.shared_object_bytes / 1e6:>9.1f} {s.build_seconds:>8.1f}  {s.python}{note}",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--variant", choices=[*VARIANTS, "both"], default="both")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"cache directory (default {DEFAULT_ROOT})")
    parser.add_argument("--python", default=None,
                        help="base interpreter for the venvs (default: the base of the one running this)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = parser.parse_args(argv)
    variants = list(VARIANTS) if args.variant == "both" else [args.variant]
    summaries = ensure(args.root.expanduser().resolve(), variants, args.python, args.force)
    print_summary(summaries)
    for s in summaries:
        print(s.python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
