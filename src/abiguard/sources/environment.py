"""An installed environment, read from outside.

The target interpreter is run exactly once (`-I -S`, so nothing of the environment is imported) to learn its
paths and version; everything else comes from reading `*.dist-info` files directly. This works when numpy
itself is broken, and when the target is a different Python than the one abiguard runs in.
"""

from __future__ import annotations

import contextlib
import csv
import json
import marshal
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
    shared: list[str] = field(default_factory=list)  # RECORD paths of shared objects, relative to site_dir

    @property
    def key(self) -> str:
        return str(canonicalize_name(self.name))

    def shared_objects(self) -> list[str]:
        return self.shared


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


def _shared_in_record(path: str, memo: ListingMemo) -> list[str]:
    """The shared objects a RECORD lists (paths may contain `..`); remembered by the RECORD's size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    known = memo.old_records.get(path)
    if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns:
        memo.records[path] = known
        return list(known[2])
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            shared = [row[0] for row in csv.reader(fh) if row and is_shared_object_name(row[0])]
    except OSError:
        return []
    memo.records[path] = [st.st_size, st.st_mtime_ns, shared]
    return shared


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def iter_distributions(env: TargetEnvironment, memo: ListingMemo | None = None) -> Iterator[InstalledDistribution]:
    """Every `*.dist-info` in the environment's site-packages, first directory wins on duplicates."""
    memo = memo or ListingMemo(None)
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
                shared=_shared_in_record(os.path.join(info, "RECORD"), memo),
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


_SKIP_DIRS = (".dist-info", "__pycache__")


def unowned_shared_objects(
    env: TargetEnvironment, owned: set[str], memo: ListingMemo | None = None
) -> list[tuple[str, str]]:
    """(site_dir, relpath) of shared objects under site-packages that no RECORD lists.

    Listing every file of a large environment costs more than the rest of a cached check, so each
    directory's subdirectories and shared objects are remembered in `memo_path` with the directory's mtime:
    an unchanged directory costs one stat (see ListingMemo)."""
    memo = memo or ListingMemo(None)
    found: list[tuple[str, str]] = []
    for site in env.site_packages:
        stack = [site]
        while stack:
            folder = stack.pop()
            listing = _listing(folder, memo.old_dirs, memo.dirs)
            if listing is None:
                continue
            subdirs, shared = listing
            for name in shared:
                full = os.path.join(folder, name)
                if full not in owned:
                    found.append((site, os.path.relpath(full, site).replace(os.sep, "/")))
            stack.extend(os.path.join(folder, d) for d in subdirs)
    return found


def _listing(folder: str, old: dict[str, list[Any]], new: dict[str, list[Any]]) -> tuple[list[str], list[str]] | None:
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return None
    known = old.get(folder)
    if known is not None and known[0] == mtime:
        new[folder] = known
        return known[1], known[2]
    subdirs: list[str] = []
    shared: list[str] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if not entry.name.endswith(_SKIP_DIRS):
                        subdirs.append(entry.name)
                elif is_shared_object_name(entry.name):
                    shared.append(entry.name)
    except OSError:
        return None
    new[folder] = [mtime, subdirs, shared]
    return subdirs, shared


class ListingMemo:
    """What listing an environment found last time, keyed by what would change if it changed.

    Directories are keyed by their mtime (adding, removing or renaming an entry changes it), RECORD files by
    size and mtime. An unchanged environment then costs a stat per directory and per RECORD, not a read of
    every file name. Kept as one `marshal` file per environment (private to this interpreter, and 5x faster to
    load than JSON); a failure to read or write only costs speed."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        data = self._load()
        self.old_dirs: dict[str, list[Any]] = data.get("dirs", {})
        self.old_records: dict[str, list[Any]] = data.get("records", {})
        self.dirs: dict[str, list[Any]] = {}
        self.records: dict[str, list[Any]] = {}

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as fh:
                data = marshal.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError, EOFError, TypeError):
            return {}

    def save(self) -> None:
        if self.path is None or (self.dirs == self.old_dirs and self.records == self.old_records):
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as fh:
                marshal.dump({"dirs": self.dirs, "records": self.records}, fh)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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
