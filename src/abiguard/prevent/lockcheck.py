"""`lock-check`: judge the wheels a lockfile would install on a target platform, without installing anything.

Each entry's wheel for the target is read remotely (range requests, cached by sha256) and the result is the
same report `check` gives for an installed environment, so the same renderers serve both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from abiguard.cache import Cache
from abiguard.model import (
    BinaryFinding,
    CheckReport,
    DistributionFinding,
    TargetEnvironment,
    Verdict,
    canonical_name,
)
from abiguard.rules import numpy as numpy_rule
from abiguard.sources.index import (
    IndexClient,
    PackageIndexError,
    load_index_config,
    releases,
    target_tags,
)
from abiguard.sources.lockfile import LockedPackage, LockedWheel, marker_environment, read_lockfile, select_entries
from abiguard.sources.remote import HttpClient, RemoteError
from abiguard.sources.wheel import ReadPolicy, WheelReport, inspect_remote_wheel


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
    from abiguard.sources.lockfile import LockfileError

    python_version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    platform = platform or default_platform()
    try:
        contents = read_lockfile(path)
        entries = select_entries(contents, marker_environment(python_version, platform))
        tags = target_tags(python_version, platform)
    except (LockfileError, PackageIndexError, ValueError) as exc:
        raise LockCheckError(str(exc)) from None
    errors = list(contents.errors)
    env = TargetEnvironment(
        executable=str(path), python_version=python_version, implementation="cpython", prefix=str(path.parent),
        site_packages=(), platform=platform, ext_suffixes=(), marker_env={},
    )
    numpy_version = next((e.version for e in entries if canonical_name(e.name) == "numpy"), None)
    judged = _version(numpy_version)
    cache = Cache.open(enabled=use_cache)
    http = HttpClient()
    index: IndexClient | None = None
    findings: list[DistributionFinding] = []
    bytes_read = bytes_total = 0
    try:
        for done, entry in enumerate(entries, 1):
            if progress is not None:
                progress(done, len(entries))
            if canonical_name(entry.name) == "numpy":
                continue
            try:
                wheel = _pick(entry.wheels, tags)
                if wheel is None and not entry.wheels:
                    if index is None:
                        config = load_index_config(index_url or (entry.source if entry.source else None))
                        index = IndexClient(config, http)
                    wheel = _from_index(index, entry, tags, python_version)
                if wheel is None:
                    errors.append(f"package {entry.name} {entry.version}: no wheel for Python {python_version} "
                                  f"on {platform} in the lockfile")
                    continue
                report = inspect_remote_wheel(wheel.url, http, wheel.filename, wheel.size, wheel.sha256,
                                              ReadPolicy(sample=None), cache if use_cache else None)
            except (RemoteError, PackageIndexError) as exc:
                errors.append(f"package {entry.name} {entry.version}: {exc}")
                continue
            bytes_read += report.bytes_read
            bytes_total += report.wheel_size
            finding = _judge(entry, report, judged)
            if finding is not None:
                findings.append(finding)
    finally:
        http.close()
        cache.close()
    findings.sort(key=lambda d: (-d.verdict.rank, d.name.lower()))
    return CheckReport(
        environment=env, numpy=str(judged) if judged else None, numpy_installed=numpy_version, hypothetical=False,
        distributions=tuple(findings), unowned=(), declared=(), bytes_read=bytes_read, bytes_total=bytes_total,
        errors=tuple(errors),
    )


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


def _from_index(index: IndexClient, entry: LockedPackage, tags: list[Tag], python_version: str) -> LockedWheel | None:
    """Pinned requirements name no wheel: ask the index for that exact release's wheel for the target."""
    files = index.files(entry.name)
    for rel in releases(files, tags, python_version, prereleases=True, yanked=True):
        if str(rel.version) == entry.version or rel.version == _version(entry.version):
            w = rel.wheel
            return LockedWheel(w.url, w.filename, w.sha256, w.size)
    raise PackageIndexError(f"{entry.name}=={entry.version} has no wheel for this target on the index")


def _judge(entry: LockedPackage, report: WheelReport, numpy: Version | None) -> DistributionFinding | None:
    members = report.outcome.members
    if not members and not report.outcome.unread:
        return None
    binaries = []
    for m in members:
        verdict, consequence = numpy_rule.judge(m.facts, numpy)
        binaries.append(BinaryFinding(m.path, m.module, m.facts, verdict, consequence))
    return DistributionFinding(entry.name, entry.version, Verdict.worst([b.verdict for b in binaries]),
                               tuple(binaries), None)
