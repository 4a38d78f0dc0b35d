"""The package index: the user's index configuration, PEP 691 JSON listings, and wheel selection by tags.

- Configuration follows what the user's installers would use: `--index-url`/extra URLs given by the
  caller win, then uv's and pip's environment variables, then `uv.toml`, then pip's config files, then the
  index pip itself defaults to (read from the installed pip at run time, so no host name is written here).
- Listings are PEP 691 JSON (`application/vnd.pypi.simple.v1+json`); an index that only answers PEP 503
  HTML is parsed too (no sizes or upload times then). `file://` indexes are skipped with a note.
- Wheel selection ranks a release's wheels by the position of their best tag in the target's ordered tag
  list (`target_tags`), exactly as installers prefer the most specific wheel.
- Every URL that may reach a message goes through `redact`.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from packaging import tags as ptags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from abiguard.model import canonical_name
from abiguard.sources.remote import HttpClient, RemoteError, redact

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


class PackageIndexError(Exception):
    """The index cannot answer (misconfigured, unreachable, or the project/version/wheel is missing)."""


class ProjectNotFound(PackageIndexError):
    pass


class NoMatchingWheel(PackageIndexError):
    pass


class IndexUnreachable(PackageIndexError):
    """No index answered at all (network, proxy, a wrong URL): nothing can be said about what it holds."""


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexConfig:
    """The indexes to query, primary first, and what was skipped (for the user to see)."""

    urls: tuple[str, ...]
    notes: tuple[str, ...] = ()
    cafile: str | None = None


_UV_DEFAULT = re.compile(r"--default-index\b.*?\(by default: <(https?://[^>\s]+)>\)", re.DOTALL)


def default_index_url() -> str:
    """The index the installers use when nothing is configured: the installed pip's, else the one uv's own
    help names (abiguard installed by `uv tool install` or pipx has no pip to ask)."""
    try:
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url)
    except Exception:  # pip missing or its internals moved
        pass
    import subprocess

    from abiguard.fix.resolver import find_uv

    uv = find_uv()
    try:
        said = subprocess.run([uv, "pip", "install", "--help"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL).stdout if uv else ""
    except (OSError, subprocess.SubprocessError):
        said = ""
    found = _UV_DEFAULT.search(said)
    if found is None:
        raise PackageIndexError("no package index configured, and neither pip nor uv says which is the default;"
                                " pass --index-url URL or set PIP_INDEX_URL")
    return found.group(1)


@dataclass
class _Found:
    primary: list[tuple[str, str]] = field(default_factory=list)  # (url, where it came from)
    extras: list[tuple[str, str]] = field(default_factory=list)
    cafile: str | None = None


def load_index_config(
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    system_files: bool = True,
) -> IndexConfig:
    """Collect the user's indexes from arguments, environment variables and config files.

    `environ` defaults to `os.environ` (tests pass their own, with HOME pointing somewhere harmless);
    `system_files=False` skips /etc files.
    """
    env = os.environ if environ is None else environ
    found = _configured(index_url, extra_index_urls, env, system_files)
    if not found.primary:
        found.primary.append((default_index_url(), "pip's default"))
    return _finish(found, env)


def _configured(index_url: str | None, extra_index_urls: Sequence[str], env: Mapping[str, str],
                system_files: bool) -> _Found:
    """Every index the arguments, uv's and pip's settings name, in the order they rank."""
    found = _Found()
    if index_url:
        found.primary.append((index_url, "--index-url"))
    found.extras += [(u, "--extra-index-url") for u in extra_index_urls]
    _from_env(env, found)
    _from_uv_files(env, found, system_files)
    _from_pip_files(env, found, system_files)
    return found


_INSTALLER_VARIABLES = {  # installer: (its primary index, its extra indexes, variables whose indexes these replace)
    "uv": ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", ("UV_DEFAULT_INDEX", "UV_INDEX")),
    "pip": ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", ()),
}


def installer_environ(installer: str, environ: Mapping[str, str] | None = None,
                      system_files: bool = True) -> dict[str, str]:
    """The environment to run `installer` in, naming in its own variables the indexes abiguard reads wheels
    from: uv ignores pip's configuration and pip uv's, so left alone either could install wheels from an index
    other than the one that was judged. Only the indexes abiguard reads are named (not the local ones it skips
    with a note). Installer arguments (`--index-url`) still win over these variables, as they win when abiguard
    reads; `UV_DEFAULT_INDEX` is replaced, not kept, since uv lets it beat `--index-url`. With no primary index
    configured none is set: both installers then use the default one, which abiguard reads too."""
    env = dict(os.environ if environ is None else environ)
    found = _configured(None, (), env, system_files)
    urls, _skipped = _readable([*found.primary[:1], *found.extras])
    primary_var, extras_var, replaced = _INSTALLER_VARIABLES[installer]
    for var in replaced:
        env.pop(var, None)
    if found.primary and urls:
        env[primary_var], urls = urls[0], urls[1:]
    if urls:
        env[extras_var] = " ".join(urls)
    return env


def _split(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


def _uv_index_entry(entry: str) -> str:
    """uv's `--index` values may be `name=url`."""
    head, sep, tail = entry.partition("=")
    return tail if sep and "://" not in head and "://" in tail else entry


def _from_env(env: Mapping[str, str], found: _Found) -> None:
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if env.get(var):
            found.primary.append((_uv_index_entry(env[var].strip()), var))
    for var in ("UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        found.extras += [(_uv_index_entry(u), var) for u in _split(env.get(var, ""))]
    found.cafile = env.get("PIP_CERT") or env.get("SSL_CERT_FILE") or None


def _config_home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"))


def _from_uv_files(env: Mapping[str, str], found: _Found, system_files: bool) -> None:
    if env.get("UV_NO_CONFIG"):
        return
    files = [Path(env["UV_CONFIG_FILE"])] if env.get("UV_CONFIG_FILE") else [_config_home(env) / "uv" / "uv.toml"]
    if system_files and not env.get("UV_CONFIG_FILE"):
        dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
        files += [Path(d) / "uv" / "uv.toml" for d in dirs if d] + [Path("/etc/uv/uv.toml")]
    for path in files:
        data = _read_toml(path)
        if data is None:
            continue
        where = f"uv config {path}"
        if isinstance(data.get("index-url"), str):
            found.primary.append((data["index-url"], where))
        extra = data.get("extra-index-url")
        found.extras += [(u, where) for u in ([extra] if isinstance(extra, str) else extra or [])
                         if isinstance(u, str)]
        for entry in data.get("index") or []:
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                target = found.primary if entry.get("default") else found.extras
                target.append((entry["url"], where))


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: uv.toml is read only when tomli happens to be installed
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError:
            return None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def pip_config_files(env: Mapping[str, str], system_files: bool = True) -> list[Path]:
    """pip's config files in the order pip loads them (later ones override earlier ones)."""
    files: list[Path] = []
    if system_files:
        dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
        files += [Path(d) / "pip" / "pip.conf" for d in dirs if d] + [Path("/etc/pip.conf")]
    explicit = env.get("PIP_CONFIG_FILE")
    if not (explicit and os.path.exists(explicit)):
        home = env.get("HOME") or os.path.expanduser("~")
        files += [Path(home) / ".pip" / "pip.conf", _config_home(env) / "pip" / "pip.conf"]
    prefix = env.get("VIRTUAL_ENV") or sys.prefix
    files.append(Path(prefix) / "pip.conf")
    if explicit and explicit != os.devnull:
        files.append(Path(explicit))
    return files


def _from_pip_files(env: Mapping[str, str], found: _Found, system_files: bool) -> None:
    primary: tuple[str, str] | None = None
    extras: list[tuple[str, str]] = []
    cafile: str | None = None
    for path in pip_config_files(env, system_files):
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path, encoding="utf-8"):
                continue
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in ("global", "install"):  # pip: the command's section overrides [global]
            values = {k.replace("_", "-"): v for k, v in parser.items(section)} if parser.has_section(section) else {}
            if values.get("index-url"):
                primary = (values["index-url"].strip(), f"pip config {path}")
            if values.get("extra-index-url"):
                extras = [(u, f"pip config {path}") for u in _split(values["extra-index-url"])]
            cafile = values.get("cert") or cafile
    if primary:
        found.primary.append(primary)
    found.extras += extras
    found.cafile = found.cafile or cafile


def _finish(found: _Found, env: Mapping[str, str]) -> IndexConfig:
    urls, notes = _readable([found.primary[0], *found.extras])
    if not urls:
        why = "; ".join(notes) if notes else "none configured"
        raise PackageIndexError(f"no usable http(s) package index ({why}); pass --index-url https://...")
    return IndexConfig(tuple(urls), tuple(notes), found.cafile)


def _readable(indexes: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The http(s) indexes among (url, where it came from), once each, and a note for each one skipped."""
    urls: list[str] = []
    notes: list[str] = []
    for url, where in indexes:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            if url.rstrip("/") + "/" not in urls:
                urls.append(url.rstrip("/") + "/")
        elif scheme == "file" or os.path.isabs(url):
            notes.append(f"skipped local index {redact(url)} (from {where}): only http(s) indexes are read")
        else:
            notes.append(f"skipped index {redact(url)} (from {where}): not an http(s) URL")
    return urls, notes


# --- listings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFile:
    """One file of a project's listing; wheels carry their parsed tags."""

    filename: str
    url: str
    name: str
    version: Version
    sha256: str | None = None
    size: int | None = None
    upload_time: datetime | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    requires_python: str | None = None
    index: str = ""
    metadata: bool = False  # the index serves its METADATA at `url + ".metadata"` (PEP 658, PEP 714)

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @cached_property
    def _wheel_parts(self) -> tuple[tuple[int, str] | tuple[()], frozenset[Tag]]:
        """Parsed lazily: a big project lists thousands of files and most are never ranked."""
        if not self.is_wheel:
            return (), frozenset()
        try:
            _, _, build, tags = parse_wheel_filename(self.filename)
        except InvalidWheelFilename:
            return (), frozenset()
        return build, frozenset(tags)

    @property
    def tags(self) -> frozenset[Tag]:
        return self._wheel_parts[1]

    @property
    def build(self) -> tuple[int, str] | tuple[()]:
        return self._wheel_parts[0]

    def python_ok(self, python_version: str) -> bool:
        """Does `requires-python` admit this Python (an unreadable specifier admits everything)?"""
        if not self.requires_python:
            return True
        try:
            return SpecifierSet(self.requires_python).contains(python_version, prereleases=True)
        except InvalidSpecifier:
            return True


def parse_file(filename: str, url: str, meta: Mapping[str, Any], index: str) -> IndexFile | None:
    """An IndexFile from a listing entry; None for files that are neither wheels nor sdists."""
    try:
        if filename.endswith(".whl"):
            parts = filename[:-4].split("-")
            if len(parts) not in (5, 6):
                return None
            name, version = canonical_name(parts[0]), Version(parts[1])
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return None
    hashes = meta.get("hashes") or {}
    yanked = meta.get("yanked", False)
    size = meta.get("size")
    return IndexFile(
        filename=filename,
        url=url,
        name=name,
        version=version,
        sha256=(hashes.get("sha256") or "").lower() or None,
        size=size if isinstance(size, int) else None,
        upload_time=_parse_time(meta.get("upload-time")),
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
        requires_python=meta.get("requires-python") or None,
        index=index,
        metadata=bool(meta.get("core-metadata") or meta.get("data-dist-info-metadata")),
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class IndexClient:
    """Project listings from the configured indexes, merged (primary first, first file name wins)."""

    def __init__(self, config: IndexConfig, http: HttpClient | None = None) -> None:
        self.config = config
        self.http = http or HttpClient(cafile=config.cafile)
        self.notes: list[str] = list(config.notes)
        self.failed: dict[str, str] = {}  # index -> the note on its failure, while other indexes answered
        self._listings: dict[str, list[IndexFile]] = {}

    def files(self, project: str) -> list[IndexFile]:
        """Every wheel and sdist of `project`; ProjectNotFound if no index has it."""
        name = canonical_name(project)
        if name not in self._listings:
            self._listings[name] = self._fetch(name, project)
        return self._listings[name]

    def _fetch(self, name: str, asked: str) -> list[IndexFile]:
        merged: dict[str, IndexFile] = {}
        failures: list[tuple[str, str]] = []  # (index, why)
        answered = False
        for index in self.config.urls:
            try:
                listing = self._listing(index, name)
            except (RemoteError, PackageIndexError) as exc:
                failures.append((index, str(exc)))
                continue
            if listing is None:
                continue
            answered = True
            for item in listing:
                merged.setdefault(item.filename, item)
        if failures and not answered:
            raise IndexUnreachable(failures[0][1])
        for index, why in failures:
            self._failed(index, why)
        if not merged:
            where = ", ".join(redact(u) for u in self.config.urls)
            raise ProjectNotFound(f"no project named {asked!r} on the package index ({where})")
        return list(merged.values())

    def _failed(self, index: str, why: str) -> None:
        """One note per index that failed while others answered: what it holds was not considered, and an
        installer may take a file from it."""
        if index not in self.failed:
            self.failed[index] = (f"index {redact(index)} could not be read, so only the other indexes' files were "
                                  f"considered: {why}")
            self.notes.append(self.failed[index])

    def _listing(self, index: str, name: str) -> list[IndexFile] | None:
        url = urllib.parse.urljoin(index, f"{name}/")
        resp = self.http.get(url, {"Accept": ACCEPT})
        if resp.status == 404:
            return None
        kind = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        base = resp.url
        if kind == JSON_TYPE or kind.endswith("+json") or kind == "application/json":
            return _parse_json(resp.body, base, index)
        if "html" in kind:
            return _parse_html(resp.body, base, index)
        raise PackageIndexError(f"unexpected content type {kind or 'none'!r} from {redact(url)}")


def _parse_json(body: bytes, base: str, index: str) -> list[IndexFile]:
    try:
        data = json.loads(body)
        entries = data["files"]
    except (ValueError, KeyError, TypeError):
        raise PackageIndexError(f"unreadable JSON listing from {redact(base)}") from None
    out: list[IndexFile] = []
    for entry in entries:
        if not isinstance(entry, dict) or "filename" not in entry or "url" not in entry:
            continue
        url = entry["url"]
        parsed = parse_file(entry["filename"], url if "://" in url else urllib.parse.urljoin(base, url), entry, index)
        if parsed is not None:
            out.append(parsed)
    return out


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def _parse_html(body: bytes, base: str, index: str) -> list[IndexFile]:
    """PEP 503 anchors: the file name is the URL's last segment; sha256 sits in the fragment."""
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    out: list[IndexFile] = []
    for attrs in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url = urllib.parse.urljoin(base, href)
        path, _, fragment = url.partition("#")
        filename = urllib.parse.unquote(path.rsplit("/", 1)[-1].split("?", 1)[0])
        meta: dict[str, Any] = {"requires-python": attrs.get("data-requires-python")}
        if fragment.startswith("sha256="):
            meta["hashes"] = {"sha256": fragment[len("sha256="):]}
        if "data-yanked" in attrs:
            meta["yanked"] = attrs["data-yanked"] or True
        value = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata", "false"))  # PEP 714, 658
        meta["core-metadata"] = value is None or value.lower() != "false"
        parsed = parse_file(filename, path, meta, index)
        if parsed is not None:
            out.append(parsed)
    return out


def find_links_files(location: str, http: HttpClient) -> list[IndexFile]:
    """The wheels and sdists a `--find-links` location offers, as pip reads one: the files of a local directory,
    or the links of an HTML page (a local file or an http(s) URL). PackageIndexError when it cannot be read."""
    try:
        if location.startswith(("http://", "https://")):
            resp = http.get(location, {"Accept": "text/html"})
            if resp.status == 404:
                raise PackageIndexError(f"--find-links {redact(location)}: HTTP 404 Not Found")
            return _parse_html(resp.body, resp.url, location)
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(location).path)
                    if location.startswith("file:") else location)
        if path.is_dir():
            found = (parse_file(p.name, p.resolve().as_uri(), {}, location) for p in sorted(path.iterdir())
                     if p.is_file())
            return [f for f in found if f is not None]
        return _parse_html(path.read_bytes(), path.resolve().as_uri(), location)
    except RemoteError as exc:
        raise PackageIndexError(f"--find-links {redact(location)}: {exc}") from None
    except OSError as exc:
        raise PackageIndexError(f"--find-links {location}: cannot read: {exc.strerror or exc}") from None


# --- tags and wheel selection ----------------------------------------------------------------------

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


_SYSTEMS = ("linux", "macosx", "win", "manylinux", "musllinux")


def wheel_platform(platform: str) -> str:
    """`platform` normalized as wheel tags spell it; ValueError for uv's `--python-platform` names
    (`aarch64-apple-darwin`, `x86_64-manylinux_2_28`, `linux`), whose wheel tags would be a guess. Wheel
    platform tags and sysconfig's spelling of them (`macosx-11.0-arm64`) start with the system; uv's names
    start with the machine, or are a bare system."""
    text = platform.strip().lower()
    system = text.partition("-")[0]
    if text in ("linux", "macos", "windows") or ("-" in text and not system.startswith(_SYSTEMS)):
        raise ValueError(f"platform {platform!r} is not a wheel platform tag; use one such as "
                         "manylinux_2_28_x86_64, win_amd64, macosx_11_0_arm64")
    return expand_platform(platform)[0]


_OS = (  # (words in a platform tag, sys_platform, platform_system, os_name); "darwin" contains "win"
    (("macos", "darwin"), "darwin", "Darwin", "posix"),
    (("win",), "win32", "Windows", "nt"),
    (("linux",), "linux", "Linux", "posix"),
)


# Systems wheels are built for whose marker values are not worked out here: fine for choosing wheels by tag.
_OTHER_SYSTEMS = ("freebsd", "netbsd", "openbsd", "dragonfly", "sunos", "solaris", "aix", "cygwin", "android",
                  "ios", "emscripten", "pyodide", "wasi")


def platform_system(platform: str) -> tuple[str, str, str] | None:
    """The operating system a target `platform` names, as markers spell it (sys_platform, platform_system,
    os_name), or None for one of `_OTHER_SYSTEMS`; ValueError for uv's names (see `wheel_platform`) and for a
    tag that names no system at all, which would match no wheel and answer 'no wheel for this target'."""
    lower = wheel_platform(platform)
    found = next((o for o in _OS if any(w in lower for w in o[0])), None)
    if found is not None:
        return found[1], found[2], found[3]
    if not lower.startswith(_OTHER_SYSTEMS):
        raise ValueError(f"platform {platform!r} names no known operating system (linux, macos, windows)")
    return None


def expand_platform(platform: str) -> list[str]:
    """Every platform tag a target `platform` accepts, most specific first.

    `manylinux_2_28_x86_64` -> manylinux_2_28 ... manylinux_2_5 plus the legacy aliases and `linux_x86_64`;
    `macosx_11_0_arm64` -> what `packaging.tags.mac_platforms` gives; anything else stands for itself.
    """
    platform = platform.strip().lower().replace("-", "_").replace(".", "_")
    for legacy, (major, minor) in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            return _manylinux(major, minor, platform[len(legacy) + 1 :])
    parts = platform.split("_", 3)
    if platform.startswith("manylinux_") and len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        return _manylinux(int(parts[1]), int(parts[2]), parts[3])
    if platform.startswith("musllinux_") and len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        major, minor, arch = int(parts[1]), int(parts[2]), parts[3]
        return [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)] + [f"linux_{arch}"]
    if platform.startswith("macosx_") and len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        return list(ptags.mac_platforms((int(parts[1]), int(parts[2])), parts[3]))
    return [platform]


def _manylinux(major: int, minor: int, arch: str) -> list[str]:
    out: list[str] = []
    floor = 5 if arch in ("x86_64", "i686") else 17
    for glibc in range(minor, floor - 1, -1):
        out.append(f"manylinux_{major}_{glibc}_{arch}")
        for legacy, version in _LEGACY_MANYLINUX.items():
            if version == (major, glibc) and (legacy == "manylinux2014" or arch in ("x86_64", "i686")):
                out.append(f"{legacy}_{arch}")
    return [*out, f"linux_{arch}"]


def parse_python_version(text: str) -> tuple[int, int]:
    try:
        parts = tuple(int(p) for p in text.strip().split(".")[:2])
    except ValueError:
        parts = ()
    if len(parts) != 2 or parts[0] < 2:
        raise PackageIndexError(f"invalid Python version {text!r}; expected X.Y such as 3.11")
    return parts[0], parts[1]


def target_tags(python_version: str | None = None, platform: str | None = None) -> list[Tag]:
    """The target's supported tags, most preferred first; the running interpreter's when both are None."""
    if python_version is None and platform is None:
        return list(ptags.sys_tags())
    version = parse_python_version(python_version) if python_version else sys.version_info[:2]
    if platform:
        try:
            platform_system(platform)
        except ValueError as exc:
            raise PackageIndexError(str(exc)) from None
    platforms = expand_platform(platform) if platform else list(ptags.platform_tags())
    interpreter = f"cp{version[0]}{version[1]}"
    return [*ptags.cpython_tags(version, None, platforms), *ptags.compatible_tags(version, interpreter, platforms)]


def best_wheel(files: Iterable[IndexFile], supported: Sequence[Tag]) -> IndexFile | None:
    """The wheel whose best tag ranks highest in `supported`; a higher build number breaks ties."""
    rank = {tag: i for i, tag in reversed(list(enumerate(supported)))}
    best: tuple[int, tuple[int, str] | tuple[()], IndexFile] | None = None
    for item in files:
        if not item.is_wheel:
            continue
        ranks = [rank[t] for t in item.tags if t in rank]
        if not ranks:
            continue
        score = min(ranks)
        if best is None or score < best[0] or (score == best[0] and item.build > best[1]):
            best = (score, item.build, item)
    return best[2] if best else None


@dataclass(frozen=True)
class Release:
    """One version of a project with the wheel a target would install."""

    version: Version
    wheel: IndexFile
    yanked: bool


def releases(
    files: Iterable[IndexFile],
    supported: Sequence[Tag],
    python_version: str,
    prereleases: bool = False,
    yanked: bool = False,
) -> list[Release]:
    """Versions with a wheel for the target, oldest first."""
    by_version: dict[Version, list[IndexFile]] = {}
    for item in files:
        by_version.setdefault(item.version, []).append(item)
    out: list[Release] = []
    for version in sorted(by_version):
        if version.is_prerelease and not prereleases:
            continue
        usable = [f for f in by_version[version] if f.python_ok(python_version) and (yanked or not f.yanked)]
        wheel = best_wheel(usable, supported)
        if wheel is not None:
            out.append(Release(version, wheel, wheel.yanked))
    return out


def resolve(files: Sequence[IndexFile], requirement: str, supported: Sequence[Tag], python_version: str,
            target: str = "this target") -> Release:
    """The release `requirement` (`name`, `name==1.2`, `name>=1,<2`) picks: newest matching, with a wheel."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        raise PackageIndexError(f"invalid requirement {requirement!r}: {exc}") from None
    pinned = {s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version}
    versions = sorted({f.version for f in files if not f.yanked or str(f.version) in pinned})
    matching = list(req.specifier.filter(versions))
    if not matching:
        raise PackageIndexError(f"no release of {req.name} matches {str(req.specifier) or 'any version'}")
    for version in reversed(matching):
        allowed = [f for f in files if f.version == version and (not f.yanked or str(version) in pinned)]
        wheel = best_wheel([f for f in allowed if f.python_ok(python_version)], supported)
        if wheel is not None:
            return Release(version, wheel, wheel.yanked)
    raise NoMatchingWheel(f"no wheel of {req.name}{req.specifier} for {target}{_why_no_wheel(files, matching, pinned)}")


def _why_no_wheel(files: Sequence[IndexFile], matching: list[Version], pinned: set[str]) -> str:
    """What the matching releases do have: the newest one's name is news only when more than one matched."""
    if len(matching) > 1 or not pinned:
        return f" (newest matching release: {matching[-1]})"
    if not any(f.is_wheel for f in files if f.version == matching[0]):
        return f" ({matching[0]} has only an sdist)"
    return f" ({matching[0]} has wheels for other platforms or Pythons only)"
