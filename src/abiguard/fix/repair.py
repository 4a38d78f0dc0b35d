"""`fix`: from a scan to ranked plans, and (with --apply) to a repaired, re-checked environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from abiguard.check import check_environment, verify_findings
from abiguard.fix.planner import FixPlan, Plan, plan_fix
from abiguard.model import CheckReport, TargetEnvironment, Verdict
from abiguard.sources.environment import InstalledDistribution, iter_distributions

Log = Callable[[str], None]


@dataclass(frozen=True)
class Scan:
    env: TargetEnvironment
    dists: list[InstalledDistribution]
    report: CheckReport

    @property
    def installed(self) -> dict[str, str]:
        return {d.key: d.version for d in self.dists}


def scan(env: TargetEnvironment, use_cache: bool = True) -> Scan:
    dists = list(iter_distributions(env))
    return Scan(env, dists, check_environment(env, use_cache=use_cache, dists=dists))


def plan(
    current: Scan, *, strategy: str, installer: str, use_cache: bool = True, index_url: str | None = None,
    log: Log | None = None,
) -> FixPlan:
    from abiguard.fix.inspector import IndexInspector

    inspector = IndexInspector(current.env, use_cache=use_cache, index_url=index_url)
    return plan_fix(current.report, current.installed, inspector, strategy=strategy, installer=installer, log=log)


def recheck(env: TargetEnvironment, touched: set[str], *, verify: bool = True, timeout: float = 60.0) -> str | None:
    """After an install: None when the environment checks clean and the touched modules import; else why not."""
    after = scan(env)
    bad = [d for d in after.report.distributions if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)]
    if bad:
        names = ", ".join(f"{d.name} {d.version} ({d.verdict.value})" for d in bad)
        return f"the environment still has ABI conflicts after the install: {names}"
    if not verify:
        return None
    verified = verify_findings(after.report, everything=True, timeout=timeout, only=touched)
    failed = [
        f"{b.module}: {b.verified.message}"
        for d in verified.distributions
        for b in d.binaries
        if b.verified is not None and b.verified.outcome in ("numpy-abi", "crashed")
    ]
    if failed:
        return f"{len(failed)} modules fail to import after the install, e.g. {failed[0]}"
    return None


def touched_names(chosen: Plan) -> set[str]:
    return {str(canonicalize_name(c.name)) for c in chosen.changes}
