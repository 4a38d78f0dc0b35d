"""Human-readable `check` report: per distribution, what breaks, the evidence, why pip allowed it, the way out."""

from __future__ import annotations

from abiguard.model import CheckReport, DistributionFinding, Verdict
from abiguard.report import explain
from abiguard.report.markup import Out, escape

_STYLE = {
    Verdict.BROKEN: "bold red",
    Verdict.AT_RISK: "bold yellow",
    Verdict.UNKNOWN: "magenta",
    Verdict.OK: "green",
}
_MODULES_SHOWN = 6
_FAILURES_SHOWN = 10


def render_check(report: CheckReport, out: Out, verbose: bool = False) -> None:
    out.print(f"[bold]{escape(explain.headline(report))}[/]")
    out.print()
    for dist in report.distributions:
        if dist.verdict is not Verdict.OK or verbose:
            _distribution(dist, report, out, verbose)
    unowned_bad = [b for b in report.unowned if b.verdict is not Verdict.OK or verbose]
    if unowned_bad:
        out.print("[bold]Shared objects that no installed distribution owns[/]")
        for b in unowned_bad:
            out.print(f"  {_verdict(b.verdict)} {escape(b.path)}: {escape(explain.consequence(b))}")
        out.print()
    if report.declared:
        title, _, why = explain.declared_title(report).partition(" (")
        out.print(f"[bold]{escape(title)}[/] ({escape(why)}")
        for p in report.declared:
            out.print(f"  {escape(explain.declared_line(p, explain.locked(report)))}")
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


def _distribution(dist: DistributionFinding, report: CheckReport, out: Out, verbose: bool) -> None:
    affected = explain.shown(dist)
    count = explain.counts(dist)
    out.print(f"{_verdict(dist.verdict)}  [bold]{escape(dist.name)} {escape(dist.version)}[/]  ({escape(count)})")
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
    for line in explain.evidence(affected[0]):
        out.print(f"    evidence: {escape(line)}")
    out.print(f"    consequence: {escape(explain.consequence(affected[0]))}")
    unknown = explain.unjudged(dist)
    for n, b in enumerate(unknown if verbose else unknown[:1]):
        lead = f"also {len(unknown)} not judged" if n == 0 else "also not judged"
        more = f" (+{len(unknown) - 1} more; --verbose lists all)" if len(unknown) > 1 and not verbose else ""
        out.print(f"    {lead}: {escape(b.path)}: {escape(explain.consequence(b))}{more}")
    if dist.verdict in explain.BAD:
        why = explain.why(dist, report)
        if why is not None:
            out.print(f"    why pip allowed it: {escape(why)}")
    for line in explain.ways_out(dist, report):
        out.print(f"    way out: {escape(line)}")
    out.print()


def _refuted(report: CheckReport, out: Out) -> None:
    rows = explain.refuted(report)
    if not rows:
        return
    out.print("[bold]Predictions refuted by importing[/] (please report these as abiguard bugs)")
    for name, b in rows:
        assert b.verified is not None
        observed = b.verified.outcome + (f": {b.verified.message}" if b.verified.message else "")
        out.print(f"  {escape(name or '(unowned)')} {escape(b.module or b.path)}: predicted {b.verdict.value}, "
                  f"observed {escape(observed)}")
    out.print()


def _failed(report: CheckReport, out: Out, verbose: bool) -> None:
    failures = explain.failures(report)
    if not failures:
        return
    out.print("[bold]Imports that failed, neither confirming nor refuting a verdict[/]")
    shown = failures if verbose else failures[:_FAILURES_SHOWN]
    for b in shown:
        assert b.verified is not None
        message = f": {b.verified.message}" if b.verified.message else ""
        via = f" while importing {b.verified.via}" if b.verified.via else ""
        out.print(f"  {escape(b.module or b.path)}: [bold]{b.verified.outcome}[/]{escape(via + message)}")
    if len(failures) > len(shown):
        out.print(f"  (+{len(failures) - len(shown)} more; --verbose lists all)")
    out.print()


def _summary(report: CheckReport, out: Out) -> None:
    if explain.nothing_checked(report):
        out.print(f"[yellow]Nothing was checked: {escape(report.environment.executable)} lists no wheel to read "
                  "for this target.[/]")
        return
    out.print(escape(explain.summary(report)))
    last = explain.verdict_line(report)
    if last:
        out.print(f"[{'yellow' if report.errors else 'green'}]{escape(last)}[/]")
