"""`abiguard install`: resolve what an install would do, judge the result statically, then install or refuse.

The wheels that would land are read remotely (never downloaded whole) and judged together with the binaries
that stay. A refusal comes with the safe alternatives, found the way `fix` finds plans: the same install with
the distributions it would break pinned to their first compatible release (or, failing that, any release
from there; or, for a build that needs a newer numpy, the newest release that accepts the one the install
leaves), or with `numpy<2` (or the builds' floor) added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.version import Version

from abiguard.fix.planner import ReleaseInspector, first_release, judge_changes, numpy_floor
from abiguard.fix.repair import Scan
from abiguard.fix.resolver import Change, ResolveError, resolve
from abiguard.model import BuiltFor, canonical_name
from abiguard.model import Verdict as Health
from abiguard.rules.numpy import NUMPY2, abi

Log = Callable[[str], None]


@dataclass(frozen=True)
class Verdict:
    """What the install would do and what it would break (problems new to the environment only)."""

    args: tuple[str, ...]
    changes: tuple[Change, ...]
    problems: dict[str, str]
    notes: tuple[str, ...] = ()  # what cannot be read before the install (built at install): re-checked after it

    @property
    def safe(self) -> bool:
        return not self.problems


_NOT_MODELLED = {
    "--dry-run": "abiguard's own --dry-run goes before the requirements (before --)",
    "--target": "it installs outside the environment abiguard judges",
    "-t": "it installs outside the environment abiguard judges",
    "--prefix": "it installs outside the environment abiguard judges",
    "--root": "it installs outside the environment abiguard judges",
    "--user": "it installs outside the environment abiguard judges",
    "--system": "it installs outside the environment abiguard judges",
    "--python": "give --python to abiguard, before the requirements (before --)",
    "-p": "give --python to abiguard, before the requirements (before --)",
    "--force": "it is an abiguard option: put it before the requirements (before --)",
    "--installer": "it is an abiguard option: put it before the requirements (before --)",
    "--format": "it is an abiguard option: put it before the requirements (before --)",
    "--no-cache": "it is an abiguard option: put it before the requirements (before --)",
}


def unmodelled_option(args: Sequence[str]) -> str | None:
    """Why an installer option in `args` cannot be guarded, or None: the install judged must be the one run."""
    for arg in args:
        option = arg.partition("=")[0]
        if option in _NOT_MODELLED:
            return f"{option} cannot be used in a guarded install: {_NOT_MODELLED[option]}"
    return None


def index_url(args: Sequence[str]) -> str | None:
    """The `--index-url` (`-i`) among the installer arguments: the wheels judged must come from where the
    installer takes them."""
    for i, arg in enumerate(args):
        if arg in ("--index-url", "-i") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--index-url="):
            return arg.partition("=")[2]
    return None


def resolve_failure(message: str) -> tuple[str, str | None]:
    """The installer's refusal to resolve, and a hint. uv refuses an option it does not take (most are pip's:
    `--upgrade-strategy`) in its argument parser's words, followed by its usage line, which spells the
    arguments abiguard added and asks for uv's `--help`: that tail is dropped, and the hint names pip."""
    if "unexpected argument" not in message:
        return message, None
    lines = message.splitlines()
    kept = lines[: next((i for i, ln in enumerate(lines) if ln.startswith("Usage:")), len(lines))]
    return "\n".join(kept), "uv does not take that option; pip may: put --installer pip before --"


def abiguard_command() -> list[str]:
    """This abiguard, spelled to run when pasted: by name when the shell finds this very one, else by path, else
    as a module of the interpreter running it (`python -m abiguard`, or a PATH without it)."""
    import os
    import shutil
    import sys

    me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me).startswith("abiguard") and os.access(me, os.X_OK) and os.path.isfile(me):
        found = shutil.which("abiguard")
        return ["abiguard"] if found and os.path.realpath(found) == me else [me]
    return [sys.executable, "-m", "abiguard"]


def judge_install(current: Scan, args: Sequence[str], inspector: ReleaseInspector, installer: str,
                  log: Log | None = None) -> Verdict:
    """What exactly `install args` would change (its dry run, not a resolution of the whole environment: a
    plain `-U numpy` upgrades numpy alone and may break what depends on it) and what that would break."""
    resolution = resolve(current.env, current.installed, list(args), installer=installer, whole_environment=False)
    before = judge_changes(current.report, current.installed, (), inspector).problems
    after = judge_changes(current.report, current.installed, resolution.changes, inspector, log)
    new = {name: why for name, why in after.problems.items() if name not in before}
    return Verdict(tuple(args), resolution.changes, new, tuple(after.notes))


def alternatives(current: Scan, verdict: Verdict, inspector: ReleaseInspector, installer: str,
                 log: Log | None = None) -> list[Verdict]:
    """The safe variants of the install, at most one per way out, fewest changes first: move what it would break exactly
    as far as needed (as `fix` does: up to its first release built for the numpy the install leaves, or back
    to the newest one when its build needs a newer numpy), else anywhere from there; or keep numpy where those
    builds work. Each is resolved and judged like the install itself."""
    installed = current.installed
    numpy_after = next((c.new for c in verdict.changes if c.name == "numpy"), installed.get("numpy"))
    if numpy_after is None:
        return []
    numpy = Version(numpy_after)
    after = {**installed, **{c.name: c.new for c in verdict.changes if c.new}}
    floors = {name: _floor(current, inspector, name, after[name])
              for name in verdict.problems if name in after and name != "numpy"}
    too_old = {name: floor for name, floor in floors.items() if floor is not None and floor > abi(numpy)}
    pins: list[str] = []
    relaxed: list[str] = []
    for name in floors:
        if name in too_old:
            found = inspector.last_compatible(f"{name}<{after[name]}", numpy)
            pin, relax = f"{name}=={found}", f"{name}<={found}"
        elif abi(numpy) >= NUMPY2:  # built for NumPy 1.x: its first release built for NumPy 2
            found, _why = first_release(current.report, inspector, name, numpy)
            pin, relax = f"{name}=={found}", f"{name}>={found}"
        else:  # no build of it to move to: unreadable, or it needs numpy, which the install removes
            found = None
        if found is None:
            pins = []
            break
        pins.append(pin)
        relaxed.append(relax)
    ways: list[list[list[str]]] = []  # each way out: its variants, the first safe one taken
    if pins:
        ways.append([[*verdict.args, *pins], [*verdict.args, *relaxed]])
    if abi(numpy) >= NUMPY2 and len(too_old) < len(floors):
        ways.append([[*verdict.args, "numpy<2"]])
    if too_old:
        raised = max(too_old.values())
        ways.append([[*verdict.args, f"numpy>={raised}"]])
        moved = _first_builds_for(current, inspector, raised, {c.name for c in verdict.changes})
        if moved:  # numpy raised for the new build, and what is built for NumPy 1.x moved along with it
            ways.append([[*verdict.args, f"numpy>={raised}", *moved]])
    found_safe: list[Verdict] = []
    for variants in ways:
        for args in variants:
            try:
                candidate = judge_install(current, args, inspector, installer, log)
            except ResolveError:
                continue
            if candidate.safe:
                found_safe.append(candidate)
                break
    # fewest changes first: moving what the install breaks may turn out needless once resolved (the resolver
    # took a release of the new package that keeps numpy), while "numpy<2" changes nothing else
    return sorted(found_safe, key=lambda v: len(v.changes))


def _first_builds_for(current: Scan, inspector: ReleaseInspector, numpy: Version, changing: set[str]) -> list[str]:
    """`name>=first` for every installed distribution built for NumPy 1.x that the install leaves in place, its
    first release built for `numpy` (a NumPy-2 one); [] when one has none, or when nothing needs moving."""
    if abi(numpy) < NUMPY2:
        return []
    moved = []
    for d in current.report.distributions:
        key = canonical_name(d.name)
        if key in changing or key == "numpy" or not any(b.facts.built_for is BuiltFor.NUMPY1 for b in d.binaries):
            continue
        found, _why = first_release(current.report, inspector, d.name, numpy)
        if found is None:
            return []
        moved.append(f"{key}>={found}")
    return moved


def _floor(current: Scan, inspector: ReleaseInspector, name: str, version: str) -> Version | None:
    """The oldest numpy that this release of `name` (installed, or landing with the install) accepts."""
    if current.installed.get(name) == version:
        dist = next((d for d in current.report.distributions if canonical_name(d.name) == name), None)
        return numpy_floor(dist) if dist is not None else None
    facts = inspector.release(name, version)
    return Version(facts.min_numpy) if facts.built_for is BuiltFor.NUMPY2 and facts.min_numpy else None


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
