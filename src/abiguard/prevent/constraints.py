"""The hidden ABI bounds of an environment, written as a constraints file for `pip/uv pip install -c`."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from abiguard.model import BuiltFor, CheckReport, Verdict
from abiguard.rules.numpy import NUMPY2, misbehaves_silently


class ConstraintsError(Exception):
    """No constraints file can be written; the message is one line for the user."""


@dataclass(frozen=True)
class Bound:
    specifier: str  # e.g. "<2" or ">=1.20"
    reasons: tuple[str, ...]  # "pandas 2.0.3: 37 modules built for NumPy 1.x"


def numpy_bounds(report: CheckReport) -> list[Bound]:
    """`<2` while any NumPy-1.x build is installed; `>=X.Y` for the highest floor of the NumPy-2 builds."""
    v1: list[str] = []
    floors: dict[Version, list[str]] = {}
    for d in report.distributions:
        if d.name.lower() == "numpy":
            continue
        old = [b for b in d.binaries if b.facts.built_for is BuiltFor.NUMPY1]
        if old:
            risky = sum(1 for b in old if misbehaves_silently(b.facts))
            what = f"{len(old)} shared objects built for NumPy 1.x" + (
                f" ({risky} of them import but misbehave under NumPy 2)" if risky else "")
            v1.append(f"{d.name} {d.version}: {what}")
        for b in d.binaries:
            if b.facts.built_for is BuiltFor.NUMPY2 and b.facts.min_numpy:
                floors.setdefault(Version(b.facts.min_numpy), []).append(f"{d.name} {d.version}")
    bounds = []
    if v1:
        bounds.append(Bound("<2", tuple(v1)))
    if floors:
        top = max(floors)
        who = sorted(set(floors[top]))
        bounds.append(Bound(f">={top}", tuple(f"{w}: built for NumPy >= {top}" for w in who)))
    return bounds


@dataclass(frozen=True)
class Constraints:
    bounds: list[Bound]
    not_judged: list[str]  # "h5py 3.16.0": distributions with shared objects that could not be read

    @property
    def line(self) -> str | None:
        """The requirement line, e.g. `numpy<2`, or None when nothing constrains numpy."""
        return "numpy" + ",".join(b.specifier for b in self.bounds) if self.bounds else None

    def to_json(self) -> dict[str, object]:
        return {"constraint": self.line, "not_judged": self.not_judged,
                "bounds": [{"specifier": b.specifier, "reasons": list(b.reasons)} for b in self.bounds]}


def constraints(report: CheckReport) -> Constraints:
    """The bounds; raises ConstraintsError when they contradict each other, since a file no numpy satisfies
    makes installers pick absurd releases (a 2015 sdist that names no numpy) or fail."""
    bounds = numpy_bounds(report)
    if len(bounds) == 2 and Version(bounds[1].specifier.removeprefix(">=")) >= NUMPY2:
        raise ConstraintsError(
            f"no numpy fits every installed binary: {bounds[0].reasons[0]} (needs numpy<2), while "
            f"{bounds[1].reasons[0]} (needs numpy{bounds[1].specifier}); run `abiguard fix` first")
    unknown = [f"{d.name} {d.version}" for d in report.distributions
               if any(b.verdict is Verdict.UNKNOWN for b in d.binaries)]
    return Constraints(bounds, unknown)


def render(report: CheckReport) -> str:
    """The constraints file, its reasons as comments."""
    found = constraints(report)
    env = report.environment
    lines = [
        f"# ABI bounds of {env.executable} (numpy {report.numpy_installed or 'not installed'}),",
        "# found by abiguard in the installed binaries. Use with: pip install -c FILE / uv pip install -c FILE",
    ]
    lines += [f"# not judged: {d} has shared objects that could not be read; its bound, if any, is not here"
              for d in found.not_judged]
    if found.line is None:
        lines.append("# no binary constrains numpy")
        return "\n".join(lines) + "\n"
    for b in found.bounds:
        lines += [f"#   numpy{b.specifier}: {r}" for r in b.reasons]
    lines.append(found.line)
    return "\n".join(lines) + "\n"
