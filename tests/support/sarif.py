"""What a SARIF 2.1.0 consumer relies on, checked on a document (no schema package exists on the index: the
properties the specification requires, and the cross-references that code-scanning services resolve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

LEVELS = {"none", "note", "warning", "error"}


def assert_valid_sarif(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Asserts the structure and returns the results of the only run."""
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "abiguard" and driver["version"]
    rules = driver["rules"]
    ids = [r["id"] for r in rules]
    assert len(set(ids)) == len(ids)
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["defaultConfiguration"]["level"] in LEVELS
    bases = run.get("originalUriBaseIds", {})
    for base in bases.values():
        assert base["uri"].startswith("file:///") and base["uri"].endswith("/")
    for result in run["results"]:
        assert result["message"]["text"]
        assert result["level"] in LEVELS
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"]
        for location in result.get("locations", []):
            artifact = location["physicalLocation"]["artifactLocation"]
            assert artifact["uri"]
            if "uriBaseId" in artifact:
                assert artifact["uriBaseId"] in bases
            region = location["physicalLocation"].get("region")
            if region is not None:
                assert region["startLine"] >= 1
    return list(run["results"])


def artifact_path(doc: dict[str, Any], location: dict[str, Any]) -> Path:
    """The file a location points at, resolved against the run's base URIs as a consumer resolves it."""
    artifact = location["physicalLocation"]["artifactLocation"]
    uri = artifact["uri"]
    base = doc["runs"][0].get("originalUriBaseIds", {}).get(artifact.get("uriBaseId"), {}).get("uri", "")
    return Path(unquote(urlparse(base + uri if base else uri).path))
