"""Declared requirements (`Requires-Dist`), checked like `pip check` so one command covers both."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from abiguard.model import DeclaredProblem
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
) -> list[DeclaredProblem]:
    """Unsatisfied or missing requirements; `versions` maps canonical names to (possibly hypothetical)
    versions of what is installed."""
    problems = []
    for dist in dists:
        for req in applicable(dist.requires, marker_env):
            have = versions.get(canonicalize_name(req.name))
            if have is None:
                problems.append(DeclaredProblem(dist.name, dist.version, str(req), "missing", None))
                continue
            try:
                ok = req.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                ok = True
            if not ok:
                problems.append(DeclaredProblem(dist.name, dist.version, str(req), "conflict", have))
    return problems


def numpy_requirement(dist: InstalledDistribution, marker_env: Mapping[str, str]) -> str | None:
    """The distribution's own declared numpy requirement, as written, if it has one that applies."""
    found = [r for r in applicable(dist.requires, marker_env) if canonicalize_name(r.name) == "numpy"]
    if not found:
        return None
    merged = SpecifierSet()
    for req in found:
        merged &= req.specifier
    return f"numpy{merged}"


def has_upper_bound(requirement: str | None) -> bool:
    if requirement is None:
        return False
    return any(s.operator in ("<", "<=", "==", "~=", "===") for s in Requirement(requirement).specifier)
