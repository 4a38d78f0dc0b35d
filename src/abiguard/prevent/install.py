"""`abiguard install`: resolve what an install would do, judge the result statically, then install or refuse.

The wheels that would land are read remotely (never downloaded whole) and judged together with the binaries
that stay. A refusal comes with a safe alternative found the way `fix` finds plans: the same install with
the distributions it would break pinned to their first compatible release (or, failing that, any release
from there), or with `numpy<2` added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.version import Version

from abiguard.fix.planner import ReleaseInspector, first_release, judge_changes
from abiguard.fix.repair import Scan
from abiguard.fix.resolver import Change, ResolveError, resolve
from abiguard.model import Verdict as Health
from abiguard.model import canonical_name
from abiguard.rules.numpy import NUMPY2

Log = Callable[[str], None]


@dataclass(frozen=True)
class Verdict:
    """What the install would do and what it would break (problems new to the environment only)."""

    args: tuple[str, ...]
    changes: tuple[Change, ...]
    problems: dict[str, str]

    @property
    def safe(self) -> bool:
        return not self.problems


def judge_install(current: Scan, args: Sequence[str], inspector: ReleaseInspector, installer: str,
                  log: Log | None = None) -> Verdict:
    resolution = resolve(current.env, current.installed, list(args), installer=installer)
    before, _ = judge_changes(current.report, current.installed, (), inspector)
    after, _ = judge_changes(current.report, current.installed, resolution.changes, inspector, log)
    new = {name: why for name, why in after.items() if name not in before}
    return Verdict(tuple(args), resolution.changes, new)


def alternatives(current: Scan, verdict: Verdict, inspector: ReleaseInspector, installer: str,
                 log: Log | None = None) -> Verdict | None:
    """The first variant of the install that is safe: upgrade what it would break exactly as far as needed
    (as `fix` does), else to any release from there, else hold numpy below 2."""
    numpy_after = next((c.new for c in verdict.changes if c.name == "numpy" and c.new), None)
    candidates: list[list[str]] = []
    if numpy_after is not None and Version(numpy_after) >= NUMPY2:
        broken = [name for name in verdict.problems if name != "numpy"]
        firsts: list[str] = []
        for name in broken:
            first, _why = first_release(current.report, inspector, name, Version(numpy_after))
            if first is None:
                firsts = []
                break
            firsts.append(f"{name}=={first}")
        if firsts:
            candidates.append([*verdict.args, *firsts])
            candidates.append([*verdict.args, *(pin.replace("==", ">=", 1) for pin in firsts)])
        candidates.append([*verdict.args, "numpy<2"])
    for args in candidates:
        try:
            candidate = judge_install(current, args, inspector, installer, log)
        except ResolveError:
            continue
        if candidate.safe:
            return candidate
    return None


def recheck_new(current: Scan, *, use_cache: bool = True) -> str | None:
    """After a guarded install: None unless a distribution that was not broken or at risk before now is.

    Conflicts the environment already had are not the install's doing (`judge_install` ignores them too), so
    they must not undo it: installing an unrelated package into an already broken environment is allowed."""
    from abiguard.fix.repair import scan

    bad = (Health.BROKEN, Health.AT_RISK)
    already = {canonical_name(d.name) for d in current.report.distributions if d.verdict in bad}
    after = scan(current.env, use_cache=use_cache)
    new = [d for d in after.report.distributions
           if d.verdict in bad and canonical_name(d.name) not in already]
    if new:
        names = ", ".join(f"{d.name} {d.version} ({d.verdict.value})" for d in new)
        return f"the install created ABI conflicts: {names}"
    return None
