"""`abiguard inspect`: facts for wheels, shared objects, directories and index releases.

Each command-line target becomes a typed spec (`classify`), each spec yields one or more result items, and
a failing target becomes one `ErrorItem` while the others go on. Remote wheels are read by range requests
(`sources.remote`) under the shared reading policy of `sources.wheel`; everything read is cached.

`first_compatible` finds the lowest release whose wheel for the target is compatible with a numpy
version, inspecting few releases: pre-releases and yanked ones are out; for numpy >= 2 so is every wheel
uploaded before NumPy 2's first pre-release (nothing could be built against it earlier); the rest is
binary-searched (compatibility is monotone in practice), reading samples of members, and the answer and
the release before it are then checked, the answer in full.

`last_compatible` finds the newest such release instead: what to go back to when the installed build needs a
newer numpy than the one to keep (h5py 3.14 declares `numpy>=1.21.2` but is built for NumPy >= 2.0). Floors
only rise from release to release, so it gallops down from the newest release to a compatible one, bisects
the gap above it, and reads the answer in full.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from abiguard.binary import inspect_path, is_shared_object_name
from abiguard.cache import Cache, FileKey
from abiguard.model import BinaryFacts, BuiltFor, Verdict, canonical_name
from abiguard.rules.declared import applicable
from abiguard.rules.numpy import NUMPY2, abi, judge
from abiguard.sources.index import (
    IndexClient,
    IndexUnreachable,
    PackageIndexError,
    Release,
    load_index_config,
    releases,
    resolve,
    target_tags,
)
from abiguard.sources.lockfile import marker_environment
from abiguard.sources.remote import DEFAULT_MAX_MEMBER, HttpClient, RemoteError, redact
from abiguard.sources.wheel import (
    ReadPolicy,
    WheelOutcome,
    WheelReport,
    combine,
    inspect_local_wheel,
    inspect_remote_wheel,
    is_numpy_own,
    module_name,
)

# NumPy 2.0.0rc1's upload date: the floor for "could have been built against NumPy 2". The index's own
# numpy listing is consulted at run time and wins when it shows an earlier 2.x upload (2.0.0b1 was
# earlier); some mirrors drop pre-releases, and their first 2.x upload (2.0.0 final) would be too late.
NUMPY2_FIRST_PRERELEASE = datetime(2024, 3, 30, tzinfo=timezone.utc)
SEARCH_SAMPLE = 3  # NumPy-2 members that must agree before a release is taken as compatible while searching
RELEASES_SAMPLE = 3  # the same for --all-releases


class InspectError(Exception):
    """A usage error that concerns all targets (e.g. an invalid --numpy); one line."""


@dataclass(frozen=True)
class InspectOptions:
    """What the `inspect` command line sets.

    `sample`: None picks the mode's default (read every candidate for single wheels; samples of 3 for
    --all-releases and while searching); 0 reads every candidate; K > 0 stops after K agreeing NumPy-2
    members (the result then says `sampled`).
    """

    python_version: str | None = None  # "3.11"; default: the running interpreter
    platform: str | None = None  # "manylinux_2_17_x86_64", "win_amd64", "macosx_11_0_arm64"
    all_releases: bool = False
    first_compatible: bool = False
    last_compatible: bool = False
    numpy: str | None = None  # judge against this numpy; --first-compatible defaults to "2"
    use_cache: bool = True
    cache_path: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    sample: int | None = None
    max_member: int = DEFAULT_MAX_MEMBER
    timeout: float = 30.0


# --- result items ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorItem:
    target: str
    message: str
    unreachable: bool = False  # the index or a file on it could not be read: no answer, not a negative one

    def to_json(self) -> dict[str, Any]:
        return {"kind": "error", "target": self.target, "message": self.message}


@dataclass(frozen=True)
class BinaryItem:
    """One local shared object."""

    target: str
    path: str
    module: str | None
    facts: BinaryFacts
    cached: bool = False
    verdict: Verdict | None = None
    consequence: str | None = None
    numpy: Version | None = None  # what `verdict` was judged against (--numpy)

    def to_json(self) -> dict[str, Any]:
        facts = self.facts.to_json()
        data: dict[str, Any] = {"kind": "binary", "target": self.target, "path": self.path, "module": self.module}
        data.update({k: facts[k] for k in ("built_for", "min_numpy", "producer", "evidence", "format", "reason")})
        data.update({"size": self.facts.size, "bytes_read": self.facts.bytes_read, "cached": self.cached})
        if self.verdict is not None:
            data.update({"verdict": self.verdict.value, "consequence": self.consequence})
        return data


@dataclass(frozen=True)
class DirectoryItem:
    target: str
    binaries: tuple[BinaryItem, ...]
    wheels: tuple[WheelItem, ...]
    errors: tuple[ErrorItem, ...] = ()
    numpy: Version | None = None  # what `verdict` is judged against (--numpy)

    @property
    def verdict(self) -> Verdict | None:
        """The worst of its files' verdicts; unknown when something in it could not be read."""
        if self.numpy is None:
            return None
        found = [b.verdict for b in self.binaries] + [w.verdict for w in self.wheels]
        return Verdict.worst([v for v in found if v is not None] + ([Verdict.UNKNOWN] if self.errors else []))

    @property
    def built_for(self) -> BuiltFor:
        """"unknown" when something in it could not be read: "none" would claim what was not seen."""
        unread = [BinaryFacts("unknown", BuiltFor.UNKNOWN)] if self.errors else []
        return combine([b.facts for b in self.binaries] + [_summary_facts(w) for w in self.wheels] + unread)[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "directory",
            "target": self.target,
            "built_for": self.built_for.value,
            **({"numpy": str(self.numpy), "verdict": self.verdict.value} if self.verdict is not None else {}),
            "binaries": [b.to_json() for b in self.binaries],
            "wheels": [w.to_json() for w in self.wheels],
            "errors": [e.to_json() for e in self.errors],
        }


@dataclass(frozen=True)
class WheelItem:
    """A wheel's report, judged against a numpy version when one was given."""

    target: str
    report: WheelReport
    numpy: Version | None = None
    cached_members: int = 0
    declared: str | None = None  # the numpy specifier its METADATA declares for the target ("": none); None: unread

    @property
    def verdict(self) -> Verdict | None:
        return None if self.numpy is None else outcome_verdict(self.report.outcome, self.numpy)

    @property
    def installable(self) -> bool | None:
        """Does its declared numpy requirement let `numpy` be installed beside it? None: not known."""
        if self.numpy is None or self.declared is None:
            return None
        return admits(SpecifierSet(self.declared), self.numpy)

    @property
    def compatible(self) -> bool | None:
        """True/False against `numpy`: its binaries accept it and its declared requirement admits it (pandas
        3.1.1 is built for NumPy >= 1.20 but requires numpy>=2.0.2); None when it cannot tell (unknown members)
        or nothing to judge."""
        if self.installable is False:
            return False
        verdict = self.verdict
        if verdict is None or verdict is Verdict.UNKNOWN:
            return None
        return verdict is Verdict.OK

    @property
    def numpy_requirement(self) -> str | None:
        return f"numpy{self.declared}" if self.declared else None

    def to_json(self) -> dict[str, Any]:
        data = self.report.to_json()
        data["target"] = self.target
        if self.numpy is not None:
            data["numpy"] = str(self.numpy)
            data["verdict"] = self.verdict.value if self.verdict else None
            data["compatible"] = self.compatible
            if self.declared is not None:
                data.update({"numpy_requirement": self.numpy_requirement, "installable": self.installable})
            for entry, member in zip(data["binaries"], self.report.outcome.members, strict=True):
                verdict, consequence = judge(member.facts, self.numpy)
                entry.update({"verdict": verdict.value, "consequence": consequence})
        return data


@dataclass(frozen=True)
class SearchItem:
    """The answer of --first-compatible (or --last-compatible) and the releases inspected to reach it (oldest
    first)."""

    target: str
    project: str
    numpy: Version
    found: str | None
    inspected: tuple[WheelItem, ...]
    candidates: int  # releases with a wheel for the target
    skipped_before_cutoff: int
    cutoff: datetime | None
    note: str | None = None
    newest: bool = False  # the newest compatible release was sought, not the first

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "last-compatible" if self.newest else "first-compatible",
            "target": self.target,
            "project": self.project,
            "numpy": str(self.numpy),
            "found": self.found,
            "releases_with_wheel": self.candidates,
            "skipped_before_cutoff": self.skipped_before_cutoff,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "note": self.note,
            "inspected": [w.to_json() for w in self.inspected],
        }


Item = ErrorItem | BinaryItem | DirectoryItem | WheelItem | SearchItem


@dataclass
class InspectReport:
    python_version: str
    platform: str | None
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_read: int = 0  # wheel and binary bytes (not index listings)
    requests: int = 0  # all HTTP requests, listings included

    @property
    def has_errors(self) -> bool:
        return any(isinstance(i, ErrorItem) for i in self.items) or any(
            isinstance(i, DirectoryItem) and i.errors for i in self.items
        )

    def to_json(self) -> dict[str, Any]:
        """The body of the JSON document (the CLI wraps it in the versioned envelope)."""
        return {
            "target": {"python_version": self.python_version, "platform": self.platform},
            "results": [i.to_json() for i in self.items],
            "notes": list(self.notes),
            "summary": {
                "results": len(self.items),
                "errors": sum(isinstance(i, ErrorItem) for i in self.items),
                "bytes_read": self.bytes_read,
                "requests": self.requests,
            },
        }


def outcome_verdict(outcome: WheelOutcome, numpy: Version) -> Verdict:
    """What a wheel's binaries say about `numpy`: the worst of its members' verdicts."""
    return Verdict.worst([judge(m.facts, numpy)[0] for m in outcome.members])


def admits(requirement: SpecifierSet, numpy: Version) -> bool:
    """Whether a declared numpy requirement lets `numpy` be installed. A version given as X or X.Y (`--numpy 2`)
    stands for its series, as the binaries are judged by it: admitted when some release of the series is, which
    is the series' start or a bound the requirement names (or the release after a `>` bound)."""
    if len(numpy.release) >= 3 or requirement.contains(numpy, prereleases=True):
        return requirement.contains(numpy, prereleases=True)
    end = Version(".".join(str(p) for p in (*numpy.release[:-1], numpy.release[-1] + 1)))
    for spec in requirement:
        try:
            bound = Version(spec.version.removesuffix(".*"))
        except InvalidVersion:
            continue
        major, minor, micro = (*bound.release, 0, 0)[:3]
        for candidate in (bound, Version(f"{major}.{minor}.{micro + 1}")):
            if numpy <= candidate < end and requirement.contains(candidate, prereleases=True):
                return True
    return False


def declared_numpy(requires: Sequence[str], marker_env: Mapping[str, str]) -> str:
    """The numpy specifier of the requirements that hold on the target, joined ("" when none bounds numpy)."""
    specs = [str(r.specifier) for r in applicable(requires, marker_env) if canonical_name(r.name) == "numpy"]
    return str(SpecifierSet(",".join(s for s in specs if s)))


def _summary_facts(item: WheelItem) -> BinaryFacts:
    out = item.report.outcome
    return BinaryFacts("wheel", out.built_for, out.min_numpy)


# --- targets --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    kind: str  # "wheel", "binary", "directory", "url", "requirement", "error"
    target: str
    requirement: Requirement | None = None
    message: str | None = None


_ARCHIVES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")  # sdists, as pip names them


def classify(target: str) -> _Spec:
    """What a command-line target names: a local file or directory, a wheel URL, or a requirement."""
    lower = target.lower()
    if os.path.isdir(target):
        return _Spec("directory", target)
    if os.path.isfile(target) and lower.endswith(_ARCHIVES):
        return _Spec("error", target, message=f"a source distribution or archive, not a wheel: nothing in it is "
                                              f"compiled yet; build a wheel (pip wheel --no-deps {target}) and "
                                              "inspect that")
    if os.path.isfile(target):
        return _Spec("wheel" if lower.endswith(".whl") else "binary", target)
    if os.path.exists(target):  # a fifo or a device: reading it could block or never end
        return _Spec("error", target, message=f"not a regular file or directory: {target}")
    if target.startswith(("http://", "https://")):
        return _Spec("url", target)
    if os.sep in target or lower.endswith((".whl", ".so", ".pyd", ".dylib", ".dll", *_ARCHIVES)):
        return _Spec("error", target, message=f"no such file or directory: {target}")
    try:
        return _Spec("requirement", target, Requirement(target))
    except InvalidRequirement:
        return _Spec("error", target, message=f"{target!r} is not a file, a directory, a wheel URL or a requirement")


class _Session:
    """Shared state of one `inspect` run: cache, lazily created HTTP and index clients, per-run memo."""

    def __init__(self, options: InspectOptions) -> None:
        self.options = options
        self.cache = Cache.open(options.cache_path, enabled=options.use_cache)
        self.python_version = options.python_version or _running_python()
        self.tags = target_tags(options.python_version, options.platform)
        if options.last_compatible and options.numpy is None:
            raise InspectError("--last-compatible needs --numpy VER: the newest release compatible with which numpy?")
        self.numpy = _parse_numpy(options.numpy or ("2" if options.first_compatible else None))
        self.marker_env = target_markers(self.python_version, options.platform)
        self._http: HttpClient | None = None
        self._index: IndexClient | None = None
        self.memo: dict[str, dict[str, BinaryFacts]] = {}  # sha256 -> member -> facts, for --no-cache runs
        self.bytes_read = 0

    @property
    def index(self) -> IndexClient:
        if self._index is None:
            config = load_index_config(self.options.index_url, self.options.extra_index_urls)
            self._http = self._http or HttpClient(timeout=self.options.timeout, cafile=config.cafile)
            self._index = IndexClient(config, self._http)
        return self._index

    @property
    def http(self) -> HttpClient:
        if self._http is None:  # a wheel URL target before any index use: pip's CA bundle if it set one
            cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
            self._http = HttpClient(timeout=self.options.timeout, cafile=cafile)
        return self._http

    def notes(self) -> list[str]:
        """Skipped indexes, index errors that others made up for, cache warnings: each once."""
        found = list(self._index.notes) if self._index is not None else []
        return list(dict.fromkeys([*found, *self.cache.warnings]))

    @property
    def requests(self) -> int:
        return self._http.counters.requests if self._http else 0

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.cache.close()

    def policy(self, default: int | None) -> ReadPolicy:
        sample = self.options.sample
        if sample is None:
            sample = default
        return ReadPolicy(sample=sample or None)

    def remote(self, url: str, filename: str | None, size: int | None, sha256: str | None,
               policy: ReadPolicy, target: str, extra: dict[str, Any] | None = None,
               metadata_url: str | None = None) -> WheelItem:
        known = self.memo.get(sha256 or "", {})
        report = inspect_remote_wheel(url, self.http, filename, size, sha256, policy, self.cache,
                                      self.options.max_member, known, self.requires, metadata_url)
        if sha256:
            self.memo.setdefault(sha256, {}).update({m.path: m.facts for m in report.outcome.members})
        if extra:
            report = replace(report, extra={**report.extra, **extra})
        return self.item(target, report)

    def requires(self, outcome: WheelOutcome) -> bool:
        """Its declared requirements matter only when its binaries may do with --numpy: otherwise it is not
        compatible whatever it declares."""
        return self.numpy is not None and outcome_verdict(outcome, self.numpy) in (Verdict.OK, Verdict.UNKNOWN)

    def item(self, target: str, report: WheelReport) -> WheelItem:
        """A wheel's report, judged against --numpy by its binaries and by what it declares."""
        self.bytes_read += report.bytes_read
        cached = sum(m.cached for m in report.outcome.members)
        declared = None if report.requires is None else declared_numpy(report.requires, self.marker_env)
        return WheelItem(target, report, self.numpy, cached, declared)

    def release(self, release: Release, policy: ReadPolicy, target: str) -> WheelItem:
        wheel = release.wheel
        extra = {
            "upload_time": wheel.upload_time.isoformat() if wheel.upload_time else None,
            "yanked": wheel.yanked,
            "requires_python": wheel.requires_python,
            "index": redact(wheel.index),
        }
        metadata = wheel.url.split("#", 1)[0] + ".metadata" if wheel.metadata else None
        return self.remote(wheel.url, wheel.filename, wheel.size, wheel.sha256, policy, target, extra, metadata)


def target_markers(python_version: str, platform: str | None) -> dict[str, str]:
    """The marker environment requirements are evaluated in: the target platform's, else this machine's, with
    the target Python either way."""
    if platform:
        try:
            return marker_environment(python_version, platform)
        except ValueError:  # a system or machine markers are not worked out for: this machine's, below
            pass
    env: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    if python_version != env["python_version"]:
        env.update({"python_version": python_version, "python_full_version": f"{python_version}.0"})
    return env


def _running_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _parse_numpy(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        raise InspectError(f"invalid numpy version {text!r}; expected something like 2 or 1.26") from None


def inspect_targets(
    targets: Sequence[str],
    options: InspectOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    """Inspect each target; per-target failures become ErrorItems. Raises InspectError for bad options."""
    options = options or InspectOptions()
    try:
        session = _Session(options)
    except PackageIndexError as exc:  # an invalid --python-version
        raise InspectError(str(exc)) from None
    report = InspectReport(session.python_version, options.platform)
    try:
        for done, target in enumerate(targets, 1):
            report.items.extend(_inspect_one(session, classify(target)))
            if progress is not None:
                progress(done, len(targets))
    finally:
        session.close()
    report.notes.extend(session.notes())
    report.bytes_read = session.bytes_read
    report.requests = session.requests
    return report


def _inspect_one(session: _Session, spec: _Spec) -> list[Item]:
    try:
        if spec.kind == "error":
            return [ErrorItem(spec.target, spec.message or "invalid target")]
        opts = session.options
        release_modes = opts.first_compatible or opts.last_compatible or opts.all_releases
        if release_modes and spec.kind != "requirement":  # a file has one release: silently ignoring misleads
            return [ErrorItem(spec.target, "--first-compatible, --last-compatible and --all-releases search a "
                                           "project's releases on the index: give a project name, not a file")]
        if spec.kind == "directory":
            return [_directory(session, Path(spec.target))]
        if spec.kind == "wheel":
            return [_local_wheel(session, Path(spec.target), spec.target)]
        if spec.kind == "binary":
            path = Path(spec.target)
            items, errors = _binaries(session, [(path, path.name)], spec.target)
            return [*items, *errors]
        if spec.kind == "url":
            return [session.remote(spec.target, None, None, None, session.policy(None), redact(spec.target))]
        assert spec.requirement is not None
        return _requirement(session, spec.requirement, spec.target)
    except (PackageIndexError, RemoteError, InspectError) as exc:
        return [ErrorItem(redact(spec.target), str(exc), isinstance(exc, (IndexUnreachable, RemoteError)))]
    except zipfile.BadZipFile as exc:
        return [ErrorItem(spec.target, f"not a readable wheel: {exc}")]
    except OSError as exc:
        return [ErrorItem(spec.target, f"cannot read {exc.filename or spec.target}: {exc.strerror or exc}")]


# --- local targets ------------------------------------------------------------------------------------


def _local_wheel(session: _Session, path: Path, target: str) -> WheelItem:
    cache = session.cache if session.cache.enabled else None
    report = inspect_local_wheel(path, session.policy(None), cache, session.options.max_member, session.requires)
    return session.item(target, report)


def _binaries(session: _Session, paths: list[tuple[Path, str]], target: str) -> tuple[list[BinaryItem],
                                                                                     list[ErrorItem]]:
    """Facts for local shared objects (path, path relative to the scanned root): one batched cache lookup,
    one batched store."""
    keys: dict[Path, FileKey] = {}
    errors: list[ErrorItem] = []
    for path, _ in paths:
        try:
            keys[path] = FileKey.from_path(path)
        except OSError as exc:
            errors.append(ErrorItem(str(path), f"cannot read: {exc.strerror or exc}"))
    hits = session.cache.lookup_files(keys.values())
    fresh: dict[FileKey, BinaryFacts] = {}
    items: list[BinaryItem] = []
    for path, rel in paths:
        key = keys.get(path)
        if key is None:
            continue
        facts = hits.get(key)
        cached = facts is not None
        if facts is None:
            facts = fresh[key] = inspect_path(path, numpy_itself=is_numpy_own("", rel))
            session.bytes_read += facts.bytes_read
        verdict, consequence = judge(facts, session.numpy) if session.numpy is not None else (None, None)
        items.append(BinaryItem(target, str(path), module_name(rel), facts, cached, verdict, consequence,
                                session.numpy))
    session.cache.store_files({k: f for k, f in fresh.items() if not (f.reason or "").startswith("cannot")})
    return items, errors


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _directory(session: _Session, root: Path) -> DirectoryItem:
    files = [p for p in _walk(root) if p.is_file() and not p.is_symlink()]
    shared = [(p, p.relative_to(root).as_posix()) for p in files if is_shared_object_name(p.name)]
    items, errors = _binaries(session, shared, str(root))
    wheels: list[WheelItem] = []
    for p in files:
        if p.name.lower().endswith(".whl"):
            try:
                wheels.append(_local_wheel(session, p, str(p)))
            except (zipfile.BadZipFile, OSError) as exc:
                errors.append(ErrorItem(str(p), f"not a readable wheel: {exc}"))
    return DirectoryItem(str(root), tuple(items), tuple(wheels), tuple(errors), session.numpy)


# --- index targets ------------------------------------------------------------------------------------


def _target_name(session: _Session) -> str:
    return f"Python {session.python_version} on {session.options.platform or 'this platform'}"


def _requirement(session: _Session, req: Requirement, target: str) -> list[Item]:
    if req.marker is not None and not req.marker.evaluate({**session.marker_env, "extra": ""}):
        raise PackageIndexError(f"its marker ({req.marker}) excludes {_target_name(session)}: an installer would "
                                "not install it there, so there is nothing to inspect")
    files = session.index.files(req.name)
    if session.options.first_compatible or session.options.last_compatible:
        return [_compatible_release(session, req, target, newest=session.options.last_compatible)]
    if session.options.all_releases:
        rels = [r for r in releases(files, session.tags, session.python_version)
                if req.specifier.contains(r.version, prereleases=True)]
        if not rels:
            raise PackageIndexError(f"no release of {target} has a wheel for {_target_name(session)}")
        policy = session.policy(RELEASES_SAMPLE)
        out: list[Item] = []
        for rel in rels:
            try:
                out.append(session.release(rel, policy, f"{req.name}=={rel.version}"))
            except RemoteError as exc:
                out.append(ErrorItem(f"{req.name}=={rel.version}", str(exc)))
        return out
    release = resolve(files, str(req), session.tags, session.python_version, _target_name(session))
    return [session.release(release, session.policy(None), target)]


def numpy2_cutoff(index: IndexClient) -> tuple[datetime, str]:
    """The earliest upload that could be built against NumPy 2, and where that date came from."""
    try:
        files = index.files("numpy")
    except (PackageIndexError, RemoteError):
        return NUMPY2_FIRST_PRERELEASE, "numpy's listing unavailable: used NumPy 2.0.0rc1's date"
    first = Version("2.0.0.dev0")
    times = [f.upload_time for f in files if f.version >= first and f.upload_time is not None]
    if times and min(times) < NUMPY2_FIRST_PRERELEASE:
        return min(times), "first NumPy 2 upload on the index"
    if times:
        return NUMPY2_FIRST_PRERELEASE, (
            f"the index's first NumPy 2 upload is {min(times).date()} (its pre-releases are missing);"
            " used NumPy 2.0.0rc1's date"
        )
    return NUMPY2_FIRST_PRERELEASE, "no NumPy 2 on the index: used NumPy 2.0.0rc1's date"


def _compatible_release(session: _Session, req: Requirement, target: str, newest: bool) -> SearchItem:
    numpy = session.numpy
    assert numpy is not None
    files = session.index.files(req.name)
    rels = [r for r in releases(files, session.tags, session.python_version)
            if req.specifier.contains(r.version, prereleases=True)]
    if not rels:
        raise PackageIndexError(f"no release of {target} has a wheel for {_target_name(session)}")
    cutoff, why = (None, None)
    start = 0
    if abi(numpy) >= NUMPY2:
        cutoff, why = numpy2_cutoff(session.index)
        start = next((i for i, r in enumerate(rels) if r.wheel.upload_time is None
                      or r.wheel.upload_time >= cutoff), len(rels))
    search = _Search(session, rels, req.name)
    find = search.highest if newest else search.lowest
    found = find(start, len(rels)) if start < len(rels) else None
    if found is None and start > 0:  # none from the cutoff on: one before it that uses no NumPy C-API is
        found = find(0, start)  # compatible too, and only reading it tells
    project = canonical_name(req.name)
    note = why
    if found is None:
        note = "; ".join(x for x in (why, f"no release compatible with numpy {numpy}") if x)
    elif found < start:  # searched below the cutoff: its releases were not all skipped
        note = f"{rels[found].version} predates NumPy 2 and, as reading it showed, uses no NumPy C-API"
    skipped = 0 if any(i < start for i in search.items) else start  # unless the search went below the cutoff
    return SearchItem(target, project, numpy, str(rels[found].version) if found is not None else None,
                      tuple(search.inspected()), len(rels), skipped, cutoff, note, newest)


class _Search:
    """Search for the lowest (or the newest) compatible release, then confirmation of the answer in full."""

    def __init__(self, session: _Session, rels: list[Release], name: str) -> None:
        self.session = session
        self.rels = rels
        self.name = name
        self.items: dict[int, WheelItem] = {}
        self.full: set[int] = set()

    def inspected(self) -> list[WheelItem]:
        return [self.items[i] for i in sorted(self.items)]

    def ok(self, i: int, full: bool = False) -> bool:
        if i not in self.items or (full and i not in self.full):
            policy = ReadPolicy(sample=None) if full else self.session.policy(SEARCH_SAMPLE)
            self.items[i] = self.session.release(self.rels[i], policy, f"{self.name}=={self.rels[i].version}")
            if full or not self.items[i].report.outcome.sampled:
                self.full.add(i)
        return self.items[i].compatible is True

    def lowest(self, start: int, end: int) -> int | None:
        """The lowest compatible release of `start` up to `end` (excluded). When the newest one needs a newer
        numpy than the one asked about (a floor above it: h5py 3.14 and numpy 1.26), the search runs from the
        newest compatible release down instead."""
        top = end - 1
        if not self.ok(top):
            newest = self.highest(start, end)
            if newest is None:
                return None
            top = newest
        lo, hi = start, top
        for _ in range(len(self.rels)):  # each round moves the answer; bounded for safety
            while lo < hi:
                mid = (lo + hi) // 2
                if self.ok(mid):
                    hi = mid
                else:
                    lo = mid + 1
            found = hi
            if not self.ok(found, full=True):  # the sample missed a NumPy-1 member: look higher
                if found == top:
                    return None
                lo, hi = found + 1, top
                continue
            if found > 0 and self.ok(found - 1):  # not monotone after all: look lower, below the cutoff too
                lo, hi = (start if found > start else 0), found - 1  # (a release without NumPy's C-API)
                continue
            return found
        return None

    def highest(self, start: int, end: int) -> int | None:
        """The newest compatible release of `start` up to `end` (excluded), taken as compatible up to some
        release and not after it. A sampled "no" is certain (an incompatible member was read), so only the
        answer is read in full."""
        bad = end  # the lowest release known incompatible
        while bad > start:
            i, step = bad - 1, 1
            while not self.ok(i):
                bad = i
                if i == start:
                    return None
                i, step = max(i - step, start), step * 2
            good = i
            while bad - good > 1:
                mid = (good + bad) // 2
                if self.ok(mid):
                    good = mid
                else:
                    bad = mid
            if self.ok(good, full=True):
                return good
            bad = good  # the sample missed an incompatible member: look lower
        return None
