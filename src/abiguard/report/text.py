"""Human-readable `check` report: per distribution, what breaks, the evidence, why pip allowed it, the way out."""

from __future__ import annotations

from abiguard.model import BinaryFinding, BuiltFor, CheckReport, DistributionFinding, Verdict
from abiguard.report.markup import Out, counted, escape

_STYLE = {
    Verdict.BROKEN: "bold red",
    Verdict.AT_RISK: "bold yellow",
    Verdict.UNKNOWN: "magenta",
    Verdict.OK: "green",
}
_MODULES_SHOWN = 6
_PRODUCER_MARKERS = ("R8", "R9", "pybind11")


def render_check(report: CheckReport, out: Out, verbose: bool = False) -> None:
    env = report.environment
    numpy = report.numpy or "not installed"
    what_if = f" (hypothetical; installed: {report.numpy_installed or 'none'})" if report.hypothetical else ""
    where = f"for {env.platform}, from" if _locked(report) else "at"
    out.print(f"[bold]Python {env.python_version}[/] {where} {escape(env.executable)}, numpy {numpy}{what_if}")
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
    for message in report.errors:
        out.print(f"[bold red]error[/]: {escape(message)}")
    if report.errors:
        out.print()
    _refuted(report, out)
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
        if dist.numpy_requirement is not None or not _locked(report):
            out.print(f"    why pip allowed it: {escape(_why(dist, report))}")
        for line in _ways_out(dist, report):
            out.print(f"    way out: {escape(line)}")
    out.print()


def _why(dist: DistributionFinding, report: CheckReport) -> str:
    from abiguard.rules.declared import has_upper_bound

    req = dist.numpy_requirement
    if req is None:
        return (f"{dist.name} {dist.version} declares no numpy requirement, so no installer relates the two; "
                "the ABI bound exists only in its binaries")
    if report.numpy is None:
        return (f"{dist.name} {dist.version} requires {req!r}, but numpy was removed (uninstalling does not ask "
                "what needs it); pip check reports this one, see declared requirements")
    if has_upper_bound(req):
        return f"{dist.name} {dist.version} requires {req!r}, which pip check enforces; see declared requirements"
    return (f"{dist.name} {dist.version} requires {req!r}: no upper bound, so pip and uv install any numpy and "
            "`pip check` reports nothing")


def _locked(report: CheckReport) -> bool:
    """A report on a lockfile (`lock-check`): nothing is installed, so the ways out are pins, not installs."""
    return not report.environment.site_packages


def _ways_out(dist: DistributionFinding, report: CheckReport) -> list[str]:
    from packaging.version import Version

    built = {b.facts.built_for for b in dist.affected}
    locked = _locked(report)
    if report.numpy is None:
        return ["add numpy to the lockfile" if locked else "pip install numpy"]
    floors = [Version(b.facts.min_numpy) for b in dist.affected if b.facts.min_numpy]
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
    if floors:
        need = max(floors)
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


def _refuted(report: CheckReport, out: Out) -> None:
    rows = [
        (d.name, b)
        for d in report.distributions
        for b in d.binaries
        if b.verified is not None and b.verified.confirms is False
    ]
    if not rows:
        return
    from rich.table import Table

    table = Table(title="Predictions refuted by importing (please report these as abiguard bugs)")
    for col in ("distribution", "module", "predicted", "observed"):
        table.add_column(col)
    for name, b in rows:
        assert b.verified is not None
        observed = b.verified.outcome + (f": {b.verified.message}" if b.verified.message else "")
        table.add_row(name, b.module or b.path, b.verdict.value, observed)
    out.print(table)
    out.print()


def _summary(report: CheckReport, out: Out) -> None:
    n = len(report.distributions)
    parts = [
        f"{report.count(Verdict.BROKEN)} broken",
        f"{report.count(Verdict.AT_RISK)} at risk",
        f"{report.count(Verdict.UNKNOWN)} unknown",
        f"{report.count(Verdict.OK)} ok",
    ]
    tail = f"; {counted(len(report.declared), 'declared-requirement problem')}" if report.declared else ""
    verified = [b.verified for d in report.distributions for b in d.binaries if b.verified is not None]
    if verified:
        confirmed = sum(1 for v in verified if v.confirms is True)
        refuted = sum(1 for v in verified if v.confirms is False)
        tail += f"; verified {counted(len(verified), 'import')}: {confirmed} confirmed, {refuted} refuted"
    out.print(f"{counted(n, 'distribution')} with compiled code: {', '.join(parts)}{tail}")
    if not report.has_conflicts and report.errors:
        out.print(f"[yellow]No NumPy ABI conflicts among what could be read; {len(report.errors)} errors above.[/]")
    elif not report.has_conflicts:
        out.print("[green]No NumPy ABI conflicts found.[/]")
