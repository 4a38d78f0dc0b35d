"""`check` and `lock-check` as SARIF 2.1.0, for code-scanning services and editors.

One result per distribution that is broken, at risk or unknown, per unowned shared object in that state, and
per unmet declared requirement. For a lockfile the location is the line of the file that pins the
distribution, so a pull request that changes the lock is annotated where the change is; for an environment
it is the distribution's first affected shared object, relative to its site-packages directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from abiguard import __version__
from abiguard.model import BinaryFinding, CheckReport, DistributionFinding, Verdict, canonical_name
from abiguard.report import explain

_LEVEL = {Verdict.BROKEN: "error", Verdict.AT_RISK: "warning", Verdict.UNKNOWN: "note"}

# id, short description, full description, help, level
_RULE_TEXTS = (
    ("numpy-abi-broken", "Built for a NumPy C-ABI the environment does not provide",
     "A compiled module was built against NumPy headers whose ABI the installed (or locked) numpy does not "
     "provide: built for NumPy 1.x under numpy 2, or for a newer numpy than the one present. It fails at import.",
     "Move numpy to a version the build accepts, or move the distribution to a release built for your numpy; "
     "`abiguard fix` plans either.", "error"),
    ("numpy-abi-at-risk", "Imports under this numpy but can misbehave",
     "A binding built on NumPy 1.x structures (pybind11 < 2.12, rust-numpy < 0.22) imports under numpy 2 "
     "without an error but can return wrong results.",
     "Upgrade the distribution to a release built for NumPy 2, or keep numpy below 2.", "warning"),
    ("numpy-abi-unknown", "A shared object could not be judged",
     "The shared object could not be read, or carries no decisive marker; its NumPy ABI is unknown.",
     "Run `abiguard check --verify` to import it in a subprocess and see.", "note"),
    ("declared-requirement", "A declared requirement is not satisfied",
     "A distribution's Requires-Dist is missing or in conflict with what is installed: what `pip check` "
     "reports.", "Install a version the requirement accepts.", "error"),
)
RULES: tuple[dict[str, Any], ...] = tuple(
    {"id": rule_id, "name": "".join(w.title() for w in rule_id.split("-")), "shortDescription": {"text": short},
     "fullDescription": {"text": full}, "help": {"text": how}, "defaultConfiguration": {"level": level}}
    for rule_id, short, full, how, level in _RULE_TEXTS
)
_RULE_INDEX = {rule["id"]: n for n, rule in enumerate(RULES)}
_SITE = "SITE_PACKAGES"


def sarif_document(report: CheckReport, lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """`lines`: for a lockfile, the line that pins each distribution (canonical name), where one was found."""
    env = report.environment
    locked = explain.locked(report)
    results: list[dict[str, Any]] = []
    for dist in report.distributions:
        if dist.verdict in _LEVEL:
            results.append(_distribution(dist, report, locked, lines or {}))
    for b in report.unowned:
        if b.verdict in _LEVEL:
            message = f"unowned shared object {b.path} is {b.verdict.value}: {explain.consequence(b)}"
            results.append(_result(b.verdict, message, [_binary_location(b, report)], f"unowned:{b.path}", {}))
    for p in report.declared:
        if locked:
            where = [_lock_location(env.executable, (lines or {}).get(canonical_name(p.distribution)))]
        else:
            where = [_file_location(p.metadata, report)] if p.metadata else []
        results.append(_result("declared-requirement", explain.declared_line(p, locked), where,
                               f"declared:{p.distribution}:{p.requirement}", {"problem": p.problem}))
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "abiguard", "version": __version__, "semanticVersion": __version__,
                            "rules": list(RULES)}},
        "results": results,
        "invocations": [{
            "executionSuccessful": not report.errors,
            "toolExecutionNotifications": [{"level": "error", "message": {"text": e}} for e in report.errors]
            + [{"level": "note", "message": {"text": n}} for n in report.notes],
        }],
        "properties": {"python": env.python_version, "platform": env.platform, "numpy": report.numpy,
                       "summary": explain.summary(report)},
    }
    if not locked:
        run["originalUriBaseIds"] = {f"{_SITE}{n}": {"uri": Path(site).absolute().as_uri() + "/"}
                                     for n, site in enumerate(env.site_packages)}
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}


def _distribution(dist: DistributionFinding, report: CheckReport, locked: bool,
                  lines: Mapping[str, int]) -> dict[str, Any]:
    affected = explain.shown(dist)
    first = affected[0]
    parts = [f"{dist.name} {dist.version} is {dist.verdict.value}: {explain.consequence(first)}"]
    why = explain.why(dist, report) if dist.verdict in explain.BAD else None
    parts += [f"Why pip allowed it: {why}."] if why else []
    parts += [f"Way out: {w}." for w in explain.ways_out(dist, report)]
    if locked:
        where = [_lock_location(report.environment.executable, lines.get(canonical_name(dist.name)))]
    else:
        where = [_binary_location(first, report)]
    properties = {
        "distribution": dist.name, "version": dist.version,
        "modules": [b.module or b.path for b in affected], "evidence": explain.evidence(first),
    }
    return _result(dist.verdict, " ".join(parts), where, f"{canonical_name(dist.name)}:{dist.version}", properties)


def _result(kind: Verdict | str, message: str, locations: list[dict[str, Any]], identity: str,
            properties: dict[str, Any]) -> dict[str, Any]:
    rule = f"numpy-abi-{kind.value}" if isinstance(kind, Verdict) else kind
    level = _LEVEL[kind] if isinstance(kind, Verdict) else "error"
    result: dict[str, Any] = {
        "ruleId": rule, "ruleIndex": _RULE_INDEX[rule], "level": level, "message": {"text": message},
        "partialFingerprints": {"abiguardFinding/v1": f"{rule}:{identity}"},
    }
    if locations:
        result["locations"] = locations
    if properties:
        result["properties"] = properties
    return result


def _binary_location(b: BinaryFinding, report: CheckReport) -> dict[str, Any]:
    """The path relative to its site-packages directory, whose absolute URI the run names (`originalUriBaseIds`)."""
    location = _artifact(b.root, b.path, report)
    if b.module:
        location["logicalLocations"] = [{"fullyQualifiedName": b.module, "kind": "module"}]
    return location


def _file_location(path: str, report: CheckReport) -> dict[str, Any]:
    """An absolute path, relative to the site-packages directory it lies in when it lies in one."""
    for site in report.environment.site_packages:
        if path.startswith(site.rstrip("/") + "/"):
            return _artifact(site, path[len(site.rstrip("/")) + 1:], report)
    return _artifact(os.path.dirname(path), os.path.basename(path), report)


def _artifact(root: str | None, path: str, report: CheckReport) -> dict[str, Any]:
    sites = report.environment.site_packages
    artifact: dict[str, Any] = {"uri": quote(path)}
    if root in sites:
        artifact["uriBaseId"] = f"{_SITE}{sites.index(root)}"
    elif root is not None:
        artifact["uri"] = (Path(root) / path).absolute().as_uri()
    return {"physicalLocation": {"artifactLocation": artifact}}


def _lock_location(path: str, line: int | None) -> dict[str, Any]:
    where = Path(path)
    uri = where.as_uri() if where.is_absolute() else quote(where.as_posix())  # relative: to the repository
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if line is not None:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}
