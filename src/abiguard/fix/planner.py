"""Plan the smallest repair: turn each strategy into requirements, let a real resolver expand it, and keep only
change sets that are statically clean (no plan may trade one ABI break for another)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from abiguard.fix.resolver import Change, Resolution, ResolveError, available, install_command, resolve
from abiguard.model import (
    BuiltFor,
    CheckReport,
    DeclaredProblem,
    DistributionFinding,
    TargetEnvironment,
    Verdict,
    canonical_name,
)
from abiguard.rules.declared import admits
from abiguard.rules.numpy import NUMPY2, abi


@dataclass(frozen=True)
class ReleaseFacts:
    """NumPy facts of one release's wheel for the target, as read from the index."""

    built_for: BuiltFor
    min_numpy: str | None
    wheel_size: int | None = None
    note: str | None = None  # e.g. "no wheel for this platform"


class ReleaseInspector(Protocol):
    def release(self, name: str, version: str) -> ReleaseFacts: ...

    def first_compatible(self, requirement: str, numpy: Version) -> str | None:
        """The lowest release that `requirement` (a name, or a name and a specifier) allows whose wheel for the
        target is built for `numpy`."""

    def last_compatible(self, requirement: str, numpy: Version) -> str | None:
        """The newest such release."""


@dataclass(frozen=True)
class Plan:
    strategy: str  # "downgrade", "upgrade" or "mixed"
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    changes: tuple[Change, ...]
    verified_static: bool
    problems: tuple[str, ...]
    commands: dict[str, list[str]]
    why: dict[str, str] = field(default_factory=dict)
    download_size: int = 0
    notes: tuple[str, ...] = ()  # what could not be judged before the install (the apply re-checks it)

    @property
    def blast_radius(self) -> tuple[int, int, int, int, int]:
        """Smaller is better: unverified last, then fewer changes, major jumps, downgrades, bytes."""
        majors = sum(1 for c in self.changes if c.old and c.new and Version(c.old).major != Version(c.new).major)
        downgrades = sum(1 for c in self.changes if c.kind in ("downgrade", "remove"))
        return (0 if self.verified_static else 1, len(self.changes), majors, downgrades, self.download_size)

    def pins(self) -> list[str]:
        return [f"{c.name}=={c.new}" for c in self.changes if c.new is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "changes": [{**c.to_json(), "why": self.why.get(c.name)} for c in self.changes],
            "requirements": list(self.requirements),
            "constraints": list(self.constraints),
            "commands": self.commands,
            "verified_static": self.verified_static,
            "problems": list(self.problems),
            "download_size": self.download_size,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Rejected:
    strategy: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"strategy": self.strategy, "reason": self.reason}


@dataclass(frozen=True)
class FixPlan:
    report: CheckReport
    plans: tuple[Plan, ...]  # ranked, best first; only statically verified ones
    rejected: tuple[Rejected, ...]

    @property
    def nothing_to_do(self) -> bool:
        return not _needs_fix(self.report)


Log = Callable[[str], None]


def plan_fix(
    report: CheckReport,
    installed: dict[str, str],
    inspector: ReleaseInspector,
    *,
    strategy: str = "auto",
    installer: str = "uv",
    log: Log | None = None,
    index_url: str | None = None,
) -> FixPlan:
    """Plans for every strategy asked for, each resolved over the whole environment and checked statically.

    `index_url` (the user's `--index-url`) is given to the resolver and written into the plans' commands."""
    say = log or (lambda _msg: None)
    env = report.environment
    if not _needs_fix(report):
        return FixPlan(report, (), ())
    culprits = [d for d in report.distributions if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)]
    plans: list[Plan] = []
    rejected: list[Rejected] = []
    strategies: list[tuple[str, Callable[[], tuple[list[str], list[str], dict[str, str]]]]] = []
    if strategy in ("auto", "downgrade"):
        strategies.append(("downgrade", lambda: _downgrade_request(report)))
    if strategy in ("auto", "upgrade"):
        strategies.append(("upgrade", lambda: _upgrade_request(report, inspector, say)))
    for name, build in strategies:
        try:
            requirements, constraints, why = build()
            say(f"resolving the {name} plan with {installer}")
            resolution, requirements = _resolve_smallest(env, installed, requirements, constraints, installer,
                                                         index_url)
        except (ResolveError, _NoPlan) as exc:
            rejected.append(Rejected(name, str(exc)))
            continue
        plan = _verify(name, requirements, constraints, why, resolution, report, installed, inspector, env, say,
                       index_url)
        if plan.verified_static:
            plans.append(plan)
        else:
            rejected.append(Rejected(name, "; ".join(plan.problems)))
    if not plans and strategy in ("auto", "mixed") and len(culprits) > 0:
        mixed = _mixed(report, installed, inspector, installer, env, say, index_url)
        if isinstance(mixed, Plan):
            plans.append(mixed)
        else:
            rejected.append(mixed)
    moved = {"numpy", *(canonical_name(d.name) for d in culprits)}
    plans.sort(key=lambda p: (p.blast_radius[0], _collateral_downgrades(p, moved), *p.blast_radius[1:]))
    return FixPlan(report, tuple(plans), tuple(rejected))


def _collateral_downgrades(plan: Plan, moved: set[str]) -> int:
    """Working distributions the plan moves back (pandas 3.1 to 3.0 for a numpy downgrade): a fix that only moves
    what is broken (and numpy) ranks first, even with more changes."""
    return sum(1 for c in plan.changes if c.kind in ("downgrade", "remove") and canonical_name(c.name) not in moved)


def _needs_fix(report: CheckReport) -> bool:
    """A broken or at-risk binary, owned or not: one no installer knows of (a `setup.py develop`, a hand copy)
    can still be fixed by moving numpy."""
    bad = (Verdict.BROKEN, Verdict.AT_RISK)
    return any(d.verdict in bad for d in report.distributions) or any(b.verdict in bad for b in report.unowned)


class _NoPlan(Exception):
    """A strategy cannot even be stated (e.g. no release of a culprit is built for NumPy 2)."""


def _binaries(report: CheckReport) -> Iterable[tuple[str, BuiltFor, str | None]]:
    for d in report.distributions:
        if d.name.lower() == "numpy":
            continue
        for b in d.binaries:
            yield d.name, b.facts.built_for, b.facts.min_numpy
    for b in report.unowned:
        yield "(unowned)", b.facts.built_for, b.facts.min_numpy


def _resolve_smallest(
    env: TargetEnvironment, installed: dict[str, str], requirements: list[str], constraints: list[str],
    installer: str, index_url: str | None = None,
) -> tuple[Resolution, list[str]]:
    """Exactly the first compatible releases when the resolver accepts them, else anything from there up.

    Upgrading only as far as needed keeps the jump (and its API changes) as small as the fix allows."""
    exact = [r.replace(">=", "==", 1) if ">=" in r and not r.startswith("numpy") else r for r in requirements]
    if exact != requirements:
        try:
            return resolve(env, installed, exact, constraints=constraints, installer=installer,
                           index_url=index_url), exact
        except ResolveError:
            pass
    resolution = resolve(env, installed, requirements, constraints=constraints, installer=installer,
                         index_url=index_url)
    return resolution, requirements


def _downgrade_request(report: CheckReport) -> tuple[list[str], list[str], dict[str, str]]:
    """numpy below 2 while any NumPy-1.x build stays, and at or above every NumPy-2 build's floor."""
    needs_v1 = sorted({name for name, built, _ in _binaries(report) if built is BuiltFor.NUMPY1})
    floors = [(Version(m), name) for name, built, m in _binaries(report) if built is BuiltFor.NUMPY2 and m]
    spec = []
    why = []
    if needs_v1:
        spec.append("<2")
        why.append(f"{', '.join(needs_v1)} built for NumPy 1.x")
    if floors:
        floor, who = max(floors)
        spec.append(f">={floor}")
        why.append(f"{who}'s build needs numpy >= {floor}")
    if not spec:
        raise _NoPlan("changing numpy cannot help: the broken binaries do not depend on the numpy version")
    if needs_v1 and floors and max(floors)[0] >= NUMPY2:
        verb = "needs" if len(needs_v1) == 1 else "need"
        raise _NoPlan(f"{max(floors)[1]} needs numpy >= {max(floors)[0]} while {', '.join(needs_v1)} {verb} numpy < 2")
    if report.numpy is not None and abi(Version(report.numpy)) < NUMPY2 and not floors:
        raise _NoPlan("numpy is already below 2")
    return [f"numpy{','.join(spec)}"], [], {"numpy": "; ".join(why)}


def _upgrade_request(
    report: CheckReport, inspector: ReleaseInspector, say: Log
) -> tuple[list[str], list[str], dict[str, str]]:
    """Each culprit to its first release built for the installed numpy (or, when its build needs a newer numpy,
    back to the newest release that accepts it); numpy held where it is."""
    if report.numpy is None:
        raise _NoPlan("numpy is not installed")
    numpy = Version(report.numpy)
    requirements, why = [], {}
    for d in report.distributions:
        if d.verdict not in (Verdict.BROKEN, Verdict.AT_RISK):
            continue
        key = canonical_name(d.name)
        floor = numpy_floor(d)
        if floor is not None and floor > abi(numpy):  # no newer release can help, only an older one
            say(f"looking for the newest release of {d.name} before {d.version} built for numpy {numpy}")
            last = inspector.last_compatible(f"{d.name}<{d.version}", numpy)
            if last is None:
                raise _NoPlan(f"no release of {d.name} before {d.version} has a wheel for this platform built for "
                              f"numpy {numpy}")
            requirements.append(f"{key}<={last}")
            why[key] = f"newest release built for numpy {numpy}"
            continue
        say(f"looking for the first release of {d.name} built for numpy {numpy}")
        first, reason = first_release(report, inspector, d.name, numpy)
        if first is None:
            raise _NoPlan(f"no release of {d.name} has a wheel for this platform built for numpy {numpy}")
        if Version(first) <= Version(d.version):
            raise _NoPlan(f"{d.name} {d.version} is already the newest compatible release; it needs a different numpy")
        requirements.append(f"{key}>={first}")
        why[key] = reason
    return requirements, [f"numpy=={numpy}"], why


def numpy_floor(dist: DistributionFinding) -> Version | None:
    """The oldest numpy all of the distribution's NumPy-2 builds accept, when one of them says (R2)."""
    return max((Version(b.facts.min_numpy) for b in dist.binaries
                if b.facts.built_for is BuiltFor.NUMPY2 and b.facts.min_numpy), default=None)


def first_release(
    report: CheckReport, inspector: ReleaseInspector, name: str, numpy: Version,
) -> tuple[str | None, str]:
    """The first release of `name` built for `numpy` that the installed distributions requiring it accept, and
    why it is the one.

    Pinned to the first release built for `numpy`, a culprit that a dependent needs newer would make the
    resolver downgrade the dependent (or, when it cannot, give up the exact pins for the newest releases).
    Only the requirements the installed version fails (`report.declared`) are looked at: the release sought
    is newer than the installed one, so it meets every lower bound the installed one meets, and an upper
    bound that excludes it excludes every later release too: no choice of release can help there."""
    demands: list[tuple[DeclaredProblem, Requirement]] = []
    for problem in report.declared:
        try:
            req = Requirement(problem.requirement)
        except InvalidRequirement:
            continue
        if problem.problem == "conflict" and canonical_name(req.name) == canonical_name(name):
            demands.append((problem, req))
    if demands:
        spec = functools.reduce(operator.and_, (r.specifier for _p, r in demands), SpecifierSet())
        first = inspector.first_compatible(f"{name}{spec}", numpy)
        if first is not None:
            who = [f"{p.distribution} {p.version}" for p, _r in demands]
            verb = "accepts" if len(who) == 1 else "accept"
            return first, f"first release built for numpy {numpy} that {', '.join(who)} {verb}"
    return inspector.first_compatible(name, numpy), f"first release built for numpy {numpy}"


def _mixed(
    report: CheckReport,
    installed: dict[str, str],
    inspector: ReleaseInspector,
    installer: str,
    env: TargetEnvironment,
    say: Log,
    index_url: str | None = None,
) -> Plan | Rejected:
    """Upgrade the NumPy-1.x culprits and move numpy to 2 (or above the floors) at once."""
    floors = [Version(m) for _, built, m in _binaries(report) if built is BuiltFor.NUMPY2 and m]
    target = max([*floors, NUMPY2])
    requirements, why = [f"numpy>={target}"], {"numpy": f"binaries need numpy >= {target}"}
    for d in report.distributions:
        if not any(b.facts.built_for is BuiltFor.NUMPY1 for b in d.binaries):
            continue
        first, reason = first_release(report, inspector, d.name, target)
        if first is None:
            return Rejected("mixed", f"no release of {d.name} is built for NumPy 2, and other binaries need "
                                     f"numpy >= {target}: no safe plan exists")
        key = canonical_name(d.name)
        requirements.append(f"{key}>={first}")
        why[key] = reason
    try:
        resolution, requirements = _resolve_smallest(env, installed, requirements, [], installer, index_url)
    except ResolveError as exc:
        return Rejected("mixed", str(exc))
    plan = _verify("mixed", requirements, [], why, resolution, report, installed, inspector, env, say, index_url)
    return plan if plan.verified_static else Rejected("mixed", "; ".join(plan.problems))


def _verify(
    strategy: str,
    requirements: list[str],
    constraints: list[str],
    why: dict[str, str],
    resolution: Resolution,
    report: CheckReport,
    installed: dict[str, str],
    inspector: ReleaseInspector,
    env: TargetEnvironment,
    say: Log,
    index_url: str | None = None,
) -> Plan:
    """A plan from a resolution: the change set judged statically, with the commands that make it."""
    problems, size, notes = judge_changes(report, installed, resolution.changes, inspector, say)
    commands = {
        tool: install_command(env, tool, [f"{c.name}=={c.new}" for c in resolution.changes if c.new], index_url)
        for tool in ("uv", "pip") if available(tool, env)
    }
    numpy = next((c.new for c in resolution.changes if canonical_name(c.name) == "numpy" and c.new), None)
    declared = {canonical_name(d.name): d.numpy_requirement for d in report.distributions if d.numpy_requirement}
    for c in resolution.changes:
        req = declared.get(canonical_name(c.name))
        if numpy is not None and req is not None and c.old is not None and not admits(req, numpy):
            why.setdefault(c.name, f"{c.name} {c.old} declares {req}, which numpy {numpy} does not meet")
        why.setdefault(c.name, "required by the resolver for a consistent set")
    return Plan(strategy, tuple(requirements), tuple(constraints), resolution.changes, not problems,
                tuple(problems.values()), commands, why, size, tuple(notes))


class Judged(NamedTuple):
    problems: dict[str, str]  # by canonical distribution name
    download_size: int  # of the new wheels
    notes: list[str]  # what cannot be read before the install: judged by the re-check after it instead


def judge_changes(
    report: CheckReport,
    installed: dict[str, str],
    changes: Iterable[Change],
    inspector: ReleaseInspector,
    say: Log | None = None,
) -> Judged:
    """Judge the environment a change set would leave: new wheels read remotely (or from disk), the rest from
    the scan.

    What has no wheel to read yet (built at install, or a release whose wheel cannot be judged) is a note, not
    a problem: `check` calls such a build unknown, not broken, and the install is re-checked once it is built."""
    changes = list(changes)
    after = dict(installed)
    for c in changes:
        if c.new is not None:
            after[c.name] = c.new
        elif not c.built:
            after.pop(c.name, None)
    numpy = Version(after["numpy"]) if "numpy" in after else None
    changed = {c.name for c in changes}
    problems: dict[str, str] = {}
    notes: list[str] = []
    size = 0
    for c in changes:
        if c.built:
            notes.append(f"{c.name}: built from source at install, so its binaries cannot be read before it; "
                         "the installed result is re-checked")
            continue
        if c.new is None or c.name == "numpy":
            continue
        if say is not None:
            say(f"inspecting {c.name} {c.new} {'from ' + c.wheel if c.wheel else 'on the index'}")
        facts = local_wheel(c.wheel, report.environment) if c.wheel else inspector.release(c.name, c.new)
        size += facts.wheel_size or 0
        if facts.built_for is BuiltFor.UNKNOWN:
            notes.append(f"{c.name} {c.new}: {facts.note or 'its wheel could not be judged'}; the installed result "
                         "is re-checked")
            continue
        problem = _judge_release(c.name, c.new, facts, numpy)
        if problem:
            problems[c.name] = problem
    for d in report.distributions:
        key = canonical_name(d.name)
        if key in changed or key == "numpy":
            continue
        for b in d.binaries:
            if b.facts.built_for is BuiltFor.UNKNOWN:
                continue  # unreadable before and after: a change neither causes nor cures it
            problem = _judge_release(d.name, d.version, ReleaseFacts(b.facts.built_for, b.facts.min_numpy), numpy)
            if problem:
                problems[key] = problem
                break
    return Judged(problems, size, notes)


def local_wheel(path: str, env: TargetEnvironment) -> ReleaseFacts:
    """Facts of a wheel file an install names, read from disk: no index has it."""
    from abiguard.inspect import InspectOptions, WheelItem, inspect_targets
    from abiguard.sources.environment import platform_tag

    report = inspect_targets([path], InspectOptions(python_version=env.python_tag, platform=platform_tag(env)))
    item = report.items[0] if report.items else None
    if isinstance(item, WheelItem):
        return ReleaseFacts(item.report.outcome.built_for, item.report.outcome.min_numpy, item.report.wheel_size)
    return ReleaseFacts(BuiltFor.UNKNOWN, None, None, getattr(item, "message", "the wheel could not be read"))


def _judge_release(name: str, version: str, facts: ReleaseFacts, numpy: Version | None) -> str | None:
    if facts.built_for in (BuiltFor.NONE,):
        return None
    if numpy is None:
        return f"{name} {version} needs numpy, which would be removed"
    if facts.built_for is BuiltFor.NUMPY1 and abi(numpy) >= NUMPY2:
        return f"{name} {version} is built for NumPy 1.x but numpy would be {numpy}"
    if facts.built_for is BuiltFor.NUMPY2 and facts.min_numpy and abi(numpy) < Version(facts.min_numpy):
        return f"{name} {version} needs numpy >= {facts.min_numpy} but numpy would be {numpy}"
    return None
