"""The sentences every human-facing format says about a `check` or `lock-check` report: what breaks, why pip
allowed it, the way out, the summary. Plain text; each renderer adds its own markup around them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abiguard.binary.numpy import deciding_first
from abiguard.model import BinaryFinding, BuiltFor, CheckReport, DeclaredProblem, DistributionFinding, Verdict
from abiguard.report.markup import counted
from abiguard.rules.numpy import Bound, satisfiable, way_out_bounds

if TYPE_CHECKING:
    from packaging.version import Version

BAD = (Verdict.BROKEN, Verdict.AT_RISK)


def consequence(b: BinaryFinding) -> str:
    return b.consequence or b.facts.reason or b.verdict.value


def shown(dist: DistributionFinding) -> tuple[BinaryFinding, ...]:
    """The shared objects that make a distribution's verdict: the broken or at-risk ones, or for an unknown
    distribution the ones that could not be judged; none for an ok one."""
    if dist.verdict in BAD:
        return dist.affected
    if dist.verdict is Verdict.UNKNOWN:
        return tuple(b for b in dist.binaries if b.verdict is Verdict.UNKNOWN)
    return ()


def counts(dist: DistributionFinding, noun: bool = True) -> str:
    """How many shared objects make its verdict, of how many: `37 of 43 shared objects` (`37 of 43` without
    the noun, under a heading that names it). lock-check stops reading a wheel at the first member built for
    NumPy 1.x, which decides what the wheel is built for (not always the verdict: with no numpy pinned there is
    none), so then the count says how many were read."""
    affected = shown(dist)
    total = counted(len(dist.binaries), "shared object") if noun else str(len(dist.binaries))
    kinds = [v for v in BAD if any(b.verdict is v for b in affected)]
    if len(kinds) > 1:  # broken and at risk: how many of each, not all under the distribution's verdict
        part = ", ".join(f"{sum(b.verdict is v for b in affected)} {v.value.replace('-', ' ')}" for v in kinds) + ","
    else:
        part = str(len(affected))
    if not dist.unread:
        return f"{part} of {total}" if affected else total
    kind = "" if len(kinds) > 1 else f" {dist.verdict.value}"
    read = f"{part}{kind} of the {total} read" if affected else f"{total} read"
    return f"{read}; {len(dist.unread)} more not read, since one built for NumPy 1.x was found"


def evidence(b: BinaryFinding, most: int = 3) -> list[str]:
    """The deciding markers first (producer markers only say who built it), as `path has 'text' (R4) at 0x..`."""
    return [f"{b.path} has {e.text!r} ({e.marker}) at {e.offset:#x}" for e in deciding_first(b.facts.evidence)[:most]]


def unjudged(dist: DistributionFinding) -> list[BinaryFinding]:
    """The shared objects of a broken distribution that could not be judged: its verdict alone would hide them."""
    return [b for b in dist.binaries if b.verdict is Verdict.UNKNOWN] if dist.verdict in BAD else []


def locked(report: CheckReport) -> bool:
    """A report on a lockfile (`lock-check`): nothing is installed, so the ways out are pins, not installs."""
    return not report.environment.site_packages


def why(dist: DistributionFinding, report: CheckReport) -> str | None:
    """Why pip and uv let this happen; None for a lockfile entry that declares no numpy (nothing to say)."""
    from abiguard.rules.declared import admits, has_upper_bound

    req = dist.numpy_requirement
    if req is None:
        if locked(report):
            return None
        return (f"{dist.name} {dist.version} declares no numpy requirement, so no installer relates the two; "
                "the ABI bound exists only in its binaries")
    if report.numpy is None and locked(report):
        return (f"{dist.name} {dist.version} requires {req!r}, but numpy is not in the lockfile; see declared "
                "requirements")
    if report.numpy is None:
        return (f"{dist.name} {dist.version} requires {req!r}, but numpy is not installed (`pip uninstall` and "
                "`pip install --no-deps` do not ask what needs it); pip check reports this one, see declared "
                "requirements")
    if not admits(req, report.numpy):
        return f"{dist.name} {dist.version} requires {req!r}, which pip check enforces; see declared requirements"
    need = floor(dist)
    if need is not None:
        return (f"{dist.name} {dist.version} requires {req!r}, a lower bound below the NumPy {need} its binaries "
                f"are built for, so pip and uv accept numpy {report.numpy} and `pip check` reports nothing")
    if has_upper_bound(req):
        return (f"{dist.name} {dist.version} requires {req!r}, which admits numpy {report.numpy}, so pip and uv "
                "install it and `pip check` reports nothing")
    return (f"{dist.name} {dist.version} requires {req!r}: no upper bound, so pip and uv install any numpy and "
            "`pip check` reports nothing")


def floor(dist: DistributionFinding) -> Version | None:
    """The numpy the broken binaries need when they need a newer one (h5py 3.14 under numpy 1.26: 2.0); None
    when builds for NumPy 1.x are what breaks."""
    from packaging.version import Version

    if any(b.facts.built_for is BuiltFor.NUMPY1 for b in dist.affected):
        return None
    return max((Version(b.facts.min_numpy) for b in dist.affected if b.facts.min_numpy), default=None)


def ways_out(dist: DistributionFinding, report: CheckReport) -> list[str]:
    """The ways out of a break, as commands (installed) or pins (lockfile); none for other verdicts. Moving
    numpy moves it within every bound the installed binaries and declared numpy requirements put on it
    (`rules.numpy.way_out_bounds`), and is not offered where no numpy meets them all."""
    if dist.verdict not in BAD:
        return []
    is_locked = locked(report)
    bounds = _bounds(report)
    spec = "numpy" + ",".join(sorted((b.specifier for b in bounds), key=lambda s: s.startswith("<")))
    install = f'pin "{spec}"' if is_locked else f'pip install "{spec}"'
    if report.numpy is None:
        if not satisfiable(bounds):
            return [f"no numpy fits every binary and numpy requirement installed ({_reasons(bounds)}): run "
                    "`abiguard fix`"]
        return [f'add "{spec}" to the lockfile' if is_locked else install]
    need = floor(dist)
    if any(b.facts.built_for is BuiltFor.NUMPY1 for b in dist.affected):
        others = "the other pins" if is_locked else "other packages"
        keep = f"   (keeps this build working; check {others} still accept it)"
        other = (f"pin {dist.name} to a release built for NumPy 2, the first of which "
                 f"`{_inspect(dist, report, 'first')}` finds" if is_locked else
                 f"upgrade {dist.name} to a release built for NumPy 2 (`abiguard fix` finds the first one)")
    elif need is not None:
        keep = ""
        other = (f"pin an older release of {dist.name} built for numpy {report.numpy}, the newest of which "
                 f"`{_inspect(dist, report, 'last')}` finds" if is_locked else
                 f"go back to an older release of {dist.name} built for numpy {report.numpy} (`abiguard fix` finds "
                 "the newest one)")
    else:
        return []
    if not satisfiable(bounds):
        return [other, "moving numpy cannot help: no numpy fits every binary and numpy requirement installed "
                f"({_reasons(bounds)})"]
    return [f"{install}{keep}", f"or {other}"]


_last_bounds: list[tuple[CheckReport, list[Bound]]] = []


def _bounds(report: CheckReport) -> list[Bound]:
    """`way_out_bounds` of the report being rendered, computed once for all its distributions (it reads every
    binary: 1.3 ms on 2,000 of them, for each broken distribution of a large environment)."""
    if not _last_bounds or _last_bounds[0][0] is not report:
        _last_bounds[:] = [(report, way_out_bounds(report))]
    return _last_bounds[0][1]


def _reasons(bounds: list[Bound]) -> str:
    return "; ".join(f"numpy{b.specifier} for {b.reasons[0]}" for b in bounds)


def _inspect(dist: DistributionFinding, report: CheckReport, which: str) -> str:
    """The `inspect` command that finds a release compatible with the lockfile's numpy, for its target."""
    env = report.environment
    return (f"abiguard inspect {dist.name} --{which}-compatible --numpy {report.numpy} "
            f"--python-version {env.python_tag} --platform {env.platform}")


def binaries(report: CheckReport) -> list[tuple[str, BinaryFinding]]:
    """Every shared object with the distribution that owns it ("" for none), as the JSON summary counts them."""
    return [(d.name, b) for d in report.distributions for b in d.binaries] + [("", b) for b in report.unowned]


def refuted(report: CheckReport) -> list[tuple[str, BinaryFinding]]:
    """Static verdicts that importing contradicted: abiguard bugs, to be reported."""
    return [(name, b) for name, b in binaries(report) if b.verified is not None and b.verified.confirms is False]


def failures(report: CheckReport) -> list[BinaryFinding]:
    """Imports that failed in a way that neither confirms nor refutes a verdict: a crash, a timeout, an
    import error of another kind. They are what a user most needs to hear about."""
    return [b for _, b in binaries(report)
            if b.verified is not None and b.verified.confirms is None and b.verified.outcome != "ok"]


def nothing_checked(report: CheckReport) -> bool:
    """A lockfile with no wheel to read: the report must say so and claim nothing."""
    return report.checked == 0 and not report.errors


def summary(report: CheckReport) -> str:
    """`2 distributions with compiled code: 1 broken, 0 at risk, 0 unknown, 1 ok` and what else counts."""
    parts = [
        f"{report.count(Verdict.BROKEN)} broken",
        f"{report.count(Verdict.AT_RISK)} at risk",
        f"{report.count(Verdict.UNKNOWN)} unknown",
        f"{report.count(Verdict.OK)} ok",
    ]
    every = [b for _, b in binaries(report)]
    tail = ""
    unowned_bad = sum(1 for b in report.unowned if b.verdict in BAD)
    if unowned_bad:
        tail += f"; {counted(unowned_bad, 'unowned shared object')} broken or at risk"
    not_judged = sum(1 for b in every if b.verdict is Verdict.UNKNOWN)
    if not_judged:
        tail += f"; {counted(not_judged, 'shared object')} not judged"
    if report.declared:
        tail += f"; {counted(len(report.declared), 'declared-requirement problem')}"
    verified = [b.verified for b in every if b.verified is not None]
    if verified:
        confirmed = sum(1 for v in verified if v.confirms is True)
        contradicted = sum(1 for v in verified if v.confirms is False)
        failed = len(failures(report))
        tail += f"; verified {counted(len(verified), 'import')}: {confirmed} confirmed, {contradicted} refuted"
        tail += f", {failed} failed otherwise" if failed else ""
    return f"{counted(len(report.distributions), 'distribution')} with compiled code: {', '.join(parts)}{tail}"


def verdict_line(report: CheckReport, errors_are: str = "above") -> str:
    """The last word: no conflicts, or none among what could be read; "" when there are conflicts."""
    if report.has_conflicts:
        return ""
    if report.errors:
        return (f"No NumPy ABI conflicts among what could be read; {counted(len(report.errors), 'error')} "
                f"{errors_are}.")
    return "No NumPy ABI conflicts found."


def headline(report: CheckReport) -> str:
    """`Python 3.11.7 at /venv/bin/python, numpy 2.0.2` (or `for PLATFORM, from LOCKFILE` for a lockfile)."""
    env = report.environment
    is_locked = locked(report)  # a lockfile may pin numpy not at all, or twice: the errors say which
    numpy = (f"numpy {report.numpy}" if report.numpy else
             "no single numpy pin" if is_locked else "numpy not installed")
    what_if = f" (hypothetical; installed: {report.numpy_installed or 'none'})" if report.hypothetical else ""
    where = f"for {env.platform}, from" if is_locked else "at"
    return f"Python {env.python_version} {where} {env.executable}, {numpy}{what_if}"


def declared_title(report: CheckReport) -> str:
    """What the unmet declared requirements are to the user: what `pip check` says of an environment, and of a
    lockfile what its installer's resolver refuses."""
    if locked(report):
        return "Declared requirements the pins break (what `pip check` would report)"
    return "Declared requirements not satisfied (what `pip check` reports)"


def declared_line(p: DeclaredProblem, is_locked: bool = False) -> str:
    if is_locked:
        have = f"the lockfile pins {p.installed}" if p.installed else "the lockfile does not list it"
    else:
        have = f"{p.installed} is installed" if p.installed else "it is not installed"
    return f"{p.distribution} {p.version} requires {p.requirement}, but {have}"
