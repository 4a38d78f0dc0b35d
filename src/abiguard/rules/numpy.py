"""Judge a binary's NumPy facts against the numpy version of a real or hypothetical environment."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from abiguard.model import BinaryFacts, BinaryFinding, BuiltFor, CheckReport, Verdict

NUMPY2 = Version("2")


def abi(numpy: Version) -> Version:
    """The release whose C-API a numpy has: a pre-release or dev build of 2.0.0 already has NumPy 2's, so it
    compares as 2.0.0 (in version order 2.0.0rc1 comes before 2, and would pass for NumPy 1.x)."""
    return Version(numpy.base_version)


def judge(facts: BinaryFacts, numpy: Version | None) -> tuple[Verdict, str | None]:
    """The verdict for one binary and, when it is not ok, the consequence in one sentence."""
    if facts.built_for is BuiltFor.UNKNOWN:
        return Verdict.UNKNOWN, facts.reason
    if facts.built_for is BuiltFor.NONE:
        return Verdict.OK, None
    if numpy is None:
        return Verdict.BROKEN, "uses NumPy's C-API but numpy is not installed: fails at import"
    api = abi(numpy)
    if facts.built_for is BuiltFor.NUMPY1:
        if api < NUMPY2:
            return Verdict.OK, None
        if misbehaves_silently(facts):
            assert facts.producer is not None
            return Verdict.AT_RISK, (
                f"{facts.producer.value} built on NumPy 1.x: imports under numpy {numpy} but reads NumPy 1.x "
                "structures and can return wrong results"
            )
        if any(e.marker == "R6" for e in facts.evidence) and not _c_level(facts):
            return Verdict.BROKEN, f"fails at import under numpy {numpy}: 'numpy.dtype size changed'"
        return Verdict.BROKEN, (
            f"fails at import under numpy {numpy}: 'A module that was compiled using NumPy 1.x cannot be "
            "run in NumPy 2'"
        )
    floor = min_version(facts)
    if floor is not None and api < floor:
        return Verdict.BROKEN, (
            f"built for NumPy >= {facts.min_numpy}: fails at import under numpy {numpy} "
            "('module was compiled against NumPy C-API version ...')"
        )
    return Verdict.OK, None


def min_version(facts: BinaryFacts) -> Version | None:
    return Version(facts.min_numpy) if facts.min_numpy else None


def _c_level(facts: BinaryFacts) -> bool:
    """Whether numpy's own `_import_array()` from 1.x headers is compiled in (its literals R4, R4a, R4b)."""
    return any(e.marker in ("R4", "R4a", "R4b") for e in facts.evidence)


def misbehaves_silently(facts: BinaryFacts) -> bool:
    """A NumPy-1.x build that imports under NumPy 2 but reads 1.x structures: a binding (pybind11 < 2.12,
    rust-numpy < 0.22) without numpy's own `_import_array()`. With it (scipy 1.11's `_distance_pybind`:
    pybind11 < 2.12 and import_array), the import fails like any 1.x build."""
    return (facts.built_for is BuiltFor.NUMPY1 and facts.producer is not None
            and facts.producer.misbehaves_silently and not _c_level(facts))


@dataclass(frozen=True)
class Bound:
    """What the installed binaries demand of numpy, and who demands it."""

    specifier: str  # e.g. "<2" or ">=1.20"
    reasons: tuple[str, ...]  # "pandas 2.0.3: 37 shared objects built for NumPy 1.x"

    @property
    def floor(self) -> Version | None:
        return Version(self.specifier[2:]) if self.specifier.startswith(">=") else None


def numpy_bounds(report: CheckReport) -> list[Bound]:
    """`<2` while any NumPy-1.x build is installed; `>=X.Y` for the highest floor of the NumPy-2 builds. Of every
    distribution but numpy itself, and of the shared objects no distribution owns."""
    groups = [(f"{d.name} {d.version}", d.binaries) for d in report.distributions if d.name.lower() != "numpy"]
    groups += [(f"unowned {b.path}", (b,)) for b in report.unowned]
    v1: list[str] = []
    floors: dict[Version, list[str]] = {}
    for who, binaries in groups:
        old = [b for b in binaries if b.facts.built_for is BuiltFor.NUMPY1]
        if old:
            v1.append(f"{who}: {_built_for_numpy1(old)}")
        for b in binaries:
            if b.facts.built_for is BuiltFor.NUMPY2 and b.facts.min_numpy:
                floors.setdefault(Version(b.facts.min_numpy), []).append(who)
    bounds = [Bound("<2", tuple(v1))] if v1 else []
    if floors:
        top = max(floors)
        bounds.append(Bound(f">={top}", tuple(f"{w}: built for NumPy >= {top}" for w in sorted(set(floors[top])))))
    return bounds


def way_out_bounds(report: CheckReport) -> list[Bound]:
    """`numpy_bounds`, plus the floor a judged distribution declares when it leaves no numpy below 2: a way out
    to `numpy<2` would then trade one break for another (pandas 3.1 declares numpy>=2.0.2, and no installer
    asked to move numpy alone looks at it). Lower declared floors change nothing: installers take the newest
    numpy the bounds allow."""
    bounds = numpy_bounds(report)
    if not any(b.specifier == "<2" for b in bounds):
        return bounds
    declared = [Bound(f">={floor}", (f"{d.name} {d.version} declares {d.numpy_requirement}",))
                for d in report.distributions
                if (floor := _declared_floor(d.numpy_requirement)) is not None and floor >= NUMPY2]
    if not declared:
        return bounds
    top = max((b for b in (*bounds, *declared) if b.floor is not None), key=lambda b: b.floor or NUMPY2)
    return [b for b in bounds if b.floor is None] + [top]


def _declared_floor(requirement: str | None) -> Version | None:
    """The lowest numpy a `numpy>=X,<Y` requirement admits, when it names one (>=, >, ~=, ==)."""
    if not requirement:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specs = SpecifierSet(requirement.removeprefix("numpy"))
    except InvalidSpecifier:
        return None
    floors = [Version(s.version) for s in specs if s.operator in (">=", ">", "~=", "==") and "*" not in s.version]
    return max(floors, default=None)


def _built_for_numpy1(old: list[BinaryFinding]) -> str:
    risky = sum(1 for b in old if misbehaves_silently(b.facts))
    what = f"{len(old)} shared object{'s' if len(old) != 1 else ''} built for NumPy 1.x"
    return what + (f" ({risky} of them import but misbehave under NumPy 2)" if risky else "")


def satisfiable(bounds: list[Bound]) -> bool:
    """Whether some numpy meets every bound: not `<2` next to a floor of 2 or more."""
    floor = max((b.floor for b in bounds if b.floor is not None), default=None)
    return not (floor is not None and floor >= NUMPY2 and any(b.specifier == "<2" for b in bounds))
