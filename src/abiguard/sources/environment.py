"""An installed environment, read from outside.

The target interpreter is run exactly once (`-I -S`, so nothing of the environment is imported) to learn its
paths and version; everything else comes from reading `*.dist-info` files directly. This works when numpy
itself is broken, and when the target is a different Python than the one abiguard runs in.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from abiguard.binary import is_shared_object_name
from abiguard.model import TargetEnvironment


class EnvironmentError_(Exception):
    """The target interpreter cannot be run or described; the message is one line for the user."""


# Runs inside the target interpreter: must stay valid on any Python 3 and import nothing heavy.
_PROBE = r"""
import json, os, platform, sys, sysconfig
try:
    from importlib.machinery import EXTENSION_SUFFIXES as ext
except Exception:
    ext = []
# -S keeps .pth files from running code, but then (before 3.12) site.venv() never sets the venv prefix:
# find pyvenv.cfg the way site.venv() does.
prefix = sys.prefix
exe_dir = os.path.dirname(os.path.abspath(sys.executable))
system_site = False
for cfg in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
    if os.path.isfile(cfg):
        prefix = os.path.dirname(exe_dir)
        with open(cfg) as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip().lower() == "include-system-site-packages":
                    system_site = value.strip().lower() == "true"
        break
dirs = []
prefixes = [prefix] + ([sys.base_prefix] if system_site and prefix != sys.base_prefix else [])
for base in prefixes:
    paths = sysconfig.get_paths(vars={"base": base, "platbase": base})
    for key in ("platlib", "purelib"):
        p = paths.get(key)
        if p and p not in dirs:
            dirs.append(p)
try:
    libc = " ".join(platform.libc_ver()) if sys.platform.startswith("linux") else ""
except Exception:
    libc = ""
impl = sys.implementation
iver = "%d.%d.%d" % impl.version[:3]
if impl.version[3] != "final":
    iver += impl.version[3][0] + str(impl.version[4])
markers = {
    "implementation_name": impl.name,
    "implementation_version": iver,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
print(json.dumps({
    "executable": sys.executable, "prefix": prefix, "version": platform.python_version(),
    "implementation": impl.name, "site": dirs, "platform": sysconfig.get_platform(),
    "ext": list(ext), "markers": markers, "libc": libc.strip(),
    "abiflags": getattr(sys, "abiflags", ""),
}))
"""


def default_python() -> str:
    """`$VIRTUAL_ENV`'s interpreter when one is active, else the interpreter abiguard runs in."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        for rel in ("bin/python", "Scripts/python.exe"):
            candidate = os.path.join(venv, rel)
            if os.path.exists(candidate):
                return candidate
    return sys.executable


def resolve_python(python: str | None) -> str:
    """Accept an interpreter path, a venv directory, or a command name on PATH."""
    if python is None:
        return default_python()
    if os.path.isdir(python):
        for rel in ("bin/python", "Scripts/python.exe"):
            candidate = os.path.join(python, rel)
            if os.path.exists(candidate):
                return candidate
        raise EnvironmentError_(f"{python} is a directory without bin/python: not a virtual environment")
    if os.sep not in python:
        from shutil import which

        found = which(python)
        if found:
            return found
    if not os.path.exists(python):
        raise EnvironmentError_(f"no Python interpreter at {python}")
    return python


def probe(python: str | None = None, timeout: float = 30.0) -> TargetEnvironment:
    exe = resolve_python(python)
    try:
        proc = subprocess.run(
            [exe, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentError_(f"cannot run {exe}: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentError_(f"{exe} failed to describe itself: {last}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EnvironmentError_(f"{exe} did not answer like a Python interpreter") from None
    return TargetEnvironment(
        executable=data["executable"] or exe,
        python_version=data["version"],
        implementation=data["implementation"],
        prefix=data["prefix"],
        site_packages=tuple(p for p in data["site"] if os.path.isdir(p)),
        platform=data["platform"],
        ext_suffixes=tuple(data["ext"]),
        marker_env=data["markers"],
        libc=data["libc"] or None,
        abiflags=data["abiflags"],
    )


@dataclass
class InstalledDistribution:
    name: str  # as written in METADATA
    version: str
    site_dir: str
    dist_info: str
    requires: list[str] = field(default_factory=list)
    installer: str | None = None
    wheel_tags: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # RECORD paths, relative to site_dir (may contain "..")

    @property
    def key(self) -> str:
        return str(canonicalize_name(self.name))

    def shared_objects(self) -> list[str]:
        return [f for f in self.files if is_shared_object_name(f)]


def _read_metadata(path: str) -> tuple[str, str, list[str]]:
    """Name, Version and Requires-Dist from a METADATA file, reading only its header block."""
    name = version = ""
    requires: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line in ("\n", "\r\n"):
                break
            if line[:1] in (" ", "\t"):
                continue  # folded continuation of a long header (Description, License)
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Name":
                name = value
            elif key == "Version":
                version = value
            elif key == "Requires-Dist":
                requires.append(value)
    return name, version, requires


def _read_record(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            return [row[0] for row in csv.reader(fh) if row]
    except OSError:
        return []


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def iter_distributions(env: TargetEnvironment) -> Iterator[InstalledDistribution]:
    """Every `*.dist-info` in the environment's site-packages, first directory wins on duplicates."""
    seen: set[str] = set()
    for site in env.site_packages:
        try:
            entries = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(".dist-info"):
                continue
            info = os.path.join(site, entry)
            try:
                name, version, requires = _read_metadata(os.path.join(info, "METADATA"))
            except OSError:
                continue
            if not name:
                continue
            key = str(canonicalize_name(name))
            if key in seen:
                continue
            seen.add(key)
            wheel = _read_small(os.path.join(info, "WHEEL")) or ""
            installer = (_read_small(os.path.join(info, "INSTALLER")) or "").strip() or None
            yield InstalledDistribution(
                name=name,
                version=version,
                site_dir=site,
                dist_info=info,
                requires=requires,
                installer=installer,
                wheel_tags=[ln[4:].strip() for ln in wheel.splitlines() if ln.startswith("Tag:")],
                files=_read_record(os.path.join(info, "RECORD")),
            )


def module_name(relpath: str, ext_suffixes: tuple[str, ...]) -> str | None:
    """Dotted import name of an extension module at `relpath` (relative to site-packages), else None."""
    if relpath.startswith(("..", "/")):
        return None
    for suffix in sorted(ext_suffixes, key=len, reverse=True):
        if relpath.endswith(suffix):
            parts = relpath[: -len(suffix)].split("/")
            if suffix in (".so", ".pyd") and parts[-1].startswith("lib"):
                return None  # a bare `libX.so` is a plain library (pyarrow's libarrow_python.so)
            if all(p.isidentifier() for p in parts):
                return ".".join(parts)
            return None
    return None


def unowned_shared_objects(env: TargetEnvironment, owned: set[str]) -> list[tuple[str, str]]:
    """(site_dir, relpath) of shared objects under site-packages that no RECORD lists."""
    found: list[tuple[str, str]] = []
    for site in env.site_packages:
        for root, dirs, files in os.walk(site):
            dirs[:] = [d for d in dirs if not d.endswith((".dist-info", "__pycache__"))]
            for name in files:
                if is_shared_object_name(name):
                    full = os.path.join(root, name)
                    if os.path.normpath(full) not in owned:
                        found.append((site, os.path.relpath(full, site).replace(os.sep, "/")))
    return found


def numpy_version(dists: list[InstalledDistribution]) -> str | None:
    for d in dists:
        if d.key == "numpy":
            return d.version
    return None


def platform_tag(env: TargetEnvironment) -> str | None:
    """The most specific wheel platform tag the target accepts, e.g. manylinux_2_36_x86_64 or win_amd64."""
    plat = env.platform.replace("-", "_").replace(".", "_")
    if plat.startswith("linux_") and env.libc and env.libc.startswith("glibc "):
        major, _, minor = env.libc.split()[1].partition(".")
        machine = env.marker_env.get("platform_machine") or plat[len("linux_"):]
        return f"manylinux_{major}_{minor.split('.')[0]}_{machine}"
    return plat or None
