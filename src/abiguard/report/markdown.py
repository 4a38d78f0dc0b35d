"""`check` and `lock-check` as GitHub-flavoured Markdown: a job summary (`>> $GITHUB_STEP_SUMMARY`) or a pull
request comment. The sentences are the text report's (`explain`); the details of each distribution fold away."""

from __future__ import annotations

from abiguard.model import BinaryFinding, CheckReport, DistributionFinding, Verdict
from abiguard.report import explain
from abiguard.report.markup import counted, listed

_MODULES_SHOWN = 20


def render_markdown(report: CheckReport) -> str:
    lines = ["## abiguard: NumPy ABI check", "", _text(explain.headline(report)), ""]
    if explain.nothing_checked(report):
        lines += [f"Nothing was checked: {_code(report.environment.executable)} lists no wheel to read for this "
                  "target.", ""]
    else:
        last = explain.verdict_line(report, errors_are="below")
        lines += [f"**{_text(explain.summary(report))}**" + (f"  \n{_text(last)}" if last else ""), ""]
    shown = [d for d in report.distributions if d.verdict is not Verdict.OK]
    if shown:
        lines += ["| verdict | distribution | shared objects | consequence |", "|---|---|---|---|"]
        for d in shown:
            affected = explain.shown(d)
            lines.append(f"| **{d.verdict.value}** | {_cell(f'{d.name} {d.version}')} | "
                         f"{_cell(explain.counts(d, noun=False))} | {_cell(explain.consequence(affected[0]))} |")
        lines.append("")
        for d in shown:
            lines += _details(d, report)
    unowned = [b for b in report.unowned if b.verdict is not Verdict.OK]
    if unowned:
        lines += ["### Shared objects that no installed distribution owns", ""]
        lines += [f"- **{b.verdict.value}** {_code(b.path)}: {_text(explain.consequence(b))}" for b in unowned]
        lines.append("")
    if report.declared:
        lines += [f"### {explain.declared_title(report)}", ""]
        lines += [f"- {_text(explain.declared_line(p, explain.locked(report)))}" for p in report.declared]
        lines.append("")
    for title, items in (("Errors", report.errors), ("Notes", report.notes)):
        if items:
            lines += [f"### {title}", ""] + [f"- {_text(m)}" for m in items] + [""]
    failures = explain.failures(report) + [b for _, b in explain.refuted(report)]
    if failures:
        lines += ["### Imports", ""] + [f"- {_import(b)}" for b in failures] + [""]
    return "\n".join(lines)


def _details(dist: DistributionFinding, report: CheckReport) -> list[str]:
    affected = explain.shown(dist)
    names = [b.module or b.path for b in affected]
    items = [f"modules: {listed([_code(n) for n in names], _MODULES_SHOWN)}"]
    items += [f"evidence: {_text(e)}" for e in explain.evidence(affected[0])]
    unknown = explain.unjudged(dist)
    if unknown:
        more = f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""
        items.append(f"also {counted(len(unknown), 'shared object')} not judged: "
                     f"{_code(unknown[0].path)}: {_text(explain.consequence(unknown[0]))}{more}")
    why = explain.why(dist, report) if dist.verdict in explain.BAD else None
    if why is not None:
        items.append(f"why pip allowed it: {_text(why)}")
    items += [f"way out: {_text(w)}" for w in explain.ways_out(dist, report)]
    summary = f"{dist.verdict.value}: {dist.name} {dist.version}"
    return [f"<details><summary>{_html(summary)}</summary>", "", *(f"- {i}" for i in items), "", "</details>", ""]


def _import(b: BinaryFinding) -> str:
    assert b.verified is not None
    what = "refuted the static verdict" if b.verified.confirms is False else "failed otherwise"
    message = f": {_text(b.verified.message)}" if b.verified.message else ""
    via = f" while importing {_code(b.verified.via)}" if b.verified.via else ""
    return f"{_code(b.module or b.path)} ({b.verdict.value}) {what}: **{b.verified.outcome}**{via}{message}"


def _code(text: str) -> str:
    """An inline code span that holds any text: fenced by more backticks than any run inside it."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _text(text: str) -> str:
    """Plain text that Markdown and the HTML it allows leave as written."""
    out = text.replace("\\", "\\\\")
    for ch in "`*_[]|":
        out = out.replace(ch, "\\" + ch)
    return _html(out)


def _cell(text: str) -> str:
    return _text(text).replace("\n", " ")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
