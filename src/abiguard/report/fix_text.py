"""Human-readable `fix` plans: a table per plan and the exact commands for uv and pip."""

from __future__ import annotations

import shlex

from rich.table import Table

from abiguard.fix.planner import FixPlan
from abiguard.report.explain import BAD
from abiguard.report.markup import Out, counted, escape, listed


def render_plans(fix: FixPlan, out: Out) -> None:
    report = fix.report
    under = f"under numpy {report.numpy}" if report.numpy is not None else "with numpy not installed"
    culprits = [d for d in report.distributions if d.affected]
    if culprits:
        names = ", ".join(f"{d.name} {d.version}" for d in culprits)
        needs = counted(len(culprits), "distribution needs", "distributions need")
        out.print(f"[bold]{needs} a fix[/] {under}: {escape(names)}")
    unowned = [b.path for b in report.unowned if b.verdict in BAD]
    if unowned:
        needs = counted(len(unowned), "shared object that no distribution owns needs",
                        "shared objects that no distribution owns need")
        out.print(f"[bold]{needs} a fix[/] {under}: {escape(listed(unowned, 3))}; only moving numpy fixes "
                  f"{'it' if len(unowned) == 1 else 'them'} (or rebuilding against this numpy)")
    out.print()
    for rank, plan in enumerate(fix.plans, 1):
        label = " (recommended)" if rank == 1 else ""
        out.print(f"[bold]Plan {rank}{label}: {plan.strategy}[/]  "
                  f"{counted(len(plan.changes), 'change')}, checked statically: [green]no ABI conflict left[/]")
        table = Table(show_edge=False, pad_edge=False)
        for col in ("package", "from", "to", "why"):
            table.add_column(col)
        for c in plan.changes:
            table.add_row(c.name, c.old or "-", c.new or "(removed)", plan.why.get(c.name, ""))
        out.print(table)
        for installer, other in (("uv", "pip"), ("pip", "uv")):
            command = plan.commands.get(installer)
            if command is not None:
                out.print(f"  {installer}:  [cyan]{escape(shlex.join(command))}[/]")
            elif other in plan.commands:
                out.print(f"  {installer}:  (not available here; use the {other} command)")
        for note in plan.notes:
            out.print(f"  note: {escape(note)}")
        out.print()
    for r in fix.rejected:
        out.print(f"[yellow]not offered[/]: {r.strategy}: {escape(r.reason)}")
    if fix.rejected:
        out.print()
    if not fix.plans:
        out.print("[bold red]No safe plan found.[/] Each strategy above would leave an ABI conflict or cannot "
                  "be resolved.")
