"""Human-readable `check` report: per distribution, what breaks, the evidence, why pip allowed it, the way out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abiguard.model import BinaryFinding, BuiltFor, CheckReport, DistributionFinding, Verdict
from abiguard.report.markup import Out, counted, escape

if TYPE_CHECKING:
    from packaging.version import Version

_STYLE = {
    Verdict.BROKEN: "bold red",
    Verdict.AT_RISK: "bold yellow",
    Verdict.UNKNOWN: "magenta",
    Verdict.OK: "green",
}
_MODULES_SHOWN = 6
_FAILURES_SHOWN = 10
_BAD = (Verdict.BROKEN, Verdict.AT_RISK)
_PRODUCER_MARKERS = ("R8", "R9", "pybind11")


def render_check(report: CheckReport, out: Out, verbose: bool = False) -> None:
    env = report.environment
    locked = _locked(report)  # a lockfile may pin numpy not at all, or twice: the errors say which
    numpy = f"numpy {report.numpy}" if report.numpy else "no single numpy pin" if locked else "numpy not installed"
    what_if = f" (hypothetical; installed: {report.numpy_installed or 'none'})" if report.hypothetical else ""
    where = f"for {env.platform}, from" if locked else "at"
    out.print(f"[bold]Python {env.python_version}[/] {where} {escape(env.executable)}, {numpy}{what_if}")
    out.print()
    shown = [d for d in report.distributions if d.verdict is not Verdict.OK or verbose]
    for dist in shown:
        _distribution(dist, report, out, verbose)
    unowned_bad = [b for b in report.unowned if b.verdict is not Verdict.OK or verbose]
    if unowned_bad:
        out.print("[bold]Shared objects that no installed distribution owns[/]")
        for b in unowned_bad:
            out.print(f"  {_verdict(b.verdict)} {escape(b.path)}: {escape(_consequence(b))}")
        out.print()
    if report.declared:
        out.print("[bold]Declared requirements not satisfied[/] (what `pip check` reports)")
        for p in report.declared:
            have = f"{p.installed} is installed" if p.installed else "it is not installed"
            out.print(f"  {escape(p.distribution)} {p.version} requires {escape(p.requirement)}, but {have}")
        out.print()
    for message in report.notes:
        out.print(f"[cyan]note[/]: {escape(message)}")
    for message in report.errors:
        out.print(f"[bold red]error[/]: {escape(message)}")
    if report.errors or report.notes:
        out.print()
    _refuted(report, out)
    _failed(report, out, verbose)
    _summary(report, out)


def _verdict(v: Verdict) -> str:
    return f"[{_STYLE[v]}]{v.value}[/]"


def _consequence(b: BinaryFinding) -> str:
    return b.consequence or b.facts.reason or b.verdict.value


def _distribution(dist: DistributionFinding, report: CheckReport, out: Out, verbose: bool) -> None:
    affected = dist.affected if dist.verdict in (Verdict.BROKEN, Verdict.AT_RISK) else ()
    if dist.verdict is Verdict.UNKNOWN:
        affected = tuple(b for b in dist.binaries if b.verdict is Verdict.UNKNOWN)
    count = counted(len(dist.binaries), "shared object")
    if affected:
        count = f"{len(affected)} of {count}"
    if dist.unread:  # lock-check stops reading a wheel once its verdict is settled
        count += f" read; {len(dist.unread)} more not read, the verdict being settled"
    out.print(f"{_verdict(dist.verdict)}  [bold]{escape(dist.name)} {escape(dist.version)}[/]  ({count})")
    if not affected:
        if verbose:
            for b in dist.binaries:
                out.print(f"    {escape(b.module or b.path)}: built for {b.facts.built_for.value}")
        out.print()
        return
    names = [b.module or b.path for b in affected]
    limit = len(names) if verbose else _MODULES_SHOWN
    more = f" (+{len(names) - limit} more; --verbose lists all)" if len(names) > limit else ""
    out.print(f"    modules: {escape(', '.join(names[:limit]))}{more}")
    first = affected[0]
    shown = sorted(first.facts.evidence, key=lambda e: (e.marker in _PRODUCER_MARKERS, e.offset))
    for e in shown[:3]:
        text = escape(repr(e.text))
        out.print(f"    evidence: {escape(first.path)} has [cyan]{text}[/] ({e.marker}) at {e.offset:#x}")
    out.print(f"    consequence: {escape(_consequence(first))}")
    if dist.verdict in (Verdict.BROKEN, Verdict.AT_RISK):
        _unjudged(dist, out, verbose)
        if dist.numpy_requirement is not None or not _locked(report):
            out.print(f"    why pip allowed it: {escape(_why(dist, report))}")
        for line in _ways_out(dist, report):
            out.print(f"    way out: {escape(line)}")
    out.print()


def _unjudged(dist: DistributionFinding, out: Out, verbose: bool) -> None:
    """The shared objects of a broken distribution that could not be judged (unreadable, or without a marker):
    its verdict alone would hide them."""
    unknown = [b for b in dist.binaries if b.verdict is Verdict.UNKNOWN]
    for n, b in enumerate(unknown if verbose else unknown[:1]):
        lead = f"also {len(unknown)} not judged" if n == 0 else "also not judged"
        more = f" (+{len(unknown) - 1} more; --verbose lists all)" if len(unknown) > 1 and not verbose else ""
        out.print(f"    {lead}: {escape(b.path)}: {escape(_consequence(b))}{more}")


def _why(dist: DistributionFinding, report: CheckReport) -> str:
    from packaging.requirements import Requirement

    from abiguard.rules.declared import has_upper_bound

    req = dist.numpy_requirement
    if req is None:
        return (f"{dist.name} {dist.version} declares no numpy requirement, so no installer relates the two; "
                "the ABI bound exists only in its binaries")
    if report.numpy is None:
        return (f"{dist.name} {dist.version} requires {req!r}, but numpy was removed (uninstalling does not ask "
                "what needs it); pip check reports this one, see declared requirements")
    if not Requirement(req).specifier.contains(report.numpy, prereleases=True):
        return f"{dist.name} {dist.version} requires {req!r}, which pip check enforces; see declared requirements"
    need = _floor(dist)
    if need is not None:
        return (f"{dist.name} {dist.version} requires {req!r}, a lower bound below the NumPy {need} its binaries "
                f"are built for, so pip and uv accept numpy {report.numpy} and `pip check` reports nothing")
    if has_upper_bound(req):
        return (f"{dist.name} {dist.version} requires {req!r}, which admits numpy {report.numpy}, so pip and uv "
                "install it and `pip check` reports nothing")
    return (f"{dist.name} {dist.version} requires {req!r}: no upper bound, so pip and uv install any numpy and "
            "`pip check` reports nothing")


def _floor(dist: DistributionFinding) -> Version | None:
    """The numpy the broken binaries need when they need a newer one (h5py 3.14 under numpy 1.26: 2.0); None
    when builds for NumPy 1.x are what breaks."""
    from packaging.version import Version

    if any(b.facts.built_for is BuiltFor.NUMPY1 for b in dist.affected):
        return None
    return max((Version(b.facts.min_numpy) for b in dist.affected if b.facts.min_numpy), default=None)


def _locked(report: CheckReport) -> bool:
    """A report on a lockfile (`lock-check`): nothing is installed, so the ways out are pins, not installs."""
    return not report.environment.site_packages


def _ways_out(dist: DistributionFinding, report: CheckReport) -> list[str]:
    built = {b.facts.built_for for b in dist.affected}
    locked = _locked(report)
    if report.numpy is None:
        return ["add numpy to the lockfile" if locked else "pip install numpy"]
    if BuiltFor.NUMPY1 in built:
        if locked:
            return [
                'pin "numpy<2"   (keeps this build working; check the other pins still accept it)',
                f"or pin {dist.name} to a release built for NumPy 2, the first of which "
                f"`{_inspect(dist, report, 'first')}` finds",
            ]
        return [
            'pip install "numpy<2"   (keeps this build working; check other packages still accept it)',
            f"or upgrade {dist.name} to a release built for NumPy 2 (`abiguard fix` finds the first one)",
        ]
    need = _floor(dist)
    if need is not None:
        if locked:
            return [
                f'pin "numpy>={need}"',
                f"or pin an older release of {dist.name} built for numpy {report.numpy}, the newest of which "
                f"`{_inspect(dist, report, 'last')}` finds",
            ]
        return [
            f'pip install "numpy>={need}"',
            f"or go back to an older release of {dist.name} built for numpy {report.numpy} (`abiguard fix` finds "
            "the newest one)",
        ]
    return []


def _inspect(dist: DistributionFinding, report: CheckReport, which: str) -> str:
    """The `inspect` command that finds a release compatible with the lockfile's numpy, for its target."""
    env = report.environment
    return (f"abiguard inspect {dist.name} --{which}-compatible --numpy {report.numpy} "
            f"--python-version {env.python_tag} --platform {env.platform}")


def _binaries(report: CheckReport) -> list[tuple[str, BinaryFinding]]:
    """Every shared object with the distribution that owns it ("" for none), as the JSON summary counts them."""
    return [(d.name, b) for d in report.distributions for b in d.binaries] + [("", b) for b in report.unowned]


def _refuted(report: CheckReport, out: Out) -> None:
    rows = [(name, b) for name, b in _binaries(report) if b.verified is not None and b.verified.confirms is False]
    if not rows:
        return
    from rich.table import Table

    table = Table(title="Predictions refuted by importing (please report these as abiguard bugs)")
    for col in ("distribution", "module", "predicted", "observed"):
        table.add_column(col)
    for name, b in rows:
        assert b.verified is not None
        observed = b.verified.outcome + (f": {b.verified.message}" if b.verified.message else "")
        table.add_row(name or "(unowned)", b.module or b.path, b.verdict.value, observed)
    out.print(table)
    out.print()


def _failures(report: CheckReport) -> list[BinaryFinding]:
    """Imports that failed in a way that neither confirms nor refutes a verdict: a crash, a timeout, an
    import error of another kind. They are what a user most needs to hear about."""
    return [b for _, b in _binaries(report)
            if b.verified is not None and b.verified.confirms is None and b.verified.outcome != "ok"]


def _failed(report: CheckReport, out: Out, verbose: bool) -> None:
    failures = _failures(report)
    if not failures:
        return
    out.print("[bold]Imports that failed, neither confirming nor refuting a verdict[/]")
    shown = failures if verbose else failures[:_FAILURES_SHOWN]
    for b in shown:
        assert b.verified is not None
        message = f": {b.verified.message}" if b.verified.message else ""
        out.print(f"  {escape(b.module or b.path)}: [bold]{b.verified.outcome}[/]{escape(message)}")
    if len(failures) > len(shown):
        out.print(f"  (+{len(failures) - len(shown)} more; --verbose lists all)")
    out.print()


def _summary(report: CheckReport, out: Out) -> None:
    if report.checked == 0 and not report.errors:  # a lockfile with no wheel to read: say so, claim nothing
        out.print(f"[yellow]Nothing was checked: {escape(report.environment.executable)} lists no wheel to read "
                  "for this target.[/]")
        return
    n = len(report.distributions)
    parts = [
        f"{report.count(Verdict.BROKEN)} broken",
        f"{report.count(Verdict.AT_RISK)} at risk",
        f"{report.count(Verdict.UNKNOWN)} unknown",
        f"{report.count(Verdict.OK)} ok",
    ]
    binaries = [b for _, b in _binaries(report)]
    tail = ""
    unowned_bad = sum(1 for b in report.unowned if b.verdict in _BAD)
    if unowned_bad:
        tail += f"; {counted(unowned_bad, 'unowned shared object')} broken or at risk"
    unjudged = sum(1 for b in binaries if b.verdict is Verdict.UNKNOWN)
    if unjudged:
        tail += f"; {counted(unjudged, 'shared object')} not judged"
    if report.declared:
        tail += f"; {counted(len(report.declared), 'declared-requirement problem')}"
    verified = [b.verified for b in binaries if b.verified is not None]
    if verified:
        confirmed = sum(1 for v in verified if v.confirms is True)
        refuted = sum(1 for v in verified if v.confirms is False)
        failed = len(_failures(report))
        tail += f"; verified {counted(len(verified), 'import')}: {confirmed} confirmed, {refuted} refuted"
        tail += f", {failed} failed otherwise" if failed else ""
    out.print(f"{counted(n, 'distribution')} with compiled code: {', '.join(parts)}{tail}")
    if not report.has_conflicts and report.errors:
        out.print(f"[yellow]No NumPy ABI conflicts among what could be read; {counted(len(report.errors), 'error')} "
                  "above.[/]")
    elif not report.has_conflicts:
        out.print("[green]No NumPy ABI conflicts found.[/]")
