"""Lockfiles and pinned requirements: what a project will install, read without installing anything.

`read_lockfile` turns a PEP 751 `pylock.toml`, a `uv.lock` or a pinned requirements file into one shape,
`LockfileContents`: exact `name==version` entries with the wheel URLs and hashes the file names (so the
wheels can be inspected remotely by range reads) and the marker under which each entry is installed.
`select_entries` then keeps the entries a target platform would install, which is what `lock-check
--python-version X.Y --platform TAG` judges.

Problems in single items (an unpinned requirement, a package without a version) become one-line `errors`
and reading goes on, because one bad line should not hide the verdict on every other pin; a file that
cannot be parsed at all raises `LockfileError`. What is built at install rather than downloaded (the project
itself, a local directory, git, an editable) is kept with its `origin`, or, for a requirements line that
names no project, becomes a one-line `note`: it is not checked, but it is not an error either.
"""

from __future__ import annotations

import codecs
import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from abiguard.model import canonical_name
from abiguard.sources.index import platform_system, wheel_platform
from abiguard.sources.remote import redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # the tomli dependency is declared for Python < 3.11 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

LockfileKind = Literal["pylock", "uv.lock", "requirements"]

SUPPORTED_KINDS = (
    "pylock.toml or pylock.NAME.toml (PEP 751), uv.lock, "
    "or a pinned requirements file (*.txt, *.in, or a name containing 'requirements' or 'constraints')"
)


BUILT_FROM_SOURCE = "built from source at install, not checked"


def built_note(name: str, version: str, origin: str) -> str:
    """The note for an entry built at install: `package demo 0.1.0 (editable: .): built from source ...`."""
    kind, _, place = origin.partition(": ")
    return f"{f'package {name} {version}'.rstrip()} ({kind}: {redact(place)}): {BUILT_FROM_SOURCE}"


class LockfileError(Exception):
    """The file cannot be read as a lockfile at all; the message is one line for the user."""


@dataclass(frozen=True)
class LockedWheel:
    """One wheel a lockfile names: enough to fetch it by range reads and to check its bytes."""

    url: str  # https URL, or a file: URI for a wheel given by local path
    filename: str
    sha256: str | None
    size: int | None = None
    upload_time: datetime | None = None  # timezone-aware


@dataclass(frozen=True)
class LockedPackage:
    """One pinned distribution.

    `marker` is the condition under which it is installed (None: always). For uv.lock it is derived from
    the dependency graph, since uv records markers on edges rather than on packages.
    """

    name: str  # as written in the file
    version: str  # "" only for an entry built from source (`origin`) that the file gives no version
    marker: str | None = None
    wheels: list[LockedWheel] = field(default_factory=list)
    source: str | None = None  # the index URL it comes from, when the file says; may hold credentials
    hashes: list[str] = field(default_factory=list)  # "sha256:HEX" for every file the entry allows
    origin: str | None = None  # not from an index: "git: URL", "directory: PATH", "url: URL", ...
    sdist_url: str | None = None
    requires_python: str | None = None
    binary_only: bool = False  # `--only-binary`: an sdist is not built, so a release with no wheel fails to install


@dataclass(frozen=True)
class LockfileContents:
    path: Path
    kind: LockfileKind
    entries: list[LockedPackage]
    index_urls: list[str] = field(default_factory=list)  # --index-url / --extra-index-url; may hold credentials
    errors: list[str] = field(default_factory=list)  # "path:line: what is wrong" or "package X: ..."
    notes: list[str] = field(default_factory=list)  # lines not checked by nature (built from source at install)
    requires_python: str | None = None
    environments: list[str] = field(default_factory=list)  # markers the lock supports (PEP 751, uv)
    default_groups: list[str] = field(default_factory=list)  # PEP 751 dependency groups installed by default
    constraints: dict[str, str] = field(default_factory=dict)  # `==` pins of -c files, by canonical name
    find_links: list[str] = field(default_factory=list)  # `-f` directories, HTML files or URLs, in file order
    no_index: bool = False  # `--no-index`: only the find-links locations are looked in


def read_lockfile(path: Path) -> LockfileContents:
    """Detect the kind of `path` from its name and parse it."""
    kind = lockfile_kind(path)
    if kind == "requirements":
        return _RequirementsReader(path).read()
    data = _load_toml(path)
    if kind == "pylock":
        return _read_pylock(path, data)
    return _read_uv_lock(path, data)


def lockfile_kind(path: Path) -> LockfileKind:
    """The kind of lockfile a file name says; PEP 751 fixes pylock names, uv fixes `uv.lock`."""
    name = path.name
    lower = name.lower()
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml") and name.count(".") == 2):
        return "pylock"
    if name == "uv.lock" or lower.endswith(".py.lock"):  # `uv lock --script x.py` writes x.py.lock
        return "uv.lock"
    if lower.endswith((".txt", ".in")) or "requirements" in lower or "constraints" in lower:
        return "requirements"  # Rye's requirements.lock and requirements-dev.lock are in pip's format
    raise LockfileError(f"{path}: unsupported lockfile kind; abiguard reads {SUPPORTED_KINDS}; a file in pip's "
                        "format under another name can be copied to a name ending in .txt")


_TOML_NAME = re.compile(r"""^\s*name\s*=\s*["']([^"']+)["']""")
_REQUIREMENT_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[=~<>!;@ \t]|$)")


def entry_lines(path: Path) -> dict[str, int]:
    """The line of `path` where each project (canonical name) is first pinned: a package table's `name = ...`
    in TOML, a requirement line in pip's format (not in the files it includes). For pointing at an entry, as
    code-scanning annotations do; a file that cannot be read has none."""
    requirements = lockfile_kind(path) == "requirements"
    try:
        text = read_requirements_text(path) if requirements else path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, int] = {}
    if requirements:
        pairs = ((n, _REQUIREMENT_NAME.match(line)) for n, line in _logical_lines(text))
    else:
        pairs = ((n, _TOML_NAME.match(line)) for n, line in enumerate(text.splitlines(), start=1))
    for lineno, match in pairs:
        if match:
            found.setdefault(canonical_name(match.group(1)), lineno)
    return found


# -- selection for a target environment -------------------------------------------------------------------

MARKER_KEYS = frozenset({
    "implementation_name", "implementation_version", "os_name", "platform_machine", "platform_release",
    "platform_system", "platform_version", "python_full_version", "platform_python_implementation",
    "python_version", "sys_platform",
})


def select_entries(contents: LockfileContents, marker_env: Mapping[str, str], *, extras: Iterable[str] = (),
                   groups: Iterable[str] | None = None) -> list[LockedPackage]:
    """The entries a target environment would install.

    `extras` and `groups` feed PEP 751's `extras` and `dependency_groups` marker variables (groups default
    to the lock's `default-groups`); uv.lock entries already include every extra and group of the project.

    `marker_env` must hold every standard marker key (see `marker_environment`): packaging fills missing
    keys from the interpreter abiguard runs in, which would silently judge the wrong platform. Raises
    `LockfileError` when the lockfile cannot be installed on the target at all (its `requires-python` or
    `environments` exclude it). An entry whose marker cannot be evaluated is kept: checking one package
    too many is better than missing a conflict.
    """
    missing = sorted(MARKER_KEYS - marker_env.keys())
    if missing:
        raise ValueError(f"target marker environment lacks {', '.join(missing)}")
    python = marker_env["python_full_version"]
    if contents.requires_python:
        try:
            allowed = SpecifierSet(contents.requires_python).contains(python, prereleases=True)
        except InvalidSpecifier:
            allowed = True
        if not allowed:
            raise LockfileError(
                f"{contents.path}: the lockfile requires Python {contents.requires_python}; the target is {python}"
            )
    env: dict[str, str | frozenset[str]] = dict(marker_env)
    env.setdefault("extra", "")
    env["extras"] = frozenset(canonical_name(e) for e in extras)
    env["dependency_groups"] = frozenset(
        canonical_name(g) for g in (contents.default_groups if groups is None else groups)
    )
    if contents.environments and not any(_holds(m, env) for m in contents.environments):
        raise LockfileError(
            f"{contents.path}: none of the lockfile's environments matches the target "
            f"({' | '.join(contents.environments)})"
        )
    return [entry for entry in contents.entries if entry.marker is None or _holds(entry.marker, env)]


def _holds(marker: str, env: Mapping[str, str | frozenset[str]]) -> bool:
    try:
        return Marker(marker).evaluate(env)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return True


_MACHINE = (  # (words, linux, macOS, Windows); first match wins, so "x86_64" is tried before "x86"
    (("x86_64", "amd64", "x64"), "x86_64", "x86_64", "AMD64"),
    (("aarch64", "arm64", "universal2"), "aarch64", "arm64", "ARM64"),
    (("i686", "i386", "win32", "x86"), "i686", "i386", "x86"),
    (("ppc64le",), "ppc64le", "ppc64le", "ppc64le"),
    (("s390x",), "s390x", "s390x", "s390x"),
    (("armv7l",), "armv7l", "armv7l", "armv7l"),
)


def marker_environment(python_version: str, platform: str, implementation: str = "cpython") -> dict[str, str]:
    """A complete marker environment for a hypothetical target.

    `platform` is a wheel platform tag (`manylinux_2_28_x86_64`, `macosx_11_0_arm64`, `win_amd64`), the
    spelling wheels are chosen by; uv's `--python-platform` names (`aarch64-apple-darwin`, `linux`) are
    refused, since the wheel tags they stand for would be a guess. `platform_release` and `platform_version`
    are unknowable for a hypothetical target and left empty.
    """
    parts = python_version.split(".")
    if not (2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise ValueError(f"Python version {python_version!r} is not X.Y or X.Y.Z")
    full = ".".join(parts + ["0"] * (3 - len(parts)))
    system_names = platform_system(platform)
    if system_names is None:
        raise ValueError(f"platform {platform!r}: markers can be evaluated for linux, macos and windows only")
    sys_platform, system, os_name = system_names
    lower = wheel_platform(platform)  # normalized, as the wheel tags are computed from it
    machine = next((m for m in _MACHINE if any(w in lower for w in m[0])), None)
    if machine is None:
        raise ValueError(f"platform {platform!r} names no known machine (x86_64, aarch64/arm64, i686/x86, ...)")
    column = {"linux": 1, "darwin": 2, "win32": 3}[sys_platform]
    names = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalVM"}
    return {
        "implementation_name": implementation,
        "implementation_version": full,
        "os_name": os_name,
        "platform_machine": str(machine[column]),
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": full,
        "platform_python_implementation": names.get(implementation, implementation),
        "python_version": ".".join(parts[:2]),
        "sys_platform": sys_platform,
    }


# -- TOML helpers -----------------------------------------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"{path}: cannot read: {_one_line(exc)}") from exc
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(f"{path}: invalid TOML: {_one_line(exc)}") from exc
    return data


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> datetime | None:
    """TOML datetimes (pylock) and RFC 3339 strings (uv.lock) as aware datetimes."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def _tables(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _named_tables(path: Path, value: object, errors: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, table) for each package table; one error line for each table without a name."""
    for index, table in enumerate(_tables(value)):
        name = _text(table.get("name"))
        if name is None:
            errors.append(f"{path}: package #{index + 1} has no name")
        else:
            yield name, table


def _filename(url: str) -> str:
    name = url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]  # no urlsplit: 10k wheels in a big lock
    return unquote(name) if "%" in name else name


def _file_url(base: Path, value: str) -> str:
    path = Path(value)
    return (path if path.is_absolute() else (base / path)).resolve().as_uri()


def _version_of(table: dict[str, Any], origin: str | None, where: str, errors: list[str]) -> str | None:
    """The entry's version; "" for one built from source that has none (PEP 751 lets those omit it).

    None, with an error, when it is not a string or an index package has none: which wheel it means is unknown.
    """
    value = table.get("version")
    if isinstance(value, str) and value:
        return value
    if value not in (None, ""):
        errors.append(f"{where}: version {value!r} is not a string; not checked")
    elif origin is None:
        errors.append(f"{where}: no version; not checked")
    else:
        return ""
    return None


def _check_marker(marker: str | None, where: str, errors: list[str]) -> None:
    if marker is not None:
        try:
            Marker(marker)
        except InvalidMarker as exc:
            errors.append(f"{where}: invalid marker {marker!r}: {_one_line(exc)}")


# -- PEP 751 pylock.toml ----------------------------------------------------------------------------------


def _read_pylock(path: Path, data: dict[str, Any]) -> LockfileContents:
    version = data.get("lock-version")
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise LockfileError(f"{path}: lock-version {version!r} is not supported; abiguard reads PEP 751 version 1.x")
    errors: list[str] = []
    entries: list[LockedPackage] = []
    for name, pkg in _named_tables(path, data.get("packages"), errors):
        where = f"package {name}"
        marker = _text(pkg.get("marker"))
        _check_marker(marker, where, errors)
        wheels: list[LockedWheel] = []
        hashes: list[str] = []
        origin: str | None = None
        for wheel in _tables(pkg.get("wheels")):
            locked = _pylock_file(path, wheel, where, errors, hashes)
            if locked is not None:
                wheels.append(locked)
        sdist = pkg.get("sdist")
        sdist_url = None
        if isinstance(sdist, dict):
            sdist_file = _pylock_file(path, sdist, where, errors, hashes)
            sdist_url = sdist_file.url if sdist_file else None
        archive = pkg.get("archive")
        if isinstance(archive, dict):
            archive_file = _pylock_file(path, archive, where, errors, hashes)
            if archive_file is not None and archive_file.filename.endswith(".whl"):
                wheels.append(archive_file)
            elif archive_file is not None:
                origin = f"url: {archive_file.url}"
        vcs = pkg.get("vcs")
        if isinstance(vcs, dict):
            origin = f"vcs: {vcs.get('url') or vcs.get('path')}@{vcs.get('commit-id')}"
        directory = pkg.get("directory")
        if isinstance(directory, dict):
            origin = f"directory: {directory.get('path')}"
        pkg_version = _version_of(pkg, origin, where, errors)
        if pkg_version is None:
            continue
        entries.append(LockedPackage(
            name=name, version=pkg_version, marker=marker, wheels=wheels, source=_text(pkg.get("index")),
            hashes=hashes, origin=origin, sdist_url=sdist_url, requires_python=_text(pkg.get("requires-python")),
        ))
    environments = [m for m in data.get("environments") or [] if isinstance(m, str)]
    for marker in environments:
        _check_marker(marker, f"{path}: environments", errors)
    groups = [g for g in data.get("default-groups") or [] if isinstance(g, str)]
    return LockfileContents(path, "pylock", entries, errors=errors, requires_python=_text(data.get("requires-python")),
                            environments=environments, default_groups=groups)


def _pylock_file(path: Path, table: dict[str, Any], where: str, errors: list[str],
                 hashes: list[str]) -> LockedWheel | None:
    url = _text(table.get("url"))
    local = _text(table.get("path"))
    if url is None and local is not None:
        url = _file_url(path.parent, local)
    if url is None:
        errors.append(f"{where}: a file entry has neither url nor path")
        return None
    digests = table.get("hashes")
    digests = digests if isinstance(digests, dict) else {}
    hashes.extend(f"{algo}:{value}" for algo, value in digests.items() if isinstance(value, str))
    return LockedWheel(url=url, filename=_text(table.get("name")) or _filename(local or url),
                       sha256=_text(digests.get("sha256")), size=_int(table.get("size")),
                       upload_time=_time(table.get("upload-time")))


# -- uv.lock ----------------------------------------------------------------------------------------------

_MEMBER_SOURCES = ("virtual", "editable")
_MAX_TERMS = 32  # per package; beyond this its marker is dropped (installed always): over-checking is safe


@dataclass
class _UvPackage:
    table: dict[str, Any]
    name: str  # canonical
    version: str | None
    source: dict[str, Any]


Term = frozenset[str]  # a conjunction of marker strings; the empty term is "always"


def _read_uv_lock(path: Path, data: dict[str, Any]) -> LockfileContents:
    version = data.get("version")
    if version != 1:
        raise LockfileError(f"{path}: uv.lock version {version!r} is not supported; abiguard reads version 1")
    errors: list[str] = []
    packages: list[_UvPackage] = []
    for name, table in _named_tables(path, data.get("package"), errors):
        source = table.get("source")
        packages.append(_UvPackage(table, canonical_name(name), _text(table.get("version")),
                                   source if isinstance(source, dict) else {}))
    by_name: dict[str, list[int]] = {}
    for i, pkg in enumerate(packages):
        by_name.setdefault(pkg.name, []).append(i)

    # Nodes are (package index, extra or None); a package with an extra activated also needs its base.
    def targets(dep: dict[str, Any], where: str) -> list[tuple[tuple[int, str | None], str | None]]:
        name = _text(dep.get("name"))
        if name is None:
            errors.append(f"{where}: a dependency has no name")
            return []
        candidates = by_name.get(canonical_name(name), [])
        if "version" in dep:
            candidates = [i for i in candidates if packages[i].version == dep["version"]]
        if "source" in dep and len(candidates) > 1:
            candidates = [i for i in candidates if packages[i].source == dep["source"]]
        if not candidates:
            errors.append(f"{where}: dependency {name} is not in the lock")
            return []
        marker = _text(dep.get("marker"))
        _check_marker(marker, where, errors)
        extras = [e for e in dep.get("extra") or [] if isinstance(e, str)]
        return [((i, extra), marker) for i in candidates for extra in (None, *extras)]

    edges: dict[tuple[int, str | None], list[tuple[tuple[int, str | None], str | None]]] = {}
    roots = _uv_roots(packages, data)
    for i, pkg in enumerate(packages):
        where = f"package {pkg.table.get('name')}"
        base = edges.setdefault((i, None), [])
        for dep in _tables(pkg.table.get("dependencies")):
            base.extend(targets(dep, where))
        optional = pkg.table.get("optional-dependencies")
        for extra, deps in (optional.items() if isinstance(optional, dict) else []):
            node = edges.setdefault((i, extra), [((i, None), None)])
            for dep in _tables(deps):
                node.extend(targets(dep, where))
            if i in roots:  # a project's own extras: check everything it could install
                base.append(((i, extra), None))
        groups = pkg.table.get("dev-dependencies")
        if i in roots:
            for deps in (groups.values() if isinstance(groups, dict) else []):
                for dep in _tables(deps):
                    base.extend(targets(dep, where))
    manifest = data.get("manifest")
    manifest = manifest if isinstance(manifest, dict) else {}
    start: list[tuple[tuple[int, str | None], str | None]] = [((i, None), None) for i in sorted(roots)]
    for dep in _tables(manifest.get("requirements")):  # scripts and virtual workspace roots
        start.extend(targets(dep, f"{path}: manifest"))
    groups = manifest.get("dependency-groups")
    for deps in (groups.values() if isinstance(groups, dict) else []):
        for dep in _tables(deps):
            start.extend(targets(dep, f"{path}: manifest"))
    if not start:  # no project, no manifest: everything nothing depends on
        reached = {target[0] for (i, _), out in edges.items() for target, _ in out if target[0] != i}
        start = [((i, None), None) for i in range(len(packages)) if i not in reached] or [
            ((i, None), None) for i in range(len(packages))
        ]
    per_package: dict[int, set[Term]] = {}
    for (i, _extra), node_terms in _propagate(start, edges).items():
        per_package[i] = _absorb(per_package.get(i, set()) | node_terms)

    entries: list[LockedPackage] = []
    notes: list[str] = []
    for i, pkg in enumerate(packages):
        if pkg.source.keys() & {"virtual"}:
            continue  # a virtual project is not installed at all
        if i in roots:  # the project itself, or a workspace member: built at install, as `uv export` says
            kind = next((k for k in _MEMBER_SOURCES if k in pkg.source), "directory")
            notes.append(built_note(str(pkg.table["name"]), pkg.version or "", f"{kind}: {pkg.source.get(kind)}"))
            continue
        where = f"package {pkg.table.get('name')}"
        entry = _uv_entry(path, pkg, _marker_text(per_package.get(i, set())), errors, where)
        if entry is not None:
            entries.append(entry)
    environments = [m for m in data.get("supported-markers") or [] if isinstance(m, str)]
    return LockfileContents(path, "uv.lock", entries, errors=errors, notes=notes,
                            requires_python=_text(data.get("requires-python")), environments=environments)


def _uv_roots(packages: list[_UvPackage], data: dict[str, Any]) -> set[int]:
    """Workspace members: listed in `[manifest] members`, else the project at `.`."""
    manifest = data.get("manifest")
    members = manifest.get("members") if isinstance(manifest, dict) else None
    if isinstance(members, list) and members:
        names = {canonical_name(m) for m in members if isinstance(m, str)}
        return {i for i, p in enumerate(packages) if p.name in names and p.source.keys() & {*_MEMBER_SOURCES}}
    return {i for i, p in enumerate(packages) if any(p.source.get(k) == "." for k in _MEMBER_SOURCES)}


def _propagate(start: Iterable[tuple[tuple[int, str | None], str | None]],
               edges: Mapping[tuple[int, str | None], list[tuple[tuple[int, str | None], str | None]]],
               ) -> dict[tuple[int, str | None], set[Term]]:
    """For each node, the minimal set of marker conjunctions (one per path from a root) that install it."""
    reach: dict[tuple[int, str | None], set[Term]] = {}
    work: list[tuple[int, str | None]] = []

    def offer(node: tuple[int, str | None], new: set[Term]) -> None:
        old = reach.get(node, set())
        merged = _absorb(old | new)
        if len(merged) > _MAX_TERMS:
            merged = {frozenset()}
        if merged != old:
            reach[node] = merged
            work.append(node)

    for node, marker in start:
        offer(node, {frozenset({marker} if marker else ())})
    while work:
        node = work.pop()
        here = reach[node]
        for target, marker in edges.get(node, []):
            offer(target, {term | {marker} if marker else term for term in here})
    return reach


def _absorb(terms: set[Term]) -> set[Term]:
    """Drop every conjunction that contains a smaller one: A or (A and B) is A."""
    ordered = sorted(terms, key=len)
    kept: list[Term] = []
    for term in ordered:
        if not any(k <= term for k in kept):
            kept.append(term)
    return set(kept)


def _marker_text(terms: set[Term]) -> str | None:
    if not terms or frozenset() in terms:
        return None  # always (or not reachable from the project: keep it, over-checking is safe)

    def conj(term: Term) -> str:
        parts = sorted(term)
        return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)

    rendered = sorted(conj(t) for t in terms)
    return rendered[0] if len(rendered) == 1 else " or ".join(f"({r})" for r in rendered)


def _uv_entry(path: Path, pkg: _UvPackage, marker: str | None, errors: list[str], where: str) -> LockedPackage | None:
    source = pkg.source
    registry = _text(source.get("registry"))
    origin = None
    if registry is None:
        kind = next((k for k in ("git", "url", "path", "directory", "editable") if k in source), None)
        origin = f"{kind}: {source[kind]}" if kind else None
    version = _version_of(pkg.table, origin, where, errors)
    if version is None:
        return None
    hashes: list[str] = []
    wheels = []
    for table in _tables(pkg.table.get("wheels")):
        wheel = _uv_file(path, table, hashes, registry, _text(source.get("path")))
        if wheel is None:
            errors.append(f"{where}: a wheel has neither url nor path")
        else:
            wheels.append(wheel)
    sdist = pkg.table.get("sdist")
    sdist_file = _uv_file(path, sdist, hashes, registry) if isinstance(sdist, dict) else None
    return LockedPackage(name=str(pkg.table["name"]), version=version, marker=marker, wheels=wheels,
                         source=registry, hashes=hashes, origin=origin,
                         sdist_url=sdist_file.url if sdist_file else None)


def _uv_file(path: Path, table: dict[str, Any], hashes: list[str], registry: str | None,
             source_path: str | None = None) -> LockedWheel | None:
    """A file of a uv.lock entry; from a `path` source (a wheel on disk) uv names it by `filename` only."""
    url = _text(table.get("url"))
    local = _text(table.get("path")) or (source_path if url is None and table.get("filename") else None)
    if url is None and local is not None:  # relative to a local registry directory, else to the lock
        base = path.parent / registry if registry and "://" not in registry else path.parent
        url = _file_url(base, local)
    if url is None:
        return None
    digest = _text(table.get("hash"))
    if digest:
        hashes.append(digest)
    sha256 = digest.split(":", 1)[1] if digest and digest.startswith("sha256:") else None
    return LockedWheel(url=url, filename=_text(table.get("filename")) or _filename(local or url), sha256=sha256,
                       size=_int(table.get("size")), upload_time=_time(table.get("upload-time")))


# -- pinned requirements ----------------------------------------------------------------------------------

_COMMENT = re.compile(r"(^|\s+)#.*$")
_NAMED_URL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")  # `name[extra] @ URL` (PEP 508)
_IGNORED_OPTIONS = frozenset({  # installer behaviour that does not change which file of a pinned release is used
    "--pre", "--prefer-binary", "--require-hashes", "--no-deps", "--use-feature",
    "--trusted-host", "--config-settings", "--global-option", "--install-option",
})
_VALUE_OPTIONS = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
    "--trusted-host", "--use-feature", "--only-binary", "--no-binary", "-e", "--editable", "--config-settings",
    "--global-option", "--install-option",
})


class _RequirementsReader:
    """pip's requirements-file syntax, as far as a pinned file uses it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[LockedPackage] = []
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.index_url: str | None = None
        self.index_urls: list[str] = []
        self.seen: set[Path] = set()
        self.pins: dict[str, str] = {}  # `==` pins of the -c constraint files, by canonical name
        self.no_binary: set[str] = set()  # canonical names or ":all:", as pip's FormatControl keeps them
        self.only_binary: set[str] = set()
        self.find_links: list[str] = []
        self.no_index = False
        self.loose: list[tuple[int, Requirement, list[str]]] = []  # unpinned: (its error's index, ...)

    def read(self) -> LockfileContents:
        try:
            self._read(self.path)
        except (OSError, UnicodeDecodeError) as exc:
            raise LockfileError(f"{self.path}: cannot read: {_one_line(exc)}") from exc
        pinned_by_constraint = set()
        for at, req, hashes in self.loose:  # a -c file's pin decides, wherever the -c line is, as for pip
            pinned = self.pins.get(canonical_name(req.name))
            if pinned is not None and req.specifier.contains(pinned, prereleases=True):
                pinned_by_constraint.add(at)
                self.entries.append(LockedPackage(name=req.name, version=pinned,
                                                  marker=str(req.marker) if req.marker else None, hashes=hashes))
        self.errors = [e for at, e in enumerate(self.errors) if at not in pinned_by_constraint]
        entries = [self._formats(e) for e in self.entries]
        if self.index_url:
            entries = [replace(e, source=self.index_url) for e in entries]
        return LockfileContents(self.path, "requirements", entries, index_urls=self.index_urls, errors=self.errors,
                                notes=self.notes, constraints=self.pins, find_links=self.find_links,
                                no_index=self.no_index)

    def _formats(self, entry: LockedPackage) -> LockedPackage:
        """`--no-binary` makes a pinned release an sdist built at install; `--only-binary` forbids that. A name
        beats `:all:`, and `--only-binary` beats `--no-binary` for the same name, as in pip's FormatControl."""
        if entry.wheels or entry.origin:
            return entry
        name = canonical_name(entry.name)
        if name in self.only_binary or (":all:" in self.only_binary and name not in self.no_binary):
            return replace(entry, binary_only=True)
        if name in self.no_binary or ":all:" in self.no_binary:
            return replace(entry, origin=f"sdist: --no-binary {name if name in self.no_binary else ':all:'}")
        return entry

    def _read(self, path: Path) -> None:
        self.seen.add(path.resolve())
        for lineno, line in _logical_lines(read_requirements_text(path)):
            where = f"{path}:{lineno}"
            if line.startswith("-"):
                self._option(path, where, line)
            else:
                self._requirement(path, where, line)

    def _option(self, path: Path, where: str, line: str) -> None:
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            self.errors.append(f"{where}: cannot parse option line: {_one_line(exc)}")
            return
        while tokens:
            token = tokens.pop(0)
            option, has_value, value = token.partition("=")
            if not has_value and option.startswith("-") and not option.startswith("--") and len(option) > 2:
                option, value, has_value = option[:2], option[2:], "="  # -rfile.txt
            if option in _VALUE_OPTIONS and not has_value:
                if not tokens:
                    self.errors.append(f"{where}: {option} needs a value")
                    return
                value = tokens.pop(0)
            if option in ("-e", "--editable"):
                self.notes.append(f"{where}: -e {redact(value)}: {BUILT_FROM_SOURCE}")
            elif option in ("-r", "--requirement"):
                self._include(path, where, value)
            elif option in ("-c", "--constraint"):
                self._constrain(path, where, value)
            elif option in ("-i", "--index-url"):
                self.index_url = value
                self._add_index(value)
            elif option == "--extra-index-url":
                self._add_index(value)
            elif option in ("--no-binary", "--only-binary"):
                binary = option == "--only-binary"
                _format_control(value, self.only_binary if binary else self.no_binary,
                                self.no_binary if binary else self.only_binary)
            elif option in ("-f", "--find-links"):
                self.find_links.append(_find_links_location(path, value))
            elif option == "--no-index":
                self.no_index = True
            elif option not in _IGNORED_OPTIONS:
                self.errors.append(f"{where}: unknown option {option}")
                return

    def _add_index(self, url: str) -> None:
        if url not in self.index_urls:
            self.index_urls.append(url)

    def _include(self, path: Path, where: str, value: str) -> None:
        if "://" in value:
            self.errors.append(f"{where}: -r with a URL is not supported; download the file first")
            return
        target = Path(value)
        target = target if target.is_absolute() else path.parent / target
        if target.resolve() in self.seen:
            return  # already read (or an include cycle)
        try:
            self._read(target)
        except (OSError, UnicodeDecodeError) as exc:
            self.errors.append(f"{where}: cannot read {value}: {_one_line(exc)}")

    def _constrain(self, path: Path, where: str, value: str) -> None:
        """Keep the `==` pins of a constraints file; its other lines (`numpy<2`) constrain without pinning."""
        target = Path(value)
        sub = _RequirementsReader(target if target.is_absolute() else path.parent / target)
        try:
            sub._read(sub.path)
        except (OSError, UnicodeDecodeError) as exc:
            self.errors.append(f"{where}: cannot read {value}: {_one_line(exc)}")
            return
        self.pins.update((canonical_name(e.name), e.version) for e in sub.entries)

    def _requirement(self, path: Path, where: str, line: str) -> None:
        words = line.split()
        cut = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        text, options = " ".join(words[:cut]), words[cut:]
        hashes: list[str] = []
        while options:
            name, has_value, value = options.pop(0).partition("=")
            if name == "--hash" and not has_value and options:
                value = options.pop(0)  # `--hash sha256:...`, which pip and uv accept too
            if name == "--hash" and value:
                hashes.append(value)
            elif name not in _IGNORED_OPTIONS:
                self.errors.append(f"{where}: unknown option {name} on a requirement line")
                return
        bare = "://" in text or text.startswith((".", "/", "~")) or text.endswith((".whl", ".zip", ".tar.gz"))
        if bare and not _NAMED_URL.match(text):
            location, _, marker = text.partition(" ;")  # pip wants a space before the marker of a URL
            self._direct(path, where, location.strip(), None, marker.strip() or None, hashes)
            return
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            self.errors.append(f"{where}: invalid requirement: {_one_line(exc)}")
            return
        if req.url:
            self._direct(path, where, req.url, req.name, str(req.marker) if req.marker else None, hashes)
            return
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator not in ("==", "===") or specs[0].version.endswith(".*"):
            self.loose.append((len(self.errors), req, hashes))  # unless a -c file pins it (see `read`)
            self.errors.append(f"{where}: {req.name}{req.specifier or ''} is not pinned to one version (use ==)")
            return
        self.entries.append(LockedPackage(name=req.name, version=specs[0].version,
                                          marker=str(req.marker) if req.marker else None, hashes=hashes))

    def _direct(self, path: Path, where: str, location: str, name: str | None, marker: str | None,
                hashes: list[str]) -> None:
        """A wheel named by URL or path is read like a locked one; anything else is built at install.

        A relative path is taken from the file's directory, where `uv export` writes it from."""
        filename = _filename(location)
        origin = f"url: {location}"
        if filename.endswith(".whl"):
            try:
                wheel_name, version, _, _ = parse_wheel_filename(filename)
            except InvalidWheelFilename as exc:
                self.errors.append(f"{where}: {_one_line(exc)}")
                return
            url = location if "://" in location else _file_url(path.parent, str(Path(location).expanduser()))
            self.entries.append(LockedPackage(name=name or str(wheel_name), version=str(version), marker=marker,
                                              wheels=[LockedWheel(url, filename, None)], hashes=hashes, origin=origin))
        elif name:
            self.entries.append(LockedPackage(name=name, version="", marker=marker, origin=origin))
        else:
            self.notes.append(f"{where}: {redact(location)}: {BUILT_FROM_SOURCE}")


_BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_requirements_text(path: Path) -> str:
    """A requirements file's text in the encoding its byte-order mark names, else UTF-8, as pip reads it:
    PowerShell's `pip freeze > requirements.txt` writes UTF-16."""
    raw = path.read_bytes()
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom):].decode(encoding)
    return raw.decode("utf-8")


def _format_control(value: str, target: set[str], other: set[str]) -> None:
    """pip's `--no-binary`/`--only-binary` VALUE: names (comma-separated) move from `other` to `target`;
    `:all:` replaces both sets; `:none:` empties `target`."""
    names = value.split(",")
    while ":all:" in names:
        other.clear()
        target.clear()
        target.add(":all:")
        del names[: names.index(":all:") + 1]
        if ":none:" not in names:
            return
    for name in names:
        if name == ":none:":
            target.clear()
        elif name:
            other.discard(canonical_name(name))
            target.add(canonical_name(name))


def _find_links_location(path: Path, value: str) -> str:
    """A `-f` value as pip takes it: a relative path is the requirements file's neighbour if that exists."""
    if "://" in value:
        return value
    beside = path.parent / value
    return str(beside if beside.exists() else Path(value))


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Each logical line with the number of its first physical line, as pip reads them: continuations joined,
    then comments stripped, then `${VAR}` replaced by the environment's value (upper-case letters, digits and
    `_`; a variable unset or empty stays as written)."""
    for lineno, joined in _joined_lines(text):
        line = _ENV_VAR.sub(_env_value, _COMMENT.sub("", joined)).strip()
        if line:
            yield lineno, line


_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _env_value(match: re.Match[str]) -> str:
    return os.environ.get(match.group(1)) or match.group(0)


def _joined_lines(text: str) -> Iterator[tuple[int, str]]:
    """pip's `join_lines`: a line ending in `\\` runs on into the next with nothing between them (`pan\\` then
    `das` is `pandas`), unless it is a comment line; a comment line that ends a continuation gets a space before
    it, so that it is still stripped as a comment."""
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = lineno
        is_comment = _COMMENT.match(raw) is not None
        if raw.endswith("\\") and not is_comment:
            pending.append(raw.strip("\\"))
            continue
        yield start, "".join([*pending, " " + raw if is_comment else raw])
        pending = []
    if pending:
        yield start, "".join(pending)
