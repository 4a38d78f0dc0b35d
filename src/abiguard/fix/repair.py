"""`fix`: from a scan to ranked plans, and (with --apply) to a repaired, re-checked environment."""

from __future__ import annotations

import os
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
    return plan_fix(current.report, current.installed, inspector, strategy=strategy, installer=installer, log=log,
                    index_url=index_url)


def recheck(env: TargetEnvironment, touched: set[str], *, verify: bool = True, timeout: float = 60.0) -> str | None:
    """After an install: None when the environment checks clean and the modules of `touched` import; else why not.

    `touched` (canonical names) should hold what the install changed and what was broken before it: after a
    numpy downgrade the modules that prove the fix are the culprit's, not numpy's. All those modules are
    first imported together in one process of the target (a couple of seconds even for pandas); only when
    that does not succeed cleanly is each imported in its own process, to say which fails and why (one
    interpreter start per module: about a minute for pandas on two cores)."""
    after = scan(env)
    bad = [d for d in after.report.distributions if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)]
    if bad:
        names = ", ".join(f"{d.name} {d.version} ({d.verdict.value})" for d in bad)
        return f"the environment still has ABI conflicts after the install: {names}"
    if not verify:
        return None
    modules = [b.module for d in after.report.distributions if canonicalize_name(d.name) in touched
               for b in d.binaries if b.module]
    if _import_together(env.executable, modules, timeout):
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


def affected_names(report: CheckReport) -> set[str]:
    """The distributions a fix is for: broken or at risk before it."""
    return {str(canonicalize_name(d.name)) for d in report.distributions
            if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)}


# Run as `python -I -B -c _TOGETHER TOKEN BYTECODE MODULE...`: imports every module in this one process, with
# what modules print sent to stderr, and writes TOKEN to the real stdout only when every import succeeded (a
# module that exits the process, or crashes it, therefore never passes). Python 3.6 syntax, like verify's child.
_TOGETHER = r"""
import os, sys
report = os.dup(1)
os.dup2(2, 1)
if sys.argv[2] and hasattr(sys, 'pycache_prefix'):
    sys.pycache_prefix = sys.argv[2]
    sys.dont_write_bytecode = False
ok = True
for name in sys.argv[3:]:
    try:
        __import__(name)
    except BaseException:
        ok = False
        break
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except BaseException:
        pass
if ok:
    os.write(report, sys.argv[1].encode('ascii'))
os._exit(0)
"""


def _import_together(python: str, modules: list[str], timeout: float) -> bool:
    """True when every module imports in one fresh process of `python`; False says nothing about which fails."""
    if not modules:
        return True
    import secrets
    import subprocess
    import tempfile

    token = "abiguard-ok-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="abiguard-recheck-", ignore_cleanup_errors=True) as scratch:
        try:
            proc = subprocess.run(
                [python, "-I", "-B", "-c", _TOGETHER, token, os.path.join(scratch, "bytecode"),
                 *dict.fromkeys(modules)],
                cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == 0 and proc.stdout.decode("ascii", "replace").strip() == token
