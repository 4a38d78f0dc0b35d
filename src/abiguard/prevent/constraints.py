"""The hidden ABI bounds of an environment, written as a constraints file for `pip/uv pip install -c`."""

from __future__ import annotations

from dataclasses import dataclass

from abiguard.model import CheckReport, Verdict
from abiguard.rules.declared import admits
from abiguard.rules.numpy import Bound, numpy_bounds, satisfiable


class ConstraintsError(Exception):
    """No constraints file can be written; the message is one line for the user."""


@dataclass(frozen=True)
class Constraints:
    bounds: list[Bound]
    not_judged: list[str]  # "h5py 3.16.0", "unowned x.so": what has shared objects that could not be read

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
    if not satisfiable(bounds):
        raise ConstraintsError(
            f"no numpy fits every installed binary: {bounds[0].reasons[0]} (needs numpy<2), while "
            f"{bounds[1].reasons[0]} (needs numpy{bounds[1].specifier}); run `abiguard fix` first")
    unknown = [f"{d.name} {d.version}" for d in report.distributions
               if any(b.verdict is Verdict.UNKNOWN for b in d.binaries)]
    unknown += [f"unowned {b.path}" for b in report.unowned if b.verdict is Verdict.UNKNOWN]
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
    installed = report.numpy_installed
    if installed is not None and not admits(found.line, installed):
        lines.append(f"# the installed numpy {installed} does not meet this: the environment is broken now, and "
                     "`abiguard fix` plans the repair")
    lines.append(found.line)
    return "\n".join(lines) + "\n"
