"""`check`: every shared object of an environment, inspected statically and judged against its numpy."""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import astuple, dataclass, replace

from packaging.version import InvalidVersion, Version

from abiguard import stamps
from abiguard.model import (
    BinaryFinding,
    CheckReport,
    Declared,
    DeclaredProblem,
    DistributionFinding,
    TargetEnvironment,
    Verdict,
    canonical_name,
)
from abiguard.paths import cache_dir
from abiguard.rules import numpy as numpy_rule
from abiguard.scan import Progress, Scanner
from abiguard.sources import environment as envsource


@dataclass(frozen=True)
class _Binary:
    dist: envsource.InstalledDistribution | None
    site_dir: str
    relpath: str
    fullpath: str


class CheckError(Exception):
    """A user-facing failure of the whole check (bad --python, bad --numpy)."""


def parse_numpy(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise CheckError(f"--numpy {text!r} is not a version (try 2, 2.1 or 1.26.4)") from None


def check(
    python: str | None = None,
    numpy: str | None = None,
    *,
    use_cache: bool = True,
    progress: Progress | None = None,
    thorough: bool = False,
) -> CheckReport:
    """Scan the environment of `python`; `numpy` asks "what if this numpy were installed"; `thorough` looks
    for unowned shared objects in every directory of site-packages (see `unowned_shared_objects`)."""
    try:
        if use_cache:
            env = envsource.probe(python, memo_dir=cache_dir())
        else:  # every binary will be read and every requirement parsed
            env = envsource.probe(python, meanwhile=_prepare)
    except envsource.EnvironmentError_ as exc:
        raise CheckError(str(exc)) from None
    hypothetical = parse_numpy(numpy) if numpy is not None else None
    return check_environment(env, hypothetical, use_cache=use_cache, progress=progress, thorough=thorough)


def _prepare() -> None:
    """What a check without caches will need, imported while the target interpreter starts (30 ms that would
    otherwise be spent waiting): the worker pool and packaging's requirement parser."""
    import concurrent.futures.process  # noqa: F401

    import abiguard.rules.declared  # noqa: F401


Dists = list[envsource.InstalledDistribution]
Read = tuple[Dists, envsource.Memo, list[str], Dists]


def read_distributions(env: TargetEnvironment, use_cache: bool = True) -> Read:
    """The installed distributions, the listing memo the rest of the scan must share (it is saved once), the
    dist-infos that could not be read (the report's errors) and the distributions others hide."""
    memo = _memo(env, use_cache)
    problems: list[str] = []
    hidden: Dists = []
    return list(envsource.iter_distributions(env, memo, problems, hidden)), memo, problems, hidden


def check_environment(
    env: TargetEnvironment,
    hypothetical: Version | None = None,
    *,
    use_cache: bool = True,
    progress: Progress | None = None,
    read: Read | None = None,
    thorough: bool = False,
) -> CheckReport:
    """`read`: the distributions from `read_distributions`, when the caller needs them too."""
    stamps.within(env.site_packages)
    memo = read[1] if read else _memo(env, use_cache)
    problems = read[2] if read else []
    hidden = read[3] if read else []
    dists: Dists = []
    owned: list[_Binary] = []
    seen: set[str] = set()
    versions: dict[str, str] = {}
    with Scanner(use_cache=use_cache, progress=progress) as scanner:
        # Each distribution's binaries go to the scanner as soon as its RECORD is read: the workers start
        # reading them while the rest of the RECORDs are read, the unowned ones looked for and the
        # declared requirements checked.
        for d in read[0] if read else envsource.iter_distributions(env, memo, problems, hidden):
            dists.append(d)
            versions[d.key] = d.version
            mine = _owned(d, seen)
            owned += mine
            scanner.add([b.fullpath for b in mine], numpy_itself=d.key == "numpy")
        seen.update(envsource.record_path(h.site_dir, rel) for h in hidden for rel in h.shared_objects())
        unowned_binaries = _unowned(env, dists, seen, memo, thorough, hidden)
        numpys = {b.fullpath for b in unowned_binaries if b.dist is not None and b.dist.key == "numpy"}
        scanner.add([b.fullpath for b in unowned_binaries if b.fullpath not in numpys])
        scanner.add(sorted(numpys), numpy_itself=True)
        if hypothetical is not None:
            versions["numpy"] = str(hypothetical)
        declared = _declared(dists, env, versions, memo)
        facts = scanner.finish()
        problems += _missing(owned, set(scanner.missing))
    installed_numpy = envsource.numpy_version(dists)
    judged_numpy = hypothetical if hypothetical is not None else _version(installed_numpy)
    binaries = owned + unowned_binaries
    binaries = [b for b in binaries if b.fullpath in facts]
    findings: dict[str, list[BinaryFinding]] = {}
    unowned: list[BinaryFinding] = []
    for b in binaries:
        f = facts[b.fullpath]
        verdict, consequence = numpy_rule.judge(f, judged_numpy)
        finding = BinaryFinding(
            path=b.relpath,
            module=envsource.module_name(b.relpath, env.ext_suffixes),
            facts=f,
            verdict=verdict,
            consequence=consequence,
            root=b.site_dir,
        )
        if b.dist is None:
            unowned.append(finding)
        else:
            findings.setdefault(b.dist.key, []).append(finding)

    unowned.sort(key=lambda b: (b.root or "", b.path))  # in the report's order, not the walk's
    distributions = []
    for d in dists:
        if d.key not in findings:
            continue
        found = tuple(findings[d.key])
        distributions.append(
            DistributionFinding(
                name=d.name,
                version=d.version,
                verdict=Verdict.worst([b.verdict for b in found]),
                binaries=found,
                numpy_requirement=declared.numpy_requirements.get(d.key),
            )
        )
    distributions.sort(key=lambda d: (-d.verdict.rank, d.name.lower()))
    memo.save()

    return CheckReport(
        environment=env,
        numpy=str(judged_numpy) if judged_numpy is not None else None,
        numpy_installed=installed_numpy,
        hypothetical=hypothetical is not None,
        distributions=tuple(distributions),
        unowned=tuple(unowned),
        declared=declared.problems,
        bytes_read=sum(f.bytes_read for f in facts.values()),
        bytes_total=sum(f.size for f in facts.values()),
        errors=tuple(problems),
        notes=_unrecorded(dists),
    )


def _missing(owned: list[_Binary], gone: set[str]) -> list[str]:
    """One error per distribution whose RECORD lists shared objects that are not on disk: a damaged or partly
    removed install, whose imports fail whatever their ABI (numpy without its core fails everything)."""
    by_dist: dict[str, list[_Binary]] = {}
    for b in owned:
        if b.fullpath in gone and b.dist is not None:
            by_dist.setdefault(f"{b.dist.name} {b.dist.version}", []).append(b)
    from abiguard.report.markup import counted, listed

    return [f"{who}: {counted(len(found), 'shared object')} its RECORD lists {'is' if len(found) == 1 else 'are'} not "
            f"on disk ({listed([b.relpath for b in found], 3)}): a damaged or partly removed install, whose imports "
            "fail; reinstall it" for who, found in by_dist.items()]


def _unrecorded(dists: list[envsource.InstalledDistribution]) -> tuple[str, ...]:
    """One note for the distributions without a RECORD (apt's python3-numpy has none): not damage, but
    their shared objects are judged without an owner."""
    names = [f"{d.name} {d.version}" for d in dists if not d.recorded and not d.claims]
    if not names:
        return ()
    from abiguard.report.markup import counted, listed

    return (f"{counted(len(names), 'distribution has', 'distributions have')} no RECORD (a system package manager "
            f"installs them so), so their shared objects are judged as unowned: {listed(names, 5)}",)


def _declared(
    dists: list[envsource.InstalledDistribution], env: TargetEnvironment, versions: dict[str, str],
    memo: envsource.Memo,
) -> Declared:
    """The declared-requirement check, recalled while the requirements and versions are unchanged: parsing
    them (and importing packaging's parser) costs more than the rest of a cached check."""
    inputs = (sorted(env.marker_env.items()), sorted(versions.items()), [(d.key, d.version, d.requires) for d in dists])
    known = memo.get("derived", "declared", inputs)
    if isinstance(known, list) and len(known) == 2 and isinstance(known[1], dict):
        with contextlib.suppress(TypeError):
            return Declared(tuple(DeclaredProblem(*p) for p in known[0]), known[1])
    from abiguard.rules.declared import check_declared

    declared = check_declared(dists, env.marker_env, versions)
    memo.put("derived", "declared", inputs, [[astuple(p) for p in declared.problems], declared.numpy_requirements])
    return declared


def _version(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _memo(env: TargetEnvironment, use_cache: bool) -> envsource.Memo:
    if not use_cache:
        return envsource.Memo(None)
    key = zlib.crc32("\0".join(env.site_packages).encode())
    return envsource.Memo(os.path.join(cache_dir(), f"listing-{key:08x}.marshal"))


def _owned(d: envsource.InstalledDistribution, seen: set[str]) -> list[_Binary]:
    """The shared objects `d`'s RECORD lists that no distribution before it did (`seen`, updated)."""
    out: list[_Binary] = []
    for rel in d.shared_objects():
        full = envsource.record_path(d.site_dir, rel)
        if full not in seen:
            seen.add(full)
            out.append(_Binary(d, d.site_dir, rel, full))
    return out


def _unowned(
    env: TargetEnvironment, dists: Dists, owned: set[str], memo: envsource.Memo, thorough: bool, hidden: Dists,
) -> list[_Binary]:
    """`owned`: the full paths of the shared objects the RECORDs list. What lies in a tree a distribution
    claims without listing its files (Debian's egg-info) is attributed to it."""
    found = envsource.unowned_shared_objects(env, dists, owned, memo, thorough, hidden)
    claims = {(d.site_dir.rstrip(os.sep), top): d for d in dists for top in d.claims}
    binaries = [_Binary(claims.get((site, rel.partition("/")[0])), site, rel, os.path.join(site, rel))
                for site, rel in found]
    # what .pth files put on the import path (editable installs), attributed to the distribution that
    # installed the .pth file
    by_key = {d.key: d for d in dists}
    entries = envsource.path_entries(env, dists)
    binaries += [_Binary(by_key.get(owner or ""), root, rel, os.path.join(root, rel))
                 for root, rel, owner in envsource.path_entry_shared_objects(entries, owned, memo)]
    return binaries


def verify_findings(
    report: CheckReport,
    *,
    everything: bool = False,
    timeout: float = 30.0,
    jobs: int | None = None,
    progress: Progress | None = None,
    only: set[str] | None = None,
) -> CheckReport:
    """Import the affected (or all) extension modules in subprocesses and record what each import showed.

    The imports run against the installed numpy; when the verdicts were reached against another one
    (`--numpy VER`), what they show is recorded but confirms or refutes nothing. `only` limits the
    imports to these distributions (canonical names), e.g. the ones a fix changed.
    """
    from abiguard.verify import to_verification, verify_modules

    def wanted(b: BinaryFinding) -> bool:
        return b.module is not None and (everything or b.verdict in (Verdict.BROKEN, Verdict.AT_RISK))

    chosen = [d for d in report.distributions if only is None or canonical_name(d.name) in only]
    all_findings = [b for d in chosen for b in d.binaries]
    if only is None:
        all_findings += list(report.unowned)
    modules = [b.module for b in all_findings if wanted(b) and b.module]
    outcomes = verify_modules(report.environment.executable, modules, jobs=jobs, timeout=timeout,
                              progress=progress)

    comparable = not report.hypothetical or (
        report.numpy is not None and _version(report.numpy) == _version(report.numpy_installed)
    )

    def attach(b: BinaryFinding) -> BinaryFinding:
        if b.module is None or b.module not in outcomes:
            return b
        verified = to_verification(b.verdict.value, outcomes[b.module], comparable=comparable)
        return replace(b, verified=verified)

    distributions = tuple(replace(d, binaries=tuple(attach(b) for b in d.binaries)) for d in report.distributions)
    return replace(report, distributions=distributions, unowned=tuple(attach(b) for b in report.unowned))
