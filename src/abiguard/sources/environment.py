"""An installed environment, read from outside.

The target interpreter is run exactly once (`-I -S`, so nothing of the environment is imported) to learn its
paths and version; everything else comes from reading `*.dist-info` files directly. This works when numpy
itself is broken, and when the target is a different Python than the one abiguard runs in.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import marshal
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from abiguard import stamps
from abiguard.binary import SHARED_OBJECT_SUFFIXES, is_shared_object_name
from abiguard.binary.formats import open_regular
from abiguard.model import TargetEnvironment, canonical_name


class EnvironmentError_(Exception):
    """The target interpreter cannot be run or described; the message is one line for the user."""


# Runs inside the target interpreter: must stay valid on any Python 3 and import nothing heavy.
_PROBE = r"""
import json, os, platform, sys
try:
    from importlib.machinery import EXTENSION_SUFFIXES as ext
except Exception:
    ext = []
# -S keeps .pth files from running code, but then (before 3.12) site.venv() never sets the venv prefix:
# find pyvenv.cfg the way site.venv() does, and set the prefix as it would, before sysconfig reads it (Debian's
# picks its scheme from it: without, a venv's site-packages is looked for under local/.../dist-packages).
prefix = sys.prefix
exe_dir = os.path.dirname(os.path.abspath(sys.executable))
system_site = False
in_venv = False
for cfg in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
    if os.path.isfile(cfg):
        in_venv = True
        prefix = sys.prefix = sys.exec_prefix = os.path.dirname(exe_dir)
        with open(cfg) as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip().lower() == "include-system-site-packages":
                    system_site = value.strip().lower() == "true"
        break
import site, sysconfig
dirs = []
seen = set()
# The user's site-packages, where site.main() would add it (-I keeps it from us): first, or after a system-site
# venv's own; not in a venv that hides the system's, not with PYTHONNOUSERSITE, not under setuid.
# PYTHONUSERBASE moves it.
user = None
if (system_site or not in_venv) and not os.environ.get("PYTHONNOUSERSITE"):
    if not hasattr(os, "getuid") or (os.getuid() == os.geteuid() and os.getgid() == os.getegid()):
        try:
            user = site.getusersitepackages()
        except Exception:
            user = None
if in_venv:
    order = [prefix, None] + ([sys.base_prefix] if system_site and prefix != sys.base_prefix else [])
else:
    order = [None, prefix]
for base in order:
    if base is None:
        found = [user]
    else:
        paths = sysconfig.get_paths(vars={"base": base, "platbase": base})
        found = [paths.get("platlib"), paths.get("purelib")]
        try:  # a distribution's own layout (Debian's dist-packages) is known to site, not always to sysconfig
            found += [p for p in site.getsitepackages([base]) if p.endswith(("site-packages", "dist-packages"))]
        except Exception:
            pass
    for p in found:
        real = os.path.realpath(p) if p else None
        if real and real not in seen:
            seen.add(real)
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
            if stamps.exists(candidate):
                return candidate
        # checking another environment instead would report it clean: a deleted venv would pass CI
        raise EnvironmentError_(f"VIRTUAL_ENV is {venv}, which has no bin/python: deactivate it, or pass --python")
    return sys.executable


def resolve_python(python: str | None) -> str:
    """Accept an interpreter path, a venv directory, or a command name on PATH."""
    if python is None:
        return default_python()
    if stamps.isdir(python):
        for rel in ("bin/python", "Scripts/python.exe"):
            candidate = os.path.join(python, rel)
            if stamps.exists(candidate):
                return candidate
            if os.path.islink(candidate):
                raise EnvironmentError_(f"{candidate} is a broken link (to {os.readlink(candidate)}): the interpreter "
                                        "this venv was made from is gone; recreate the venv")
        raise EnvironmentError_(f"{python} is a directory without bin/python: not a virtual environment")
    if os.sep not in python:
        from shutil import which

        stamps.unrecordable()  # which file PATH names can change without any stat of ours seeing it
        found = which(python)
        if found:
            return found
        if stamps.exists(python):  # not a command on PATH, but a file here: what was meant
            return os.path.abspath(python)
    if not stamps.exists(python):
        raise EnvironmentError_(f"no Python interpreter at {python}")
    return python


def probe(
    python: str | None = None, timeout: float = 30.0, memo_dir: str | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> TargetEnvironment:
    """Describe the target interpreter by running it once; `meanwhile` is called while it runs.

    With `memo_dir`, the answer is kept there and reused while nothing it depends on has changed (see
    `_probe_identity`): starting the interpreter costs more than the rest of a cached `check`."""
    exe = resolve_python(python)
    identity = _probe_identity(exe) if memo_dir else None
    memo = Memo(os.path.join(memo_dir, f"probe-{zlib.crc32(exe.encode()):08x}.marshal") if memo_dir else None)
    known = memo.get("derived", "probe", identity) if identity is not None else None
    if isinstance(known, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return _described(known, exe)
    data = _run_probe(exe, timeout, meanwhile)
    try:
        env = _described(data, exe)
    except (KeyError, TypeError, ValueError):
        raise EnvironmentError_(f"{exe} did not answer like a Python interpreter") from None
    if identity is not None:
        memo.put("derived", "probe", identity, data)
        memo.save()
    return env


def _described(data: dict[str, Any], exe: str) -> TargetEnvironment:
    site_packages = tuple(p for p in data["site"] if stamps.isdir(p))
    if not site_packages:  # checking nothing would pass for a clean result
        looked = ", ".join(data["site"]) or "nowhere"
        raise EnvironmentError_(f"{exe} has no site-packages directory (looked in {looked})")
    return TargetEnvironment(
        executable=data["executable"] or exe,
        python_version=data["version"],
        implementation=data["implementation"],
        prefix=data["prefix"],
        site_packages=site_packages,
        platform=data["platform"],
        ext_suffixes=tuple(data["ext"]),
        marker_env=dict(data["markers"]),
        libc=data["libc"] or None,
        abiflags=data["abiflags"],
    )


def _run_probe(exe: str, timeout: float, meanwhile: Callable[[], object] | None) -> dict[str, Any]:
    import json
    import subprocess  # both only when the interpreter has to be asked, which a cached check does not

    try:
        # a session of its own: a wrapper script that hangs is stopped with whatever it started
        proc = subprocess.Popen([exe, "-I", "-S", "-c", _PROBE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=hasattr(os, "killpg"))
    except OSError as exc:
        raise EnvironmentError_(f"cannot run {exe}: {exc.strerror or exc}") from None
    with proc:
        if meanwhile is not None:
            meanwhile()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise EnvironmentError_(f"cannot run {exe}: no answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise EnvironmentError_(f"{exe} failed to describe itself: {_why_failed(proc.returncode, err)}")
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EnvironmentError_(f"{exe} did not answer like a Python interpreter") from None
    if not isinstance(data, dict):
        raise EnvironmentError_(f"{exe} did not answer like a Python interpreter")
    return data


def _stop(proc: Any) -> None:
    import signal

    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    proc.communicate()


def _why_failed(returncode: int, err: str) -> str:
    """One short line: what the interpreter said last, or the signal that killed it."""
    if returncode < 0:
        import signal

        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    if "-I" in err and ("Unknown option" in err or "unknown option" in err):
        return "it does not know the -I option: not Python 3 (Python 2 cannot be checked)"
    lines = [line.strip() for line in err.splitlines() if line.strip()] or [f"exit status {returncode}, no output"]
    # Python's error is its last line, after a traceback; a wrapper (a pyenv shim) says what is wrong first
    said = lines[-1] if any(line.startswith("Traceback") for line in lines) else lines[0]
    if "import json, os" in said:  # it printed the probe's first line back: it took the script for an argument
        return "not a Python interpreter (it took the probe script for a file name)"
    return said if len(said) <= 200 else said[:200] + "..."


def _probe_identity(exe: str) -> list[Any] | None:
    """What the probe's answer depends on, as far as a stat can see: the interpreter path, the link and the
    file it points to (a reinstall or upgrade rewrites it), the pyvenv.cfg files site.venv() reads, the kernel
    (the platform_release marker), what picks the user's site-packages, and the probe itself. None when the
    interpreter cannot be stat'ed, or one of these files changed too recently for its stat to vouch for it
    (`stamps.settled`)."""
    exe_dir = os.path.dirname(os.path.abspath(exe))
    kernel = list(os.uname()) if hasattr(os, "uname") else []
    stats: list[Any] = [os.path.abspath(exe), zlib.crc32(_PROBE.encode()), kernel, stamps.user_site_inputs()]
    for path, follow in ((exe, False), (exe, True), (os.path.join(exe_dir, "pyvenv.cfg"), True),
                         (os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg"), True)):
        try:
            st = stamps.stat(path, follow_symlinks=follow)
        except OSError:
            if path == exe:
                return None
            stats.append(None)
            continue
        if not stamps.settled(st):
            return None
        stats.append([st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns])
    return stats


@dataclass
class InstalledDistribution:
    name: str  # as written in METADATA
    version: str
    site_dir: str
    dist_info: str
    requires: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # RECORD paths of shared objects, relative to site_dir
    top_levels: list[str] = field(default_factory=list)  # first components of the RECORD's paths
    recorded: bool = True  # False: no RECORD at all (a system package manager's install), so it owns no files
    # Top-level names whose whole tree it owns: an egg-info that lists no files but names its packages
    # (Debian's python3-numpy), so that what is found there is attributed to it.
    claims: list[str] = field(default_factory=list)
    metadata: str = ""  # the file its name, version and requirements were read from (METADATA, PKG-INFO)

    key: str = field(init=False)  # canonical name, computed once: it is looked up per binary

    def __post_init__(self) -> None:
        self.key = canonical_name(self.name)

    def shared_objects(self) -> list[str]:
        return self.shared


def _read_metadata(path: str) -> tuple[str, str, list[str]]:
    """Name, Version and Requires-Dist from a METADATA file, reading only its header block."""
    name = version = ""
    requires: list[str] = []
    with open(open_regular(path), encoding="utf-8", errors="replace") as fh:
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


def _read_record(path: str, memo: Memo, egg_info: str | None = None) -> tuple[list[str], list[str]]:
    """The shared objects a RECORD lists (paths may contain `..`) and the top-level names of all it lists;
    remembered by the RECORD's size and mtime. Raises `_Unusable` for a RECORD that is missing or damaged
    (the wheel spec makes it UTF-8 CSV listing at least itself); that answer is not remembered.

    With `egg_info` (its directory name), `path` is an egg-info's `installed-files.txt` instead: one path a
    line, relative to that directory."""
    st = _stat(path)
    stamp = [st.st_size, st.st_mtime_ns]
    known = memo.get("records", path, stamp)
    if isinstance(known, list) and len(known) == 2 and all(isinstance(k, list) for k in known):
        return list(known[0]), list(known[1])
    try:
        with open(open_regular(path), "rb") as fh:
            text = fh.read().decode()
    except OSError as exc:
        raise _unusable(exc) from None
    except UnicodeDecodeError:
        raise _Unusable("is not UTF-8 text") from None
    if not text or text.isspace():  # not strip(): a copy of torch's 1.5 MB RECORD
        raise _Unusable("is empty")
    if egg_info is not None:
        paths = [os.path.normpath(os.path.join(egg_info, line.strip())).replace(os.sep, "/")
                 for line in text.splitlines() if line.strip()]
        shared = [p for p in paths if is_shared_object_name(p)]
        tops = sorted({p.partition("/")[0] for p in paths} - {"", "..", "."})
    else:
        try:
            shared = [row[0] for row in csv.reader(_lines_naming_a_library(text))
                      if row and is_shared_object_name(row[0])]
            tops = _top_levels(text)
        except csv.Error as exc:
            raise _Unusable(f"is not CSV ({exc})") from None
    memo.put("records", path, stamp, [shared, tops], st)
    return shared, tops


def _top_levels(text: str) -> list[str]:
    """The first path component of every entry of a RECORD: the site-packages entries an installer made."""
    tops = {line.partition(",")[0].partition("/")[0] for line in text.split("\n") if not line.startswith('"')}
    if '"' in text:  # csv quoting: a path holding a comma or a quote
        quoted = csv.reader(line for line in text.splitlines() if line.startswith('"'))
        tops.update(row[0].partition("/")[0] for row in quoted if row)
    tops.difference_update(("", "..", "."))
    return sorted(tops)


_LIBRARY_HINT = re.compile("|".join(re.escape(suffix) for suffix in SHARED_OBJECT_SUFFIXES), re.IGNORECASE)


def _lines_naming_a_library(text: str) -> list[str]:
    """The lines of a RECORD that may name a shared object, in order: torch's RECORD has 15,000 lines and a
    few hundred libraries, and parsing only those is three times faster. Every shared object's name holds
    one of the suffixes in some case; one search for all of them is three times faster than a `str.find`
    pass for each."""
    starts = {text.rfind("\n", 0, hint.start()) + 1 for hint in _LIBRARY_HINT.finditer(text)}
    lines = []
    for start in sorted(starts):
        end = text.find("\n", start)
        lines.append(text[start : end if end >= 0 else len(text)].rstrip("\r"))
    return lines


class _Unusable(Exception):
    """A METADATA or RECORD that cannot be used; the message ("is missing", "has no Name") says why."""


class _Missing(_Unusable):
    """Absent: for a RECORD, not damage (PEP 627 makes it optional; system package managers leave it out)."""


def _unusable(exc: OSError) -> _Unusable:
    if isinstance(exc, FileNotFoundError):
        return _Missing("is missing")
    return _Unusable(f"cannot be read ({exc.strerror or exc})")


def _stat(path: str) -> os.stat_result:
    try:
        return stamps.stat(path)
    except OSError as exc:
        raise _unusable(exc) from None


def _dist_info(info: str, path: str, memo: Memo) -> list[Any]:
    """[name, version, requires] of a dist-info (or egg-info) directory from its METADATA (PKG-INFO) at `path`,
    remembered by that file's identity: installers write a new one for every install. Raises `_Unusable`
    without a name and version."""
    st = _stat(path)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    value = memo.get("metadata", info, stamp)
    if not (isinstance(value, list) and len(value) == 3):
        try:
            value = list(_read_metadata(path))
        except OSError as exc:
            raise _unusable(exc) from None
        memo.put("metadata", info, stamp, value, st)
    for field_name, have in (("Name", value[0]), ("Version", value[1])):
        if not have:
            raise _Unusable(f"has no {field_name}")
    return list(value)


_AS_UNOWNED = "its shared objects are judged as unowned"
_KINDS = (".dist-info", ".egg-info")


def iter_distributions(
    env: TargetEnvironment, memo: Memo | None = None, problems: list[str] | None = None,
    hidden: list[InstalledDistribution] | None = None,
) -> Iterator[InstalledDistribution]:
    """Every distribution installed in the environment's site-packages: `*.dist-info`, and `*.egg-info` (a
    `setup.py install`, Debian's packages), in the order Python finds them; the first of a name wins.

    `hidden` receives the ones another of the same name hides, so their files are neither judged nor taken
    for unowned: a base environment's under a system-site venv's, or a dist-info left beside the real one by
    an interrupted install (which of the two the files on disk belong to is told by RECORD's hashes, and
    `problems` says so). A distribution whose METADATA or RECORD cannot be used adds one line to `problems`:
    without it, its shared objects would show as unowned with nothing saying why. One without a usable
    METADATA is skipped (nothing names it); one without a usable RECORD owns no files, and one without any
    is marked `recorded=False`."""
    memo = memo or Memo(None)
    problems = [] if problems is None else problems
    hidden = [] if hidden is None else hidden
    seen: set[str] = set()
    for site in env.site_packages:
        try:
            stamps.stat(site)  # its mtime changes when a dist-info comes or goes
            entries = sorted(e for e in os.listdir(site) if e.endswith(_KINDS))
        except OSError:
            continue
        named = [canonical_name(_named(e)) for e in entries]
        twice = {n for n, count in Counter(named).items() if count > 1}
        contested: dict[str, list[InstalledDistribution]] = {}
        for entry, name in zip(entries, named, strict=True):
            found = _distribution(site, entry, memo, problems)
            if found is None:
                continue
            if name in twice:
                contested.setdefault(found.key, []).append(found)
            elif found.key in seen:
                hidden.append(found)
            else:
                seen.add(found.key)
                yield found
        for group in contested.values():
            real = _the_installed_one(site, group, problems)
            hidden.extend(d for d in group if d is not real or d.key in seen)
            if real.key not in seen:
                seen.add(real.key)
                yield real


def _named(entry: str) -> str:
    """The project a `name-version.dist-info` or `name-version[-pyX.Y].egg-info` directory names."""
    stem = entry.rsplit(".", 1)[0]
    return stem.rsplit("-", 1)[0] if entry.endswith(".dist-info") else stem.split("-", 1)[0]


def _distribution(site: str, entry: str, memo: Memo, problems: list[str]) -> InstalledDistribution | None:
    info = os.path.join(site, entry)
    egg = entry.endswith(".egg-info")
    folder = not egg or stamps.isdir(info)  # an egg-info may be a single file: its PKG-INFO
    meta = os.path.join(info, "PKG-INFO" if egg else "METADATA") if folder else info
    try:
        name, version, requires = _dist_info(info, meta, memo)
    except _Unusable as exc:
        problems.append(f"{info}: {'PKG-INFO' if egg else 'METADATA'} {exc}: not read as a distribution, "
                        f"{_AS_UNOWNED}")
        return None
    if egg and not requires and folder:
        requires = _egg_requires(os.path.join(info, "requires.txt"))
    listing = "RECORD" if not egg else "installed-files.txt" if folder else None
    shared: list[str] = []
    tops: list[str] = []
    claims: list[str] = []
    recorded = listing is not None
    try:
        if listing is not None:
            shared, tops = _read_record(os.path.join(info, listing), memo, egg_info=entry if egg else None)
    except _Unusable as exc:
        if isinstance(exc, _Missing):
            recorded = False
            claims = _egg_top_levels(info) if egg else []
        else:
            problems.append(f"{info}: {listing} {exc}: {_AS_UNOWNED}")
    return InstalledDistribution(name=name, version=version, site_dir=site, dist_info=info, requires=requires,
                                 shared=shared, top_levels=tops, recorded=recorded, claims=claims, metadata=meta)


def _the_installed_one(site: str, group: list[InstalledDistribution], problems: list[str]) -> InstalledDistribution:
    """Of two or more installations of one project in one directory, the one whose RECORD's hashes the files
    on disk match: the others are left over from an interrupted install or uninstall."""
    scores = [_files_matching(site, d) for d in group]
    best = max(scores)
    real = group[scores.index(best)]
    names = ", ".join(os.path.basename(d.dist_info) for d in group)
    if best > 0 and scores.count(best) == 1:
        verdict = (f"the files on disk are {real.version}'s; the others are left over from an interrupted install "
                   "or uninstall, and installers and `pip check` may read them instead: remove them")
    else:
        verdict = (f"which one the files on disk belong to cannot be told; judged as {real.version}: reinstall "
                   f"{real.name}")
    problems.append(f"{real.name}: {len(group)} installations in {site} ({names}): {verdict}")
    return real


def _files_matching(site: str, dist: InstalledDistribution, most: int = 8) -> int:
    """How many of a few small files a RECORD lists with a hash have that hash on disk (0 for an egg-info)."""
    import base64
    import hashlib

    try:
        with open(open_regular(os.path.join(dist.dist_info, "RECORD")), encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.reader(fh) if len(r) >= 3 and r[1].startswith("sha256=") and r[2].isdigit()]
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    own = os.path.basename(dist.dist_info) + "/"
    rows = sorted((r for r in rows if not r[0].startswith(own) and int(r[2]) > 0), key=lambda r: int(r[2]))[:most]
    matching = 0
    for path, digest, _ in rows:
        try:
            with open(open_regular(record_path(site, path)), "rb") as fh:
                found = base64.urlsafe_b64encode(hashlib.sha256(fh.read()).digest()).rstrip(b"=").decode()
        except OSError:
            continue
        matching += digest == f"sha256={found}"
    return matching


def _egg_requires(path: str) -> list[str]:
    """`requires.txt` as Requires-Dist lines: `[extra]` and `[extra:marker]` sections become markers."""
    out: list[str] = []
    section = ""
    for line in _text_lines(path):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        extra, _, marker = section.partition(":")
        conditions = ([f"({marker})"] if marker else []) + ([f'extra == "{extra}"'] if extra else [])
        out.append(f"{line}; {' and '.join(conditions)}" if conditions else line)
    return out


def _egg_top_levels(info: str) -> list[str]:
    return [n for n in _text_lines(os.path.join(info, "top_level.txt")) if n and "/" not in n and n not in (".", "..")]


@functools.lru_cache(maxsize=8)
def _longest_first(suffixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(suffixes, key=len, reverse=True))


def module_name(relpath: str, ext_suffixes: tuple[str, ...]) -> str | None:
    """Dotted import name of an extension module at `relpath` (relative to site-packages), else None."""
    if relpath.startswith(("..", "/")):
        return None
    for suffix in _longest_first(ext_suffixes):
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
    env: TargetEnvironment, dists: list[InstalledDistribution], owned: set[str], memo: Memo | None = None,
    thorough: bool = False, hidden: list[InstalledDistribution] | None = None,
) -> list[tuple[str, str]]:
    """(site_dir, relpath) of shared objects under site-packages that no RECORD lists.

    Looked for where something other than an installer may have put one: through every tree of site-packages
    that no RECORD names (an egg-info or `setup.py` install, a hand copy), at the top of every installed
    package, and in every directory where a RECORD puts a shared object (a library rebuilt or added beside
    the installed ones). The directories installers made for nothing but headers, data, tests and Python
    files (most of a large environment) are not listed unless `thorough`. The trees of `hidden` distributions
    (see `iter_distributions`) are theirs, not unowned, and are not walked. Each listing is remembered in `memo`
    with the directory's mtime, so an unchanged directory costs one stat (see Memo)."""
    memo = memo or Memo(None)
    found: list[tuple[str, str]] = []
    for site in env.site_packages:
        site = site.rstrip(os.sep) or os.sep
        made = {top for d in dists if d.site_dir.rstrip(os.sep) == site for top in d.top_levels}
        made.update(top for d in hidden or () if d.site_dir.rstrip(os.sep) == site
                    for top in (*d.top_levels, *d.claims))
        # site-packages is listed first, then every unclaimed tree is walked (and the top of every installed
        # package listed), then the directories beside installed libraries are listed
        prefix = site if site.endswith(os.sep) else site + os.sep
        beside = dict.fromkeys(os.path.dirname(path) for path in sorted(owned) if path.startswith(prefix))
        listed: set[str] = set()
        followed: set[str] = set()
        for _, shared, below in _tree([site], memo, followed, listed, walk=False):
            found += _unlisted(site, site, shared, owned)
            for top in below:
                walk = thorough or os.path.basename(top) not in made
                found += [f for folder, names, _ in _tree([top], memo, followed, listed, walk)
                          for f in _unlisted(site, folder, names, owned)]
        found += [f for folder, names, _ in _tree(beside, memo, followed, listed, walk=False)
                  for f in _unlisted(site, folder, names, owned)]
    return found


def _tree(tops: Iterable[str], memo: Memo, followed: set[str], seen: set[str], walk: bool = True,
          ) -> Iterator[tuple[str, list[str], list[str]]]:
    """(directory, its shared objects, its subdirectories) for each of `tops` and, when `walk`, every directory
    below them; each directory once (`seen`), a linked one as `_descend` allows."""
    pending = list(tops)[::-1]
    while pending:
        folder = pending.pop()
        if folder in seen:
            continue
        seen.add(folder)
        listing = _listing(folder, memo)
        if listing is None:
            continue
        below = _descend(folder, listing[0], listing[2], followed)
        yield folder, listing[1], below
        if walk:
            pending += below[::-1]


def _unlisted(base: str, folder: str, shared: list[str], owned: set[str]) -> list[tuple[str, str]]:
    """(base, path relative to base) of the shared objects in `folder` that no RECORD lists."""
    here = folder if folder.endswith(os.sep) else folder + os.sep
    return [(base, os.path.relpath(here + name, base).replace(os.sep, "/")) for name in shared
            if here + name not in owned]


_FINDER = re.compile(r"^\s*import\s+(__editable___\w+_finder)\b")
_MAPPING = re.compile(r"^MAPPING\s*(?::[^=\n]*)?=\s*(\{.*\})\s*$", re.MULTILINE)


def path_entries(env: TargetEnvironment, dists: list[InstalledDistribution]) -> list[tuple[str, str, str | None]]:
    """(directory, package, owner's key) for what the `.pth` files of site-packages put on the import path,
    read, never run: a directory line (a src-layout editable install, a hand-written `extra.pth`; package "":
    every package in it) and each package directory of a setuptools editable finder's MAPPING (package: its
    name). The owner is the distribution whose RECORD lists the `.pth` file."""
    owners = {(d.site_dir.rstrip(os.sep), top): d.key for d in dists for top in d.top_levels if top.endswith(".pth")}
    found: list[tuple[str, str, str | None]] = []
    for site in env.site_packages:
        site = site.rstrip(os.sep) or os.sep
        try:
            names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))  # site-packages' mtime is noted
        except OSError:
            continue
        for name in names:
            owner = owners.get((site, name))
            for line in _text_lines(os.path.join(site, name)):
                finder = _FINDER.match(line)
                if finder:
                    found += [(os.path.dirname(d), os.path.basename(d), owner)
                              for d in _finder_mapping(os.path.join(site, finder.group(1) + ".py"))]
                elif line and not line.startswith(("#", "import ", "import\t")):
                    folder = os.path.normpath(os.path.join(site, line))
                    if folder != site and stamps.isdir(folder):
                        found.append((folder, "", owner))
    return found


def _text_lines(path: str) -> list[str]:
    """The stripped lines of a small text file, [] when it cannot be read; stat'ed first, so that a kept answer
    that rests on it is not given again once it changes."""
    try:
        stamps.stat(path)  # a kept answer rests on it
        with open(open_regular(path), encoding="utf-8", errors="replace") as fh:
            return [line.strip() for line in fh]
    except OSError:
        return []


def _finder_mapping(path: str) -> list[str]:
    """The package directories of setuptools' `__editable___*_finder.py`, from its `MAPPING = {...}` literal."""
    import ast

    match = _MAPPING.search("\n".join(_text_lines(path)))
    try:
        mapping = ast.literal_eval(match.group(1)) if match else {}
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if not isinstance(mapping, dict):
        return []
    return [os.path.normpath(v) for v in mapping.values() if isinstance(v, str) and stamps.isdir(v)]


def path_entry_shared_objects(
    entries: list[tuple[str, str, str | None]], owned: set[str], memo: Memo,
) -> list[tuple[str, str, str | None]]:
    """(directory, relpath, owner's key) of the shared objects in the packages a `path_entries` entry puts on
    the path: a package directory whole, or, for a directory line, the shared objects at its top and every
    regular package (a directory with `__init__.py`) below it, so that a project checkout's build trees,
    virtual environments and version control are not taken for importable code."""
    found: list[tuple[str, str, str | None]] = []
    walked: set[str] = set()
    followed: set[str] = set()
    for root, package, owner in entries:
        if package:
            packages = [os.path.join(root, package)]
        else:  # the directory's own shared objects, then its regular packages
            packages = []
            for _, shared, below in _tree([root], memo, followed, walked, walk=False):
                found += [(root, rel, owner) for _, rel in _unlisted(root, root, shared, owned)]
                packages = [d for d in below if stamps.exists(os.path.join(d, "__init__.py"))]
        found += [(root, rel, owner) for folder, names, _ in _tree(packages, memo, followed, walked)
                  for _, rel in _unlisted(root, folder, names, owned)]
    return found


def record_path(site_dir: str, relpath: str) -> str:
    """The normalised full path of a RECORD entry (which may hold `..`), as a directory walk would spell it."""
    if os.sep == "/" and "./" not in relpath and "//" not in relpath and not relpath.startswith("/"):
        return f"{site_dir.rstrip('/')}/{relpath}"  # already normal: skip normpath's cost
    return os.path.normpath(os.path.join(site_dir, relpath))


Listing = tuple[list[str], list[str], list[str]]  # subdirectories, shared objects, the subdirectories that are links


def _listing(folder: str, memo: Memo) -> Listing | None:
    try:
        st = stamps.stat(folder)
    except OSError:
        return None
    known = memo.get("dirs", folder, st.st_mtime_ns)
    if isinstance(known, list) and len(known) == 3:
        return known[0], known[1], known[2]
    subdirs: list[str] = []
    links: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()  # a link to a directory is one: Python imports through it
                    link = is_dir and entry.is_symlink()
                except OSError:
                    continue
                if is_dir:
                    if not entry.name.endswith(_SKIP_DIRS):
                        subdirs.append(entry.name)
                        if link:
                            links.append(entry.name)
                else:
                    files.append(entry.name)
    except OSError:
        return None
    # Most directories hold no library at all: one test of all their names instead of one per name.
    names = "\n".join(files).lower()
    shared = [n for n in files if is_shared_object_name(n)] if any(h in names for h in SHARED_OBJECT_SUFFIXES) else []
    memo.put("dirs", folder, st.st_mtime_ns, [subdirs, shared, links], st)
    return subdirs, shared, links


def _descend(folder: str, names: list[str], links: list[str], followed: set[str]) -> list[str]:
    """The subdirectories of `folder` to walk: a linked one only once, and never one that leads back above
    itself (a loop)."""
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    if not links:
        return [prefix + n for n in names]
    linked = set(links)
    out = []
    here = os.path.realpath(folder) + os.sep
    for name in names:
        path = prefix + name
        if name in linked:
            real = os.path.realpath(path)
            if here.startswith(real + os.sep) or real in followed:
                continue
            followed.add(real)
        out.append(path)
    return out


class Memo:
    """What reading an environment found last time, each entry stamped with what would change if it changed.

    Tables: "dirs" (a directory's subdirectories and shared objects, stamped with its mtime: adding, removing
    or renaming an entry changes it), "records" (a RECORD's shared objects and top-level names, by size and
    mtime), "metadata" (a dist-info's METADATA fields, by size, mtime and inode) and "derived" (results
    computed from what was read, such as the probe's answer or the declared-requirement check, stamped with
    their inputs). An unchanged environment then costs a stat per directory listed and per dist-info file,
    not a read of every file. Kept as one `marshal` file per environment (private to this interpreter, and
    5x faster to load than JSON); a failure to read or write only costs speed. Entries not used by a run are
    dropped when it saves."""

    FORMAT = 5  # 4: records hold [shared, top-levels]; 5: dirs hold [subdirs, shared, linked subdirs]
    TABLES = ("dirs", "records", "metadata", "derived")

    def __init__(self, path: str | None) -> None:
        self.path = path
        data = self._load()
        self.old: dict[str, dict[str, list[Any]]] = {
            t: table if isinstance(table := data.get(t), dict) else {} for t in self.TABLES
        }
        self.new: dict[str, dict[str, list[Any]]] = {t: {} for t in self.TABLES}

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as fh:
                data = marshal.loads(fh.read())  # load(fh) reads object by object: 5x slower
        except (OSError, ValueError, EOFError, TypeError):
            return {}
        return data if isinstance(data, dict) and data.get("format") == self.FORMAT else {}

    def get(self, table: str, key: str, stamp: Any) -> Any:
        """The value remembered for `key` if it was stored with an equal `stamp`, else None. Callers check
        the value's shape too: the file is ours, but a damaged one must only cost speed."""
        known = self.old[table].get(key)
        if isinstance(known, list) and len(known) == 2 and known[0] == stamp:
            self.new[table][key] = known
            return known[1]
        return None

    def put(self, table: str, key: str, stamp: Any, value: Any, st: os.stat_result | None = None) -> None:
        """Remember `value` (marshal-able: str, int, list, dict, None) until `stamp` changes; not at all when
        `st`, the stat it was read under, is too recent to vouch for it (`stamps.settled`)."""
        if st is None or stamps.settled(st):
            self.new[table][key] = [stamp, value]

    def save(self) -> None:
        if self.path is None or self.new == self.old:
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as fh:
                marshal.dump({"format": self.FORMAT, **self.new}, fh)
            os.replace(tmp, self.path)
        except (OSError, ValueError):
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
