"""`fix`: from a scan to ranked plans, and (with --apply) to a repaired, re-checked environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from abiguard.check import check_environment, read_distributions
from abiguard.fix.planner import FixPlan, Plan, plan_fix
from abiguard.model import CheckReport, TargetEnvironment, Verdict, canonical_name
from abiguard.sources.environment import InstalledDistribution

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
    read = read_distributions(env, use_cache)
    return Scan(env, read[0], check_environment(env, use_cache=use_cache, read=read))


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
    first imported together in one process of the target (a couple of seconds even for pandas); only the
    ones that fail there (numpy ships test modules that never import) are then imported each in its own
    process, which says why. Isolating every module costs one interpreter start per module: about a minute
    for pandas on two cores, so that is done only when the shared process itself dies or hangs."""
    from abiguard.verify import CRASHED, NUMPY_ABI, verify_modules

    after = scan(env)
    bad = [d for d in after.report.distributions if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)]
    if bad:
        names = ", ".join(f"{d.name} {d.version} ({d.verdict.value})" for d in bad)
        return f"the environment still has ABI conflicts after the install: {names}"
    if not verify:
        return None
    modules = list(dict.fromkeys(b.module for d in after.report.distributions
                                 if canonical_name(d.name) in touched for b in d.binaries if b.module))
    together = _import_together(env.executable, modules, timeout)
    suspects = modules if together is None else together
    outcomes = verify_modules(env.executable, suspects, timeout=timeout)
    failed = [f"{m}: {o.message}" for m, o in outcomes.items() if o.outcome in (NUMPY_ABI, CRASHED)]
    if failed:
        return f"{len(failed)} modules fail to import after the install, e.g. {failed[0]}"
    return None


def touched_names(chosen: Plan) -> set[str]:
    return {canonical_name(c.name) for c in chosen.changes}


def affected_names(report: CheckReport) -> set[str]:
    """The distributions a fix is for: broken or at risk before it."""
    return {canonical_name(d.name) for d in report.distributions
            if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)}


# Run as `python -I -B -c _TOGETHER TOKEN MODULE...`: imports every module in this one process, with what the
# modules print sent to stderr, and at the end writes TOKEN and the names that failed to the real stdout. A
# module that ends or crashes the process leaves no such line. Python 3.6 syntax, like verify's child. `-B`
# writes nothing into the environment; a shared bytecode directory (as verify uses) would not help a single
# process, and writing it costs more than compiling in memory.
_TOGETHER = r"""
import os, sys
report = os.dup(1)
os.dup2(2, 1)
failed = []
for name in sys.argv[2:]:
    try:
        __import__(name)
    except BaseException:
        failed.append(name)
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except BaseException:
        pass
os.write(report, (sys.argv[1] + ' '.join(failed)).encode('utf-8'))
os._exit(0)
"""


def _import_together(python: str, modules: list[str], timeout: float) -> list[str] | None:
    """The modules that fail to import in one fresh process of `python` that imports them all, in order;
    None when that process did not get to the end (crash, exit, timeout)."""
    if not modules:
        return []
    import secrets
    import subprocess
    import tempfile

    token = "abiguard-imported-" + secrets.token_hex(8) + ":"
    with tempfile.TemporaryDirectory(prefix="abiguard-recheck-", ignore_cleanup_errors=True) as scratch:
        try:
            proc = subprocess.run(
                [python, "-I", "-B", "-c", _TOGETHER, token, *modules],
                cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or not out.startswith(token):
        return None
    return out[len(token):].split()
