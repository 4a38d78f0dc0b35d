"""Declared requirements (`Requires-Dist`), checked like `pip check` so one command covers both."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterable, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from abiguard.model import Declared, DeclaredProblem, canonical_name
from abiguard.sources.environment import InstalledDistribution

_ONLY_WITH_EXTRA = re.compile(r"""\bextra\s*==""")
_OR = re.compile(r"\bor\b")


def applicable(requires: Iterable[str], marker_env: Mapping[str, str]) -> list[Requirement]:
    """The requirements whose markers hold in the target environment (no extras requested).

    Most Requires-Dist lines belong to extras; a marker that is a conjunction with `extra == ...` is false
    when no extra is requested, so it is skipped without the (slow) full parse."""
    env = {**marker_env, "extra": ""}
    out = []
    for text in requires:
        _, sep, marker = text.partition(";")
        if sep and _ONLY_WITH_EXTRA.search(marker) and not _OR.search(marker):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def check_declared(
    dists: Iterable[InstalledDistribution], marker_env: Mapping[str, str], versions: Mapping[str, str]
) -> Declared:
    """`versions` maps canonical names to (possibly hypothetical) versions of what is installed.

    Each distribution's requirements are parsed once, for both answers: parsing is most of the cost."""
    problems = []
    numpy_requirements = {}
    for dist in dists:
        where = dist.metadata or None
        numpy_specs = []
        for req in applicable(dist.requires, marker_env):
            name = canonical_name(req.name)
            if name == "numpy":
                numpy_specs.append(req.specifier)
            have = versions.get(name)
            if have is None:
                problems.append(DeclaredProblem(dist.name, dist.version, str(req), "missing", None, where))
                continue
            try:
                ok = req.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                ok = True
            if not ok:
                problems.append(DeclaredProblem(dist.name, dist.version, str(req), "conflict", have, where))
        if numpy_specs:
            numpy_requirements[dist.key] = f"numpy{functools.reduce(operator.and_, numpy_specs, SpecifierSet())}"
    return Declared(tuple(problems), numpy_requirements)


def admits(requirement: str, version: str) -> bool:
    """Whether `requirement` (`numpy>=2.0.2`) accepts `version`, pre-releases too; one that cannot be parsed holds
    nothing back."""
    try:
        return Requirement(requirement).specifier.contains(version, prereleases=True)
    except InvalidRequirement:
        return True


def has_upper_bound(requirement: str | None) -> bool:
    if requirement is None:
        return False
    return any(s.operator in ("<", "<=", "==", "~=", "===") for s in Requirement(requirement).specifier)
