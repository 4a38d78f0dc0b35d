"""Machine-readable output, schema 1. Field names are stable; additions only (see README)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from abiguard import __version__
from abiguard.model import BinaryFinding, CheckReport, Verdict

if TYPE_CHECKING:
    from abiguard.fix.apply import ApplyResult
    from abiguard.fix.planner import FixPlan

SCHEMA = 1


def envelope(**body: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "tool": {"name": "abiguard", "version": __version__}, **body}


def check_document(report: CheckReport) -> dict[str, Any]:
    env = report.environment
    binaries: list[BinaryFinding] = [b for d in report.distributions for b in d.binaries]
    binaries += list(report.unowned)
    verified = [b.verified for b in binaries if b.verified is not None]
    return envelope(
        environment={
            "python": env.python_version,
            "executable": env.executable,
            "prefix": env.prefix,
            "platform": env.platform,
            "site_packages": list(env.site_packages),
            "numpy": report.numpy,
            "numpy_installed": report.numpy_installed,
            "hypothetical_numpy": report.hypothetical,
        },
        distributions=[d.to_json() for d in report.distributions],
        unowned=[b.to_json() for b in report.unowned],
        declared=[p.to_json() for p in report.declared],
        errors=list(report.errors),
        notes=list(report.notes),
        summary={
            "distributions": len(report.distributions),
            "binaries": len(binaries),
            "broken": report.count(Verdict.BROKEN),
            "at_risk": report.count(Verdict.AT_RISK),
            "unknown": report.count(Verdict.UNKNOWN),
            "ok": report.count(Verdict.OK),
            "binaries_broken": sum(1 for b in binaries if b.verdict is Verdict.BROKEN),
            "binaries_at_risk": sum(1 for b in binaries if b.verdict is Verdict.AT_RISK),
            "unowned": len(report.unowned),
            "declared": len(report.declared),
            "verified": len(verified),
            "confirmed": sum(1 for v in verified if v.confirms is True),
            "refuted": sum(1 for v in verified if v.confirms is False),
            "bytes_read": report.bytes_read,
            "bytes_total": report.bytes_total,
            "conflicts": report.has_conflicts,
            "checked": report.checked,
        },
    )


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(_unicode(document), indent=2)


def _unicode(value: Any) -> Any:
    """`value` with every lone surrogate (a file name's byte that is not UTF-8, as Python keeps it) spelled
    `\\udcff`, as the text report shows it: strict JSON parsers refuse a lone surrogate."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_unicode(k): _unicode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unicode(v) for v in value]
    return value


def fix_document(fix: FixPlan, installer: str, applied: ApplyResult | None) -> dict[str, Any]:
    env = fix.report.environment
    return envelope(
        environment={"python": env.python_version, "executable": env.executable, "numpy": fix.report.numpy},
        installer=installer,
        nothing_to_do=fix.nothing_to_do,
        plans=[p.to_json() for p in fix.plans],
        rejected=[r.to_json() for r in fix.rejected],
        applied=None if applied is None else {
            "ok": applied.ok, "message": applied.message, "restored": applied.restored,
            "snapshot": str(applied.snapshot) if applied.snapshot else None,
        },
    )
