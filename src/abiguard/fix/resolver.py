"""Ask a real resolver what an install would change, over the whole environment.

Resolvers ignore reverse dependencies unless every installed distribution takes part in the resolution
(shared/research/installers-and-index.md), so every request names all installed distributions plus the
new requirements. uv is preferred; pip (`--dry-run --report`) is the fallback.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from abiguard.model import TargetEnvironment, canonical_name


class ResolveError(Exception):
    """The resolver could not produce a plan; the message is the resolver's own explanation, shortened."""


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None  # None: newly installed
    new: str | None  # None: removed, or built at install and not yet known (uv says no version then)
    built: bool = False  # built from source at install (an sdist, a directory, an editable, a VCS URL)
    wheel: str | None = None  # a local wheel file it comes from: read from disk, not from the index

    @property
    def kind(self) -> str:
        if self.old is None:
            return "install"
        if self.new is None:
            return "rebuild" if self.built else "remove"
        from packaging.version import Version

        return "upgrade" if Version(self.new) > Version(self.old) else "downgrade"

    def to_json(self) -> dict[str, str | bool | None]:
        return {"name": self.name, "from": self.old, "to": self.new, "kind": self.kind, "built": self.built}


@dataclass(frozen=True)
class Resolution:
    installer: str
    changes: tuple[Change, ...]
    command: tuple[str, ...]


def find_uv() -> str | None:
    """uv next to our interpreter, on PATH, or from the `uv` wheel we depend on."""
    here = os.path.join(os.path.dirname(sys.executable), "uv" + (".exe" if os.name == "nt" else ""))
    if os.path.exists(here):
        return here
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


def choose_installer(requested: str | None, env: TargetEnvironment | None = None) -> str:
    """uv when it is there and sees everything installed (`uv_blind_to`), else pip."""
    if requested == "pip":
        return "pip"
    blind = uv_blind_to(env) if env is not None else []
    if blind and requested == "uv":
        raise ResolveError(f"uv does not see what is installed in {', '.join(blind)} and would install it all again "
                           "into the environment; use --installer pip")
    if not blind and find_uv() is not None:
        return "uv"
    if requested == "uv":
        raise ResolveError("uv was requested but is not available; install it or use --installer pip")
    return "pip"


def uv_blind_to(env: TargetEnvironment) -> list[str]:
    """The site-packages directories of `env` outside its prefix: a system-site venv's base, the user's.

    uv counts as installed only what lies under the environment's prefix: the distributions there would all
    be installed again into the environment (a hundred changes for a one-line fix). pip sees them."""
    prefix = os.path.realpath(env.prefix)
    return [site for site in env.site_packages if os.path.commonpath([prefix, os.path.realpath(site)]) != prefix]


def resolve(
    env: TargetEnvironment,
    installed: dict[str, str],
    requirements: Sequence[str],
    *,
    constraints: Sequence[str] = (),
    installer: str = "uv",
    timeout: float = 300.0,
    index_url: str | None = None,
    whole_environment: bool = True,
) -> Resolution:
    """The changes installing `requirements` into the environment would make (nothing is installed).

    `installed` maps canonical names to installed versions; with `whole_environment`, every one of them takes
    part in the resolution, as a plan must; without, it is the dry run of exactly `install requirements`, the
    command a guarded install then runs (which may break what the resolution leaves out, and that is judged).
    `index_url` replaces the installer's configured index, as `--index-url` does.
    """
    with tempfile.TemporaryDirectory(prefix="abiguard-resolve-") as tmp:
        extra = ["--index-url", index_url] if index_url else []
        if whole_environment and installed:  # an empty file makes uv warn about it before the real error
            names = os.path.join(tmp, "installed.txt")
            with open(names, "w") as fh:
                fh.write("\n".join(sorted(installed)) + "\n")
            extra += ["-r", names]
        if constraints:  # an empty constraints file makes uv print a warning into the resolver's message
            cons = os.path.join(tmp, "constraints.txt")
            with open(cons, "w") as fh:
                fh.write("\n".join(constraints) + "\n")
            extra += ["-c", cons]
        if installer == "uv":
            return _uv(env, requirements, extra, timeout)
        return _pip(env, installed, requirements, extra, tmp, timeout)


def _run(cmd: list[str], timeout: float, installer: str) -> subprocess.CompletedProcess[str]:
    """`cmd` run with the indexes abiguard reads named to `installer` (`installer_environ`): the changes it
    reports are then made of the wheels that are judged."""
    from abiguard.sources.index import installer_environ

    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env=installer_environ(installer))
    except subprocess.TimeoutExpired:
        raise ResolveError(f"{os.path.basename(cmd[0])} did not finish resolving within {timeout:.0f} s") from None
    except OSError as exc:
        raise ResolveError(f"cannot run {cmd[0]}: {exc}") from None


def _failure(proc: subprocess.CompletedProcess[str]) -> ResolveError:
    lines = [ln.rstrip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Using Python")]
    return ResolveError("\n".join(lines[-12:]) or f"resolver exited with {proc.returncode}")


def _uv(env: TargetEnvironment, requirements: Sequence[str], extra: list[str], timeout: float) -> Resolution:
    uv = find_uv()
    if uv is None:
        raise ResolveError("uv is not available")
    cmd = [uv, "pip", "install", "--python", env.executable, "--dry-run", "--output-format", "json",
           *extra, *requirements]
    proc = _run(cmd, timeout, "uv")
    if proc.returncode != 0:
        raise _failure(proc)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise ResolveError("uv printed no JSON plan (is this uv version supported? abiguard needs uv >= 0.9)") from None
    removed: dict[str, str] = {}
    added: dict[str, str | None] = {}
    for item in data.get("changes", []):
        key = canonical_name(item["name"])
        if item.get("action") == "uninstalled" and item.get("version"):
            removed[key] = item["version"]
        elif item.get("action") in ("installed", "reinstalled"):
            added[key] = item.get("version")  # none for a directory or an editable: built at install
    built = {name for name, version in added.items() if version is None}
    return Resolution("uv", _diff(removed, added, built, _local_wheels(requirements)), tuple(cmd))


def _pip(env: TargetEnvironment, installed: dict[str, str], requirements: Sequence[str], extra: list[str],
         tmp: str, timeout: float) -> Resolution:
    report = os.path.join(tmp, "report.json")
    base = pip_command(env)
    if base is None:
        raise ResolveError(f"pip is neither installed in {env.prefix} nor importable by abiguard; use --installer uv")
    cmd = [*base, "install", "--dry-run", "--quiet", "--disable-pip-version-check", "--report", report,
           *extra, *requirements]
    proc = _run(cmd, timeout, "pip")
    if proc.returncode != 0:
        raise _failure(proc)
    with open(report) as fh:
        data = json.load(fh)
    added: dict[str, str | None] = {}
    built: set[str] = set()
    wheels: dict[str, str] = {}
    for item in data.get("install", []):
        key = canonical_name(item["metadata"]["name"])
        added[key] = item["metadata"]["version"]
        url = str(item.get("download_info", {}).get("url", ""))
        if not urllib.parse.urlsplit(url).path.endswith(".whl"):  # an sdist, a directory, a VCS checkout
            built.add(key)
        elif url.startswith("file:"):
            wheels[key] = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    removed = {name: installed[name] for name in added if name in installed}
    return Resolution("pip", _diff(removed, added, built, wheels), tuple(cmd))


def pip_command(env: TargetEnvironment) -> list[str] | None:
    """The target's own pip when it has one; else ours, pointed at the target with `--python` (uv makes venvs
    without pip); None when neither exists."""
    if _imports_pip(env.executable):
        return [env.executable, "-m", "pip"]
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "--python", env.executable]
    return None


@functools.lru_cache(maxsize=16)
def _imports_pip(python: str) -> bool:
    """Asked once per command and interpreter: planning would otherwise start the target for every plan."""
    return subprocess.run([python, "-I", "-c", "import pip"], capture_output=True).returncode == 0


def _diff(removed: dict[str, str], added: dict[str, str | None], built: set[str],
          wheels: dict[str, str]) -> tuple[Change, ...]:
    changes = []
    for name in sorted(set(removed) | set(added)):
        old, new = removed.get(name), added.get(name)
        if old != new or name in built:
            changes.append(Change(name, old, new, name in built, wheels.get(name)))
    return tuple(changes)


def _local_wheels(requirements: Sequence[str]) -> dict[str, str]:
    """Wheel files the installer arguments name (`./x.whl`, `name @ file:///x.whl`), by canonical name: uv's
    plan says which version it installs, not from where."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    found: dict[str, str] = {}
    for arg in requirements:
        where = arg.partition(" @ ")[2].strip() or arg
        if where.startswith("file:"):
            where = urllib.request.url2pathname(urllib.parse.urlsplit(where).path)
        if not where.lower().endswith(".whl") or not os.path.isfile(where):
            continue
        try:
            name = parse_wheel_filename(os.path.basename(where))[0]
        except InvalidWheelFilename:
            continue
        found[canonical_name(name)] = os.path.abspath(where)
    return found


def install_command(
    env: TargetEnvironment, installer: str, pins: Sequence[str], index_url: str | None = None
) -> list[str]:
    """The command a user runs to make exactly these changes (`fix --apply` runs the same arguments), spelled
    so that it runs as printed.

    A password in `index_url` is masked: the command is printed, and credentials never are."""
    from abiguard.sources.remote import redact

    index = ["--index-url", redact(index_url)] if index_url else []
    if installer == "uv":  # by name when the shell finds it so, else where abiguard found it
        uv = "uv" if shutil.which("uv") else (find_uv() or "uv")
        return [uv, "pip", "install", "--python", env.executable, *index, *pins]
    return [*(pip_command(env) or [env.executable, "-m", "pip"]), "install", *index, *pins]


def available(installer: str, env: TargetEnvironment) -> bool:
    """Whether `installer` can change `env` from here: a command printed for one that cannot would not run."""
    return find_uv() is not None and not uv_blind_to(env) if installer == "uv" else pip_command(env) is not None
