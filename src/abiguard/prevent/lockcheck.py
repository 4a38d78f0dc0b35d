"""`lock-check`: judge the wheels a lockfile would install on a target platform, without installing anything.

Each entry's wheel for the target is read remotely (range requests, cached by sha256), or from disk when the
lockfile names a local one, and the result is the same report `check` gives for an installed environment, so
the same renderers serve both. What the installer builds (from source, from an sdist) has no wheel to read: a note.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from abiguard.cache import Cache
from abiguard.model import (
    BinaryFinding,
    BuiltFor,
    CheckReport,
    DeclaredProblem,
    DistributionFinding,
    TargetEnvironment,
    Verdict,
    canonical_name,
)
from abiguard.report.markup import counted
from abiguard.rules import numpy as numpy_rule
from abiguard.rules.declared import check_declared
from abiguard.sources.environment import InstalledDistribution
from abiguard.sources.index import (
    IndexClient,
    IndexFile,
    IndexUnreachable,
    PackageIndexError,
    ProjectNotFound,
    best_wheel,
    find_links_files,
    load_index_config,
    target_tags,
)
from abiguard.sources.lockfile import (
    LockedPackage,
    LockedWheel,
    LockfileContents,
    built_note,
    marker_environment,
    read_lockfile,
    select_entries,
)
from abiguard.sources.remote import HttpClient, RemoteError
from abiguard.sources.wheel import (
    ReadPolicy,
    WheelOutcome,
    WheelReport,
    inspect_local_wheel,
    inspect_remote_wheel,
    unreadable,
)


class LockCheckError(Exception):
    """The lockfile or the target cannot be used at all (one line)."""


def default_platform() -> str:
    """This machine's most specific wheel platform tag, e.g. manylinux_2_36_x86_64, win_amd64, macosx_14_0_arm64.

    packaging may list the plain `linux_<arch>` tag first on Linux; taken as the target it would accept no
    manylinux or musllinux wheel (nothing on PyPI), so the first tag that is not plain `linux_*` wins."""
    from packaging.tags import platform_tags

    tags = list(platform_tags())
    return next((t for t in tags if not t.startswith("linux_")), tags[0])


def lock_check(
    path: Path,
    *,
    python_version: str | None = None,
    platform: str | None = None,
    use_cache: bool = True,
    index_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Judge each entry's wheel for the target; what is built at install (from source, or an sdist) becomes a
    note rather than an error, since no wheel exists to read and the lock is not wrong to list it."""
    from abiguard.sources.lockfile import LockfileError

    python_version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    platform = platform or default_platform()
    try:
        contents = read_lockfile(path)
        markers = marker_environment(python_version, platform)
        entries = select_entries(contents, markers)
        tags = target_tags(python_version, platform)
    except (LockfileError, PackageIndexError, ValueError) as exc:
        raise LockCheckError(str(exc)) from None
    errors = list(contents.errors)
    notes = list(contents.notes)
    entries, doubled = _one_per_name(entries, errors)
    env = TargetEnvironment(
        executable=str(path), python_version=python_version, implementation="cpython", prefix=str(path.parent),
        site_packages=(), platform=platform, ext_suffixes=(), marker_env={},
    )
    numpy_version = next((e.version for e in entries if canonical_name(e.name) == "numpy"), None)
    constrained = None if numpy_version or "numpy" in doubled else contents.constraints.get("numpy")
    numpy_version = numpy_version or constrained
    judged = _version(numpy_version)
    unpinned = numpy_version is None and contents.kind == "requirements" and "numpy" not in doubled
    if "numpy" in doubled:
        without_numpy = (Verdict.UNKNOWN, "uses NumPy's C-API, but numpy is pinned to more than one version: "
                                          "cannot be judged")
    elif unpinned:  # the installer will choose one: not a complete lock
        without_numpy = (Verdict.UNKNOWN, "uses NumPy's C-API, but numpy is not pinned to one version in the file: "
                                          "cannot be judged")
    else:
        without_numpy = (Verdict.BROKEN, "uses NumPy's C-API but numpy is not in the lockfile: fails at import")
    target = f"Python {python_version} on {platform}"
    cache = Cache.open(enabled=use_cache)
    http = HttpClient()
    finder = _Finder(http, index_url, contents, tags, python_version, target)
    findings: list[DistributionFinding] = []
    declared: list[DeclaredProblem] = []
    complete = contents.kind != "requirements" and "numpy" not in doubled  # numpy's absence is then a fact
    bytes_read = bytes_total = 0
    checked = 0  # wheels read: numpy's own is not, and what is built at install cannot be
    try:
        for done, entry in enumerate(entries, 1):
            if progress is not None:
                progress(done, len(entries))
            who = f"package {entry.name} {entry.version}".rstrip()
            if entry.origin is not None and not entry.wheels:
                notes.append(built_note(entry.name, entry.version, entry.origin))
                continue
            wheel: LockedWheel | None = None
            try:
                wheel = _pick(entry.wheels, tags)
                if wheel is None and not entry.wheels and not entry.sdist_url:  # the file names no file
                    wheel = finder.wheel(entry)
                if wheel is None:
                    if entry.binary_only:
                        errors.append(f"{who}: sdist only for {target}, and --only-binary forbids building it: "
                                      "the installer fails")
                    elif entry.sdist_url or not entry.wheels:
                        notes.append(f"{who}: sdist only for {target}, built at install: its binaries cannot be "
                                     "checked")
                    else:
                        errors.append(f"{who}: no wheel for {target} in the lockfile")
                    continue
                if canonical_name(entry.name) == "numpy":
                    continue  # it exists for the target (a pin to no release is an error above); its own
                    # binaries are numpy itself, judged by no rule
                report = _inspect(wheel, http, cache if use_cache else None)
            except _NotAsked:
                continue
            except (RemoteError, PackageIndexError) as exc:
                errors.append(f"{who}: {exc}")
                continue
            except (OSError, zipfile.BadZipFile) as exc:
                errors.append(f"{who}: cannot read {wheel.filename if wheel else 'its wheel'}: {exc}")
                continue
            errors += [f"{who}: {wheel.filename}: {m.path}: {m.facts.reason}" for m in unreadable(report.outcome)]
            checked += 1
            bytes_read += report.bytes_read
            bytes_total += report.wheel_size
            requirement, problem = _declared(entry, report, markers, numpy_version, complete)
            declared += [problem] if problem is not None else []
            finding = _judge(entry, report, judged, without_numpy, requirement)
            if finding is not None:
                findings.append(finding)
    finally:
        http.close()
        cache.close()
    errors += finder.errors()
    notes += finder.notes()
    unjudged = [d.name for d in findings if any(b.facts.built_for in _USES_NUMPY for b in d.binaries)]
    if constrained and unjudged:
        notes.append(f"numpy is not pinned in {path}; its -c constraint numpy=={constrained} is the numpy the "
                     f"installer takes when a requirement pulls it in, so {', '.join(unjudged)} is judged against it")
    if unpinned and unjudged:
        errors.append(f"numpy is not pinned in {path}, so the installer picks one: {', '.join(unjudged)} "
                      "cannot be judged until numpy is pinned (numpy==VERSION)")
    findings.sort(key=lambda d: (-d.verdict.rank, d.name.lower()))
    return CheckReport(
        environment=env, numpy=str(judged) if judged else None, numpy_installed=numpy_version, hypothetical=False,
        distributions=tuple(findings), unowned=(), declared=tuple(declared), bytes_read=bytes_read,
        bytes_total=bytes_total,
        errors=tuple(errors), notes=tuple(notes), checked=checked,
    )


def _one_per_name(entries: list[LockedPackage], errors: list[str]) -> tuple[list[LockedPackage], set[str]]:
    """One entry per project, as an installer installs: an identical repeat (a pin also in a `-r` include) is
    dropped; a project pinned to two versions is reported and left out, since which one wins is arbitrary
    (pip and uv refuse such a file). Returns the entries and the canonical names pinned twice."""
    by_name: dict[str, list[LockedPackage]] = {}
    for entry in entries:
        by_name.setdefault(canonical_name(entry.name), []).append(entry)
    doubled: set[str] = set()
    for name, group in by_name.items():
        versions = sorted({str(_version(e.version) or e.version) for e in group})
        if len(versions) > 1:
            doubled.add(name)
            errors.append(f"{group[0].name} is pinned to more than one version for this target ({', '.join(versions)}):"
                          " an installer refuses such a file, so which one it means cannot be checked")
    return [group[0] for name, group in by_name.items() if name not in doubled], doubled


def _inspect(wheel: LockedWheel, http: HttpClient, cache: Cache | None) -> WheelReport:
    """A wheel the lockfile names by path (a `file:` URL) is read from disk, as `abiguard inspect` reads one.
    Its declared requirements are read too, whatever its binaries say: a pin can break them either way."""
    if wheel.url.startswith("file:"):
        return inspect_local_wheel(url2pathname(urlsplit(wheel.url).path), ReadPolicy(sample=None), cache,
                                   requires=_always)
    return inspect_remote_wheel(wheel.url, http, wheel.filename, wheel.size, wheel.sha256, ReadPolicy(sample=None),
                                cache, requires=_always)


def _always(_outcome: WheelOutcome) -> bool:
    return True


def _declared(entry: LockedPackage, report: WheelReport, markers: dict[str, str], numpy: str | None,
              complete: bool) -> tuple[str | None, DeclaredProblem | None]:
    """The entry's declared numpy requirement for the target, and how the lock breaks it, as `check` finds it in
    an environment: the numpy pinned does not satisfy it, or a complete lock has no numpy (a requirements file
    leaves that choice to the installer). (None, None) when it declares none or its METADATA cannot be read."""
    if report.requires is None:
        return None, None
    dist = InstalledDistribution(entry.name, entry.version, "", "", list(report.requires))
    found = check_declared([dist], markers, {"numpy": numpy} if numpy else {})
    requirement = found.numpy_requirements.get(dist.key)
    if requirement is None:
        return None, None
    if numpy:  # only numpy has a version here, so a conflict is numpy's (the others are "missing": not asked)
        return requirement, next((p for p in found.problems if p.problem == "conflict"), None)
    return requirement, DeclaredProblem(entry.name, entry.version, requirement, "missing", None) if complete else None


def _hash_allowed(entry: LockedPackage, sha256: str | None) -> bool:
    """With `--hash` options, only the files they allow can be installed (pip checks the same); without them,
    or without the index's digest to compare, any file can."""
    allowed = [h.partition(":")[2].lower() for h in entry.hashes if h.lower().startswith("sha256:")]
    return not allowed or sha256 is None or sha256.lower() in allowed


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def _pick(wheels: list[LockedWheel], tags: list[Tag]) -> LockedWheel | None:
    """The wheel an installer would choose: the one whose best tag ranks highest for the target."""
    rank = {t: i for i, t in enumerate(tags)}
    best: tuple[int, LockedWheel] | None = None
    for w in wheels:
        try:
            _n, _v, _b, wtags = parse_wheel_filename(w.filename)
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in wtags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, w)
    return best[1] if best else None


class _NotAsked(Exception):
    """The entry needs the index, which was found unreachable: it is counted in one error, not given its own."""


class _Finder:
    """The wheel of an entry that names no file: from the file's `--find-links` locations (read once) and the
    index (opened on first use, and reused), or from the locations alone with `--no-index`.

    Once no index answers at all (connection refused, no such host), it is not asked again: each attempt would
    cost its retries and repeat the same error, so the entries that needed it are listed in one error."""

    def __init__(self, http: HttpClient, index_url: str | None, contents: LockfileContents, tags: list[Tag],
                 python_version: str, target: str) -> None:
        self.http = http
        self.index_url = index_url
        self.contents = contents  # its own --index-url, --extra-index-url, --find-links and --no-index
        self.tags = tags
        self.python_version = python_version
        self.target = target
        self._index: IndexClient | None = None
        self._linked: list[IndexFile] | None = None
        self.link_errors: list[str] = []
        self.unreachable: str | None = None
        self.not_asked: list[str] = []

    def wheel(self, entry: LockedPackage) -> LockedWheel | None:
        linked = [f for f in self._links() if f.name == canonical_name(entry.name) and _same(f.version, entry)]
        if self.contents.no_index:
            if not linked:
                where = ", ".join(self.contents.find_links) or "none given"
                raise PackageIndexError(f"no file of it in the --find-links locations ({where}), and --no-index "
                                        "keeps the installer off the index")
            return _choose(linked, entry, self.tags, self.python_version, self.target)
        if self.unreachable is not None and not linked:
            self.not_asked.append(entry.name)
            raise _NotAsked
        return _choose(linked + self._index_files(entry, bool(linked)), entry, self.tags, self.python_version,
                       self.target)

    def _index_files(self, entry: LockedPackage, optional: bool) -> list[IndexFile]:
        """The release's files on the index; none, when the index cannot be reached but the entry has files
        from --find-links (pip skips a location it cannot fetch)."""
        if self.unreachable is not None:
            return []
        if self._index is None:
            primary = self.index_url or entry.source or None
            extras = [u for u in self.contents.index_urls if u != primary]
            self._index = IndexClient(load_index_config(primary, extras), self.http)
        try:
            return [f for f in self._index.files(entry.name) if _same(f.version, entry)]
        except IndexUnreachable as exc:
            self.unreachable = str(exc)
            if optional:
                return []
            self.not_asked.append(entry.name)
            raise _NotAsked from None
        except ProjectNotFound:
            if optional:
                return []
            raise

    def _links(self) -> list[IndexFile]:
        if self._linked is None:
            self._linked = []
            for location in self.contents.find_links:
                try:
                    self._linked += find_links_files(location, self.http)
                except PackageIndexError as exc:
                    self.link_errors.append(str(exc))
        return self._linked

    def notes(self) -> list[str]:
        """An index of several that could not be read: the others answered, so it is a note, not an error."""
        return list(self._index.failed.values()) if self._index is not None else []

    def errors(self) -> list[str]:
        found = list(self.link_errors)
        if self.unreachable is not None and self.not_asked:
            names = ", ".join(self.not_asked[:5]) + (", ..." if len(self.not_asked) > 5 else "")
            found.append(f"the package index cannot be reached ({self.unreachable}): "
                         f"{counted(len(self.not_asked), 'entry', 'entries')} that need it not checked ({names})")
        return found


def _same(version: Version, entry: LockedPackage) -> bool:
    return version == _version(entry.version) or str(version) == entry.version


def _choose(release: list[IndexFile], entry: LockedPackage, tags: list[Tag], python_version: str,
            target: str) -> LockedWheel | None:
    """The wheel of a pinned release an installer takes, among the files the entry's `--hash` options allow:
    pip drops the others before it chooses, so a better-tagged wheel with another digest (a build-number
    rebuild) is not the one installed.

    None when the release has only an sdist for the target (the installer builds it); an error when it has
    neither, since then the pin cannot be installed at all."""
    if not release:
        raise PackageIndexError(f"no release of {entry.name} matches =={entry.version}")
    files = [f for f in release if f.python_ok(python_version)]
    allowed = [f for f in files if _hash_allowed(entry, f.sha256)]
    w = best_wheel(allowed, tags)
    if w is not None:
        return LockedWheel(w.url, w.filename, w.sha256, w.size)
    if any(not f.is_wheel for f in allowed):
        return None
    refused = best_wheel(files, tags)
    if refused is not None:
        raise PackageIndexError(f"its wheel for {target} ({refused.filename}) matches none of the file's hashes: "
                                "an installer requiring them refuses it")
    raise PackageIndexError(f"{entry.name}=={entry.version} has no wheel for this target")


_USES_NUMPY = (BuiltFor.NUMPY1, BuiltFor.NUMPY2)


def _judge(entry: LockedPackage, report: WheelReport, numpy: Version | None,
           without_numpy: tuple[Verdict, str], requirement: str | None) -> DistributionFinding | None:
    """The entry's finding; `without_numpy` is the verdict for a binary using NumPy when the lock gives no numpy
    version, which depends on the kind of file (a requirements file leaves the choice to the installer);
    `requirement`: its declared numpy requirement."""
    members = report.outcome.members
    if not members and not report.outcome.unread:
        return None
    binaries = []
    for m in members:
        uses_numpy = m.facts.built_for in _USES_NUMPY
        verdict, consequence = without_numpy if numpy is None and uses_numpy else numpy_rule.judge(m.facts, numpy)
        binaries.append(BinaryFinding(m.path, m.module, m.facts, verdict, consequence))
    return DistributionFinding(entry.name, entry.version, Verdict.worst([b.verdict for b in binaries]),
                               tuple(binaries), requirement, report.outcome.unread)
