"""Value objects shared by every layer.

They are plain frozen dataclasses so that each layer (binary inspection, sources, rules, reports) can be
tested on its own, and so that the JSON report is a direct rendering of them (`to_json`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """A project name as indexes and installers compare it (PEP 503): `Foo_Bar.baz` is `foo-bar-baz`.

    Ours rather than packaging's, whose module imports its wheel-tag machinery: too slow for `check`'s start.
    """
    return _SEPARATORS.sub("-", name).lower()


class BuiltFor(str, Enum):
    """Which NumPy C-ABI a binary was compiled for."""

    NUMPY1 = "numpy1"
    NUMPY2 = "numpy2"
    NONE = "none"  # does not use NumPy's C-API (or is part of numpy itself)
    UNKNOWN = "unknown"  # could not be read or no decisive marker; `reason` says why


class Producer(str, Enum):
    """How the binary talks to NumPy's C-API; matters because pybind11 < 2.12 fails silently."""

    C_API = "c-api"
    CYTHON = "cython"
    PYBIND11_OLD = "pybind11<2.12"
    PYBIND11_NEW = "pybind11>=2.12"
    F2PY = "f2py"
    RUST_NUMPY_OLD = "rust-numpy<0.22"
    RUST_NUMPY_NEW = "rust-numpy>=0.22"
    UNKNOWN = "unknown"

    @property
    def misbehaves_silently(self) -> bool:
        """Bindings that import under NumPy 2 but keep reading NumPy 1.x structures (at-risk, not broken)."""
        return self in (Producer.PYBIND11_OLD, Producer.RUST_NUMPY_OLD)


class Verdict(str, Enum):
    """Ordered from best to worst; a distribution takes the worst verdict of its binaries."""

    OK = "ok"
    UNKNOWN = "unknown"
    AT_RISK = "at-risk"
    BROKEN = "broken"

    @property
    def rank(self) -> int:
        return _VERDICT_RANK[self]

    @staticmethod
    def worst(verdicts: list[Verdict]) -> Verdict:
        return max(verdicts, key=lambda v: v.rank, default=Verdict.OK)


_VERDICT_RANK = {Verdict.OK: 0, Verdict.UNKNOWN: 1, Verdict.AT_RISK: 2, Verdict.BROKEN: 3}


@dataclass(frozen=True)
class Evidence:
    """One marker found in a binary: the rule it triggers, where, and the bytes that matched."""

    marker: str  # rule id from the research note, e.g. "R1", "R2", "R5"
    offset: int  # file offset of the first byte of the match
    text: str  # the matched text, decoded as latin-1

    def to_json(self) -> dict[str, Any]:
        return {"marker": self.marker, "offset": self.offset, "text": self.text}


@dataclass(frozen=True)
class BinaryFacts:
    """What the bytes of one shared object say, independent of any environment."""

    format: str  # "elf", "pe", "macho", "macho-fat" or "unknown"
    built_for: BuiltFor
    min_numpy: str | None = None  # oldest NumPy the module accepts at run time (R2), "X.Y"
    producer: Producer | None = None  # None when the binary does not use NumPy's C-API
    evidence: tuple[Evidence, ...] = ()
    reason: str | None = None  # why built_for is "unknown", or a note such as "numpy itself"
    bytes_read: int = 0
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "built_for": self.built_for.value,
            "min_numpy": self.min_numpy,
            "producer": self.producer.value if self.producer else None,
            "evidence": [e.to_json() for e in self.evidence],
            "reason": self.reason,
        }

    @property
    def read_failed(self) -> bool:
        """The file could not be opened or read (`binary.inspect_path`): a fact about this moment (permissions,
        an I/O error), not about the file's bytes."""
        return self.built_for is BuiltFor.UNKNOWN and (self.reason or "").startswith(("cannot open:", "cannot read:"))

    def with_size(self, size: int) -> BinaryFacts:
        """The same facts for another file of this size (nothing read from it)."""
        return BinaryFacts(self.format, self.built_for, self.min_numpy, self.producer, self.evidence, self.reason,
                           0, size)

    @staticmethod
    def from_json(data: dict[str, Any], bytes_read: int = 0, size: int = 0) -> BinaryFacts:
        return BinaryFacts(
            format=data["format"],
            built_for=BuiltFor(data["built_for"]),
            min_numpy=data.get("min_numpy"),
            producer=Producer(data["producer"]) if data.get("producer") else None,
            evidence=tuple(Evidence(**e) for e in data.get("evidence", ())),
            reason=data.get("reason"),
            bytes_read=bytes_read,
            size=size,
        )


@dataclass(frozen=True)
class Verification:
    """What importing a module in a fresh subprocess showed."""

    outcome: str  # "ok", "numpy-abi", "import-error", "crashed", "timeout", "parent-failed"
    message: str | None  # first line of the exception, signal name, or None
    confirms: bool | None  # does the outcome agree with the static verdict? None: cannot tell
    detail: str | None = None  # NumPy's own banner or root-cause line, when it printed one
    parent: str | None = None  # the parent package whose import failed first, if any
    via: str | None = None  # a module it imports whose import failed first: the failure is that one's

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "message": self.message, "confirms": self.confirms,
                "detail": self.detail, "parent": self.parent, "via": self.via}


@dataclass(frozen=True)
class BinaryFinding:
    """One shared object judged against a (real or hypothetical) environment."""

    path: str  # relative to its site-packages directory (or as given, for `inspect`)
    module: str | None  # dotted import name for extension modules, None for plain libraries
    facts: BinaryFacts
    verdict: Verdict
    consequence: str | None = None  # what will happen, in one sentence
    verified: Verification | None = None
    root: str | None = None  # the site-packages directory `path` is relative to, for an installed binary

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "module": self.module}
        facts = self.facts.to_json()
        data.update({k: facts[k] for k in ("built_for", "min_numpy", "producer", "evidence")})
        data["format"] = facts["format"]
        data["verdict"] = self.verdict.value
        data["reason"] = self.consequence or facts["reason"]
        if self.verified is not None:
            data["verified"] = self.verified.to_json()
        return data


@dataclass(frozen=True)
class DeclaredProblem:
    """A `Requires-Dist` of an installed distribution that the environment does not satisfy (pip check)."""

    distribution: str
    version: str
    requirement: str
    problem: str  # "missing" or "conflict"
    installed: str | None  # the installed version of the required distribution, if any
    metadata: str | None = None  # the METADATA file that declares it (an installed distribution's), for SARIF

    def to_json(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "requirement": self.requirement,
            "problem": self.problem,
            "installed": self.installed,
        }


@dataclass(frozen=True)
class Declared:
    """What the environment declares: unmet requirements (as `pip check` sees them) and each distribution's
    own numpy requirement (canonical name -> "numpy>=1.21", absent when it declares none)."""

    problems: tuple[DeclaredProblem, ...]
    numpy_requirements: dict[str, str]


@dataclass(frozen=True)
class DistributionFinding:
    name: str
    version: str
    verdict: Verdict
    binaries: tuple[BinaryFinding, ...]
    numpy_requirement: str | None = None  # its declared numpy requirement, e.g. "numpy>=1.23.2"
    unread: tuple[str, ...] = ()  # lock-check: members of its wheel not read once one built for NumPy 1.x was found

    @property
    def affected(self) -> tuple[BinaryFinding, ...]:
        return tuple(b for b in self.binaries if b.verdict in (Verdict.BROKEN, Verdict.AT_RISK))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "verdict": self.verdict.value,
            "numpy_requirement": self.numpy_requirement,
            "binaries": [b.to_json() for b in self.binaries],
            "unread": list(self.unread),
        }


@dataclass(frozen=True)
class TargetEnvironment:
    """Facts about a target interpreter, learned by running it once (`sources.environment.probe`)."""

    executable: str
    python_version: str  # "3.11.7"
    implementation: str  # "cpython"
    prefix: str
    site_packages: tuple[str, ...]
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"
    ext_suffixes: tuple[str, ...]
    marker_env: dict[str, str] = field(default_factory=dict)
    libc: str | None = None  # "glibc 2.36" on glibc Linux
    abiflags: str = ""

    @property
    def python_tag(self) -> str:
        major, minor = self.python_version.split(".")[:2]
        return f"{major}.{minor}"


@dataclass(frozen=True)
class CheckReport:
    environment: TargetEnvironment
    numpy: str | None  # the numpy version the rules judged against
    numpy_installed: str | None
    hypothetical: bool  # True when `numpy` came from --numpy
    distributions: tuple[DistributionFinding, ...]
    unowned: tuple[BinaryFinding, ...]
    declared: tuple[DeclaredProblem, ...]
    bytes_read: int = 0
    bytes_total: int = 0
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was left unchecked by nature (lock-check: built at install); not errors
    checked: int | None = None  # lock-check: wheels read, 0 when the file lists nothing to check; None for check

    def count(self, verdict: Verdict) -> int:
        return sum(1 for d in self.distributions if d.verdict is verdict)

    @property
    def has_conflicts(self) -> bool:
        bad = (Verdict.BROKEN, Verdict.AT_RISK)
        return bool(self.declared) or any(d.verdict in bad for d in self.distributions) or any(
            b.verdict in bad for b in self.unowned
        )
