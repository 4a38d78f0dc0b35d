"""Which NumPy C-ABI a wheel's binaries were built for, reading as few of its members as the answer needs.

One policy serves local wheels (`zipfile`) and remote ones (range requests, `sources.remote`): both are a
`MemberSource` that lists members and reads one at a time, and `inspect_members` decides which to read, in
what order, and when to stop:

- only shared objects are candidates, and none of numpy's own files (rule R0);
- members already in the cache are free, so they count first;
- the rest are read smallest first (cost is bytes on the wire or disk);
- one member built for NumPy 1.x settles the wheel (it is not NumPy-2 compatible): stop there;
- otherwise every candidate must be read to be sure, unless the caller asked for a sample of K members:
  then K agreeing NumPy-2 members end the reading, and the result says it rests on a sample.
"""

from __future__ import annotations

import email.parser
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from abiguard.binary import BytesReader, inspect_reader, is_shared_object_name
from abiguard.cache import Cache, FileKey, WheelListing
from abiguard.model import BinaryFacts, BuiltFor, canonical_name
from abiguard.sources.remote import DEFAULT_MAX_MEMBER, HttpClient, MemberTooLarge, RemoteZip, ZipEntry, redact


@dataclass(frozen=True)
class Member:
    """A candidate member of a wheel: its archive name and sizes."""

    name: str
    size: int  # inflated
    compressed_size: int


@dataclass(frozen=True)
class ReadPolicy:
    """How much of a wheel to read. `sample=None` reads every candidate unless a NumPy-1 member settles it."""

    sample: int | None = None
    stop_on_numpy1: bool = True


class MemberSource(Protocol):
    """A wheel whose members can be listed and inspected one at a time."""

    def members(self) -> list[Member]: ...

    def inspect_member(self, member: Member) -> BinaryFacts: ...


@dataclass(frozen=True)
class MemberResult:
    path: str  # the name inside the wheel
    module: str | None
    facts: BinaryFacts
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        facts = self.facts.to_json()
        data: dict[str, Any] = {"path": self.path, "module": self.module}
        data.update({k: facts[k] for k in ("built_for", "min_numpy", "producer", "evidence", "format", "reason")})
        data.update({"size": self.facts.size, "bytes_read": self.facts.bytes_read, "cached": self.cached})
        return data


@dataclass(frozen=True)
class WheelOutcome:
    """What `inspect_members` concluded, and what it read to conclude it."""

    built_for: BuiltFor
    min_numpy: str | None
    members: tuple[MemberResult, ...]  # in the order they were settled (cached first, then read)
    candidates: int  # shared objects that are not numpy's own
    unread: tuple[str, ...]  # candidates not read, because the answer was settled or sampled
    sampled: bool  # the conclusion rests on a sample (only with ReadPolicy.sample)
    note: str | None


@dataclass(frozen=True)
class WheelReport:
    """A wheel's verdict with the cost of reaching it; `to_json` is the `inspect` JSON object."""

    filename: str
    name: str
    version: str
    source: str  # local path or redacted URL
    outcome: WheelOutcome
    bytes_read: int  # of the wheel itself (central directory and members), not of index listings
    requests: int
    wheel_size: int
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # upload_time, yanked ... from the index
    requires: tuple[str, ...] | None = None  # its METADATA's Requires-Dist, when asked for and readable

    @property
    def built_for(self) -> BuiltFor:
        return self.outcome.built_for

    def to_json(self) -> dict[str, Any]:
        out = self.outcome
        data: dict[str, Any] = {
            "kind": "wheel",
            "target": self.source,
            "filename": self.filename,
            "name": self.name,
            "version": self.version,
            "built_for": out.built_for.value,
            "min_numpy": out.min_numpy,
            "sampled": out.sampled,
            "members_read": len(out.members),
            "members_total": out.candidates,
            "note": out.note,
            "bytes_read": self.bytes_read,
            "requests": self.requests,
            "wheel_size": self.wheel_size,
            "sha256": self.sha256,
            **self.extra,
            "binaries": [m.to_json() for m in out.members],
            "unread": list(out.unread),
        }
        return data


# --- which members and when to stop --------------------------------------------------------------

_DATA_DIR = re.compile(r"^[^/]+\.data/(?:purelib|platlib)/")


def installed_path(name: str) -> str:
    """Where a wheel member lands in site-packages (members under `.data/platlib/` lose that prefix)."""
    return _DATA_DIR.sub("", name)


def is_numpy_own(dist_name: str, member: str) -> bool:
    """Rule R0: numpy's own binaries say nothing about compatibility with numpy."""
    if canonical_name(dist_name) == "numpy":
        return True
    top = installed_path(member).split("/", 1)[0]
    return top in ("numpy", "numpy.libs")


def candidates(dist_name: str, members: Iterable[Member]) -> list[Member]:
    """Shared objects worth reading, cheapest first."""
    found = [m for m in members if is_shared_object_name(m.name) and not is_numpy_own(dist_name, m.name)]
    return sorted(found, key=lambda m: (m.compressed_size, m.name))


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def module_name(path: str) -> str | None:
    """Dotted import name of an extension module (`pkg/_x.cpython-311-x86_64-linux-gnu.so` -> `pkg._x`).

    None for plain libraries (`libfoo.so.1`, `*.dylib`, `*.dll`, anything under `pkg.libs/`).
    """
    rel = installed_path(path)
    parts = rel.split("/")
    base = parts[-1]
    lower = base.lower()
    if not (lower.endswith(".pyd") or lower.endswith(".so")):
        return None
    stem = base.split(".", 1)[0]
    if not _IDENT.match(stem) or not all(_IDENT.match(p) for p in parts[:-1]):
        return None
    return ".".join([*parts[:-1], stem])


def inspect_members(
    dist_name: str,
    members: Iterable[Member],
    read: Callable[[Member], BinaryFacts],
    policy: ReadPolicy = ReadPolicy(),
    known: Mapping[str, BinaryFacts] | None = None,
) -> WheelOutcome:
    """Decide a wheel from its members: known (cached) ones first, then read smallest first until settled."""
    todo = candidates(dist_name, members)
    if not todo:
        own = canonical_name(dist_name) == "numpy"
        note = "part of numpy itself (R0)" if own else "no shared objects"
        return WheelOutcome(BuiltFor.NONE, None, (), 0, (), False, note)
    known = known or {}
    results = [MemberResult(m.name, module_name(m.name), known[m.name], True) for m in todo if m.name in known]
    pending = [m for m in todo if m.name not in known]
    while pending and not _settled(results, policy):
        member = pending.pop(0)
        results.append(MemberResult(member.name, module_name(member.name), read(member)))
    built_for, min_numpy = combine([r.facts for r in results])
    unread = tuple(m.name for m in pending)
    sampled = bool(unread) and built_for is not BuiltFor.NUMPY1
    return WheelOutcome(built_for, min_numpy, tuple(results), len(todo), unread, sampled,
                        _note(built_for, unread, sampled, len(todo)))


def _settled(results: Sequence[MemberResult], policy: ReadPolicy) -> bool:
    if policy.stop_on_numpy1 and any(r.facts.built_for is BuiltFor.NUMPY1 for r in results):
        return True
    if policy.sample is None:
        return False
    return sum(r.facts.built_for is BuiltFor.NUMPY2 for r in results) >= policy.sample


def _note(built_for: BuiltFor, unread: tuple[str, ...], sampled: bool, total: int) -> str | None:
    if not unread:
        return None
    read = total - len(unread)
    if sampled:
        return f"conclusion rests on a sample: {read} of {total} shared objects read"
    return f"settled by a member built for NumPy 1.x; {len(unread)} of {total} shared objects not read"


def combine(facts: Sequence[BinaryFacts]) -> tuple[BuiltFor, str | None]:
    """A wheel's verdict: numpy1 if any member is; numpy2 if all NumPy users are; none if none uses NumPy."""
    kinds = {f.built_for for f in facts}
    floors = [f.min_numpy for f in facts if f.min_numpy]
    min_numpy = max(floors, key=_version_key) if floors else None
    for kind in (BuiltFor.NUMPY1, BuiltFor.UNKNOWN, BuiltFor.NUMPY2):
        if kind in kinds:
            return kind, min_numpy
    return BuiltFor.NONE, min_numpy


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


_METADATA = re.compile(r"^[^/]+\.dist-info/METADATA$")
_MAX_METADATA = 16 * 1024 * 1024  # far above any real METADATA; a bound on what a hostile wheel makes us inflate


def metadata_member(names: Iterable[str]) -> str | None:
    """The wheel's `*.dist-info/METADATA` (the top-level one)."""
    return next((n for n in names if _METADATA.match(n)), None)


def requires_dist(metadata: bytes) -> tuple[str, ...]:
    """The Requires-Dist lines of a METADATA file (RFC 822 headers; the body, its description, is skipped)."""
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    return tuple(str(v) for v in headers.get_all("Requires-Dist") or ())


UNREADABLE = "cannot read from the wheel"  # the reason of a member whose bytes are damaged


def unreadable(outcome: WheelOutcome) -> list[MemberResult]:
    """Members whose bytes could not be read (a damaged wheel): no installer would install it either."""
    return [m for m in outcome.members if (m.facts.reason or "").startswith(UNREADABLE)]


def too_large(member: Member, exc: MemberTooLarge) -> BinaryFacts:
    return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"too large to read remotely ({exc})",
                       size=member.size)


# --- local wheels --------------------------------------------------------------------------------


class LocalWheel:
    """A wheel file on disk. `bytes_read` counts compressed member bytes read (the directory is small)."""

    def __init__(self, path: str | os.PathLike[str], max_member: int = DEFAULT_MAX_MEMBER) -> None:
        self.path = Path(path)
        self.max_member = max_member
        self.bytes_read = 0
        self._zip = zipfile.ZipFile(self.path)  # raises BadZipFile / OSError for the caller

    def members(self) -> list[Member]:
        return [Member(i.filename, i.file_size, i.compress_size) for i in self._zip.infolist() if not i.is_dir()]

    def inspect_member(self, member: Member) -> BinaryFacts:
        if member.size > self.max_member:
            return too_large(member, MemberTooLarge(member.name, member.size, self.max_member))
        try:
            with self._zip.open(member.name) as stream:
                data = stream.read(self.max_member + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as exc:  # damaged: bad CRC,
            # corrupt deflate data, a member cut short
            return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"{UNREADABLE}: {exc}", size=member.size)
        self.bytes_read += member.compressed_size
        if len(data) > self.max_member:
            return too_large(member, MemberTooLarge(member.name, len(data), self.max_member))
        facts = inspect_reader(BytesReader(data))
        return _with_cost(facts, member.compressed_size)

    def requires(self) -> tuple[str, ...] | None:
        """Requires-Dist from its METADATA; None when it has none or it cannot be read (then nothing is known)."""
        name = metadata_member(self._zip.namelist())
        if name is None:
            return None
        try:
            with self._zip.open(name) as stream:
                return requires_dist(stream.read(_MAX_METADATA))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error):
            return None

    def close(self) -> None:
        self._zip.close()


def _with_cost(facts: BinaryFacts, cost: int) -> BinaryFacts:
    return replace(facts, bytes_read=cost)


def inspect_local_wheel(
    path: str | os.PathLike[str],
    policy: ReadPolicy = ReadPolicy(),
    cache: Cache | None = None,
    max_member: int = DEFAULT_MAX_MEMBER,
    requires: Callable[[WheelOutcome], bool] | None = None,
) -> WheelReport:
    """Inspect a wheel on disk; members are cached by the wheel file's identity and the member name.
    `requires`: whether, given what the binaries say, its declared requirements are worth reading too."""
    path = Path(path)
    name, version = _name_version(path.name)
    st = path.stat()
    wheel = LocalWheel(path, max_member)
    try:
        keys = {m.name: FileKey(f"{path.resolve()}!{m.name}", m.size, st.st_mtime_ns, st.st_ino)
                for m in wheel.members()}
        cached = cache.lookup_files(keys.values()) if cache else {}
        known = {n: cached[k] for n, k in keys.items() if k in cached}
        outcome = inspect_members(name, wheel.members(), wheel.inspect_member, policy, known)
        if cache:
            fresh = {keys[r.path]: r.facts for r in outcome.members if not r.cached}
            cache.store_files({k: f for k, f in fresh.items() if _cacheable(f)})
        declared = wheel.requires() if requires is not None and requires(outcome) else None
    finally:
        wheel.close()
    return WheelReport(path.name, name, version, str(path), outcome, wheel.bytes_read, 0, st.st_size,
                       requires=declared)


def _cacheable(facts: BinaryFacts) -> bool:
    """Facts worth keeping: not those that only say the read was cut short."""
    return not (facts.reason or "").startswith(("too large", "cannot read"))


def _name_version(filename: str) -> tuple[str, str]:
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        stem = filename.rsplit(".", 1)[0]
        parts = stem.split("-")
        return parts[0], parts[1] if len(parts) > 1 else ""
    return str(name), str(version)


# --- remote wheels -------------------------------------------------------------------------------


class RemoteWheel:
    """A wheel on an HTTP server, read by ranges (`RemoteZip`); nothing is fetched until it is needed."""

    def __init__(self, url: str, client: HttpClient, size: int | None = None,
                 max_member: int = DEFAULT_MAX_MEMBER) -> None:
        self.zip = RemoteZip(url, client, size, max_member)
        self._entries: dict[str, ZipEntry] | None = None

    def _directory(self) -> dict[str, ZipEntry]:
        if self._entries is None:
            self._entries = {e.name: e for e in self.zip.entries()}
        return self._entries

    def members(self) -> list[Member]:
        return [Member(e.name, e.file_size, e.compressed_size) for e in self._directory().values()
                if not e.name.endswith("/")]

    def inspect_member(self, member: Member) -> BinaryFacts:
        try:
            reader = self.zip.open_member(self._directory()[member.name])
        except MemberTooLarge as exc:
            return too_large(member, exc)
        return inspect_reader(reader)

    def requires(self, metadata_url: str | None) -> tuple[str, ...] | None:
        """Requires-Dist from the METADATA the index serves beside the wheel (PEP 658), else from the wheel's own,
        read by range: usually inside the tail already read for the directory, since it is written last."""
        if metadata_url is not None:
            resp = self.zip.client.get(metadata_url, max_body=_MAX_METADATA)
            if resp.status == 200:
                return requires_dist(resp.body)
        name = metadata_member(self._directory())
        if name is None:
            return None
        try:
            return requires_dist(self.zip.open_member(self._directory()[name]).data)
        except MemberTooLarge:
            return None


def inspect_remote_wheel(
    url: str,
    client: HttpClient,
    filename: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    policy: ReadPolicy = ReadPolicy(),
    cache: Cache | None = None,
    max_member: int = DEFAULT_MAX_MEMBER,
    known: Mapping[str, BinaryFacts] | None = None,
    requires: Callable[[WheelOutcome], bool] | None = None,
    metadata_url: str | None = None,
) -> WheelReport:
    """Inspect a remote wheel; members are cached by the wheel's sha256 (when the index gives one).
    `requires`: whether, given what the binaries say, its declared requirements are worth reading too (from
    `metadata_url` when the index serves them apart): with the directory cached, they cost a request or two.

    A wheel whose shared-object list and deciding members are all cached costs no request at all;
    `known` adds facts the caller already has (e.g. from an earlier sampled pass in the same run).
    RemoteError propagates: the caller turns it into one error item.
    """
    filename = filename or url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
    name, version = _name_version(filename)
    wheel = RemoteWheel(url, client, size, max_member)
    listing = cache.lookup_wheel(sha256) if cache is not None and sha256 else None
    if listing is not None:
        members = [Member(*m) for m in listing.members]
    else:
        members = [m for m in wheel.members() if is_shared_object_name(m.name)]
        if cache is not None and sha256:
            cache.store_wheel(sha256, WheelListing(wheel.zip.size or 0,
                                                   tuple((m.name, m.size, m.compressed_size) for m in members)))
    have = dict(known or {})
    if cache is not None and sha256:
        names = [m.name for m in candidates(name, members) if m.name not in have]
        have.update(cache.lookup_members(sha256, names))
    outcome = inspect_members(name, members, wheel.inspect_member, policy, have)
    if cache is not None and sha256:
        cache.store_members(sha256, {r.path: r.facts for r in outcome.members
                                     if r.path not in have and _cacheable(r.facts)})
    declared = None
    if requires is not None and requires(outcome):
        declared = cache.lookup_requires(sha256) if cache is not None and sha256 else None
        if declared is None:
            declared = wheel.requires(metadata_url)
            if declared is not None and cache is not None and sha256:
                cache.store_requires(sha256, declared)
    counters = wheel.zip.counters
    wheel_size = wheel.zip.size or (listing.size if listing else 0) or size or 0
    return WheelReport(filename, name, version, redact(url), outcome, counters.bytes_read, counters.requests,
                       wheel_size, sha256, requires=declared)
