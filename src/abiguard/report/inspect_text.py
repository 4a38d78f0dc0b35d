"""Human-readable `inspect` output: per target, what it was built for, the evidence, and what reading cost."""

from __future__ import annotations

from packaging.version import Version
from rich.table import Table

from abiguard.binary.numpy import deciding_first
from abiguard.inspect import (
    BinaryItem,
    DirectoryItem,
    ErrorItem,
    InspectReport,
    Item,
    SearchItem,
    WheelItem,
)
from abiguard.model import BinaryFacts, BuiltFor, Verdict
from abiguard.report.markup import Out, counted, escape
from abiguard.sources.wheel import MemberResult

_BUILT_STYLE = {
    BuiltFor.NUMPY1: "bold red",
    BuiltFor.NUMPY2: "green",
    BuiltFor.NONE: "dim",
    BuiltFor.UNKNOWN: "magenta",
}
_VERDICT_STYLE = {Verdict.BROKEN: "bold red", Verdict.AT_RISK: "bold yellow", Verdict.UNKNOWN: "magenta",
                  Verdict.OK: "green"}
_SHOWN = 6


def render_inspect(report: InspectReport, out: Out, verbose: bool = False) -> None:
    """Print every item, then notes (skipped indexes, cache warnings) and the total cost."""
    for item in report.items:
        _item(item, out, verbose)
        out.print()
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    if report.requests or report.bytes_read:
        requests = f" in {counted(report.requests, 'HTTP request')}" if report.requests else ""
        out.print(f"[dim]read {_size(report.bytes_read)} of binaries and wheels{requests}[/]")


def _item(item: Item, out: Out, verbose: bool) -> None:
    if isinstance(item, ErrorItem):
        out.print(f"[bold red]error[/] {escape(item.target)}: {escape(item.message)}")
    elif isinstance(item, BinaryItem):
        _binary(item, out)
    elif isinstance(item, WheelItem):
        _wheel(item, out, verbose)
    elif isinstance(item, DirectoryItem):
        _directory(item, out, verbose)
    else:
        _search(item, out)


def _built(kind: BuiltFor) -> str:
    return f"[{_BUILT_STYLE[kind]}]{kind.value}[/]"


def _evidence(facts: BinaryFacts) -> str:
    """The deciding marker, not merely the earliest: producer markers only say who built it."""
    if not facts.evidence:
        return ""
    first = deciding_first(facts.evidence)[0]
    text = first.text if len(first.text) <= 70 else first.text[:67] + "..."
    return f"{first.marker} {text!r}"


def _facts_line(name: str, facts: BinaryFacts) -> str:
    parts = [_built(facts.built_for), escape(name)]
    if facts.min_numpy:
        parts.append(f"(numpy >= {facts.min_numpy})")
    if facts.producer:
        parts.append(f"[dim]{facts.producer.value}[/]")
    detail = _evidence(facts) or facts.reason or ""
    if detail:
        parts.append(f"[dim]- {escape(detail)}[/]")
    return " ".join(parts)


def _binary(item: BinaryItem, out: Out) -> None:
    out.print(_facts_line(item.module or item.path, item.facts))
    if item.module:
        out.print(f"    [dim]{escape(item.path)}[/]")
    _verdict(item.numpy, item.verdict, out, item.consequence)


def _verdict(numpy: Version | None, verdict: Verdict | None, out: Out, why: str | None = None) -> None:
    """With --numpy: said for every target (file, wheel or directory), "ok" included."""
    if numpy is not None and verdict is not None:
        because = f": {escape(why)}" if why else ""
        out.print(f"    with numpy {numpy}: [{_VERDICT_STYLE[verdict]}]{verdict.value}[/]{because}")


def _wheel(item: WheelItem, out: Out, verbose: bool) -> None:
    rep = item.report
    outcome = rep.outcome
    floor = f", needs numpy >= {outcome.min_numpy}" if outcome.min_numpy else ""
    out.print(f"{_built(outcome.built_for)}  [bold]{escape(rep.name)} {escape(rep.version)}[/]{floor}"
              f"  [dim]{escape(rep.filename)}[/]")
    _verdict(item.numpy, item.verdict, out)
    if item.installable is False:
        out.print(f"    [bold red]declares {escape(item.numpy_requirement or '')}[/]: installers will not put it "
                  f"beside numpy {item.numpy}")
    share = f" ({100 * rep.bytes_read / rep.wheel_size:.1f}%)" if rep.wheel_size else ""
    requests = f" in {counted(rep.requests, 'request')}" if rep.requests else ""
    cached = f", {item.cached_members} from cache" if item.cached_members else ""
    read = f"{len(outcome.members)} of {outcome.candidates} shared objects" if outcome.candidates else (
        "no shared object read")  # numpy's own wheel is not read: R0 decides
    out.print(f"    read {_size(rep.bytes_read)} of {_size(rep.wheel_size)}{share}{requests}; {read}{cached}")
    if outcome.note:
        style = "yellow" if outcome.sampled else "dim"
        out.print(f"    [{style}]{escape(outcome.note)}[/]")
    members = list(outcome.members)
    if not verbose:
        members = [m for m in members if m.facts.built_for in (BuiltFor.NUMPY1, BuiltFor.UNKNOWN)]
    _members(members, out, verbose)


def _members(members: list[MemberResult], out: Out, verbose: bool) -> None:
    limit = len(members) if verbose else _SHOWN
    for m in members[:limit]:
        out.print("    " + _facts_line(m.module or m.path, m.facts))
    if len(members) > limit:
        out.print(f"    [dim](+{len(members) - limit} more; --verbose lists all)[/]")


def _directory(item: DirectoryItem, out: Out, verbose: bool) -> None:
    contents = f"{counted(len(item.binaries), 'shared object')}, {counted(len(item.wheels), 'wheel')}"
    contents += f", {len(item.errors)} unreadable" if item.errors else ""
    out.print(f"{_built(item.built_for)}  [bold]{escape(item.target)}[/]  ({contents})")
    _verdict(item.numpy, item.verdict, out)
    shown = [b for b in item.binaries if verbose or b.facts.built_for is not BuiltFor.NONE]
    for b in shown:
        out.print("    " + _facts_line(b.module or b.path, b.facts))
    for w in item.wheels:
        _wheel(w, out, verbose)
    for e in item.errors:
        out.print(f"    [bold red]error[/] {escape(e.target)}: {escape(e.message)}")


def _search(item: SearchItem, out: Out) -> None:
    answer = f"[bold green]{item.found}[/]" if item.found else "[bold red]none found[/]"
    which = "newest" if item.newest else "first"
    out.print(f"[bold]{escape(item.project)}[/]: {which} release compatible with numpy {item.numpy}: {answer}")
    cutoff = f" uploaded before {item.cutoff.date()}" if item.cutoff else ""
    skipped = f"; {item.skipped_before_cutoff} skipped as{cutoff}" if item.skipped_before_cutoff else ""
    out.print(f"    {counted(item.candidates, 'release')} with a wheel for the target{skipped};"
              f" {len(item.inspected)} inspected")
    if item.note:
        out.print(f"    [dim]{escape(item.note)}[/]")
    if not item.inspected:
        return
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("version", "uploaded", "built for", "compatible", "read"):
        table.add_column(column)
    for w in item.inspected:
        rep = w.report
        uploaded = str(rep.extra.get("upload_time") or "")[:10]
        compatible = {True: "[green]yes[/]", False: "[red]no[/]", None: "[magenta]?[/]"}[w.compatible]
        if w.installable is False:
            compatible += f" [dim](declares {escape(w.numpy_requirement or '')})[/]"
        if rep.outcome.sampled:
            compatible += " [dim](sample)[/]"
        table.add_row(escape(rep.version), uploaded, _built(rep.outcome.built_for), compatible,
                      f"{_size(rep.bytes_read)} / {_size(rep.wheel_size)}")
    out.print(table)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
