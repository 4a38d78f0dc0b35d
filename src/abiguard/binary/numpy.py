"""The NumPy ABI family: which NumPy C-ABI a binary was compiled for, from the string literals in it.

The rules (R0-R11) and why each is decisive are in shared/research/numpy-abi.md. They only look at bytes;
nothing here imports or runs the binary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from abiguard.model import BuiltFor, Evidence, Producer

# C-level literals from numpy's own `_import_array()` (headers >= 2.0 / 1.x).
R1 = b"numpy._core._multiarray_umath"
R2 = re.compile(rb"module was compiled against NumPy C-API version 0x%x \(NumPy (\d+)\.(\d+)\)")
R3 = b"FAILURE obtaining numpy _ARRAY_API pointer"
R4 = b"numpy.core._multiarray_umath"
R4A = b"module compiled against API version 0x%x but this version of numpy is 0x%x"
R4B = b"_ARRAY_API not found"
PYBIND11 = b"__pybind11_internals_v"
PYBIND11_OLD_MODULE = b"numpy.core.multiarray\0"
# Python-level literals (Cython `cimport numpy` without a C-level import_array()).
R6 = re.compile(rb"numpy\.core\.(?:multiarray|umath) failed to import(?! \(auto-generated)")
R7 = re.compile(rb"numpy\._core\.(?:multiarray|umath) failed to import")
R8 = re.compile(rb"is auto-generated with f2py \(version:([0-9][0-9A-Za-z.+-]*)\)")
R9 = re.compile(rb"_cython_(\d+)_(\d+)_(\d+)")
ARRAY_API = b"_ARRAY_API"
UFUNC_API = b"_UFUNC_API"
UPX = b"UPX!"

# Markers that are cheap to test first: a region with none of these needs no further search.
_ANY_NUMPY = (b"numpy", ARRAY_API, UFUNC_API)


@dataclass(frozen=True)
class NumpyFacts:
    built_for: BuiltFor
    min_numpy: str | None
    producer: Producer | None
    evidence: tuple[Evidence, ...]
    reason: str | None = None


class _Hits:
    """First occurrence of each marker across the regions searched."""

    def __init__(self) -> None:
        self.found: dict[str, Evidence] = {}
        self.min_numpy: tuple[int, int] | None = None
        self.upx = False

    def add(self, marker: str, offset: int, text: bytes) -> None:
        if marker not in self.found:
            self.found[marker] = Evidence(marker, offset, text.decode("latin-1"))

    def __contains__(self, marker: str) -> bool:
        return marker in self.found


def _find(hits: _Hits, marker: str, needle: bytes, data: bytes, base: int) -> None:
    pos = data.find(needle)
    if pos >= 0:
        hits.add(marker, base + pos, needle.rstrip(b"\0"))


def _search(hits: _Hits, base: int, data: bytes) -> None:
    if UPX in data[:4096]:
        hits.upx = True
    if not any(m in data for m in _ANY_NUMPY):
        match = R9.search(data) if b"_cython_" in data else None
        if match:
            hits.add("R9", base + match.start(), match.group(0))
        if PYBIND11 in data:
            _find(hits, "pybind11", PYBIND11, data, base)
        return
    _find(hits, "R1", R1, data, base)
    for match in R2.finditer(data):
        version = (int(match.group(1)), int(match.group(2)))
        if hits.min_numpy is None or version > hits.min_numpy:
            hits.min_numpy = version
            hits.found["R2"] = Evidence("R2", base + match.start(), match.group(0).decode("latin-1"))
    _find(hits, "R3", R3, data, base)
    _find(hits, "R4", R4, data, base)
    _find(hits, "R4a", R4A, data, base)
    _find(hits, "R4b", R4B, data, base)
    _find(hits, "pybind11", PYBIND11, data, base)
    _find(hits, "R5", PYBIND11_OLD_MODULE, data, base)
    _find(hits, "api", ARRAY_API, data, base)
    _find(hits, "api", UFUNC_API, data, base)
    for marker, pattern in (("R6", R6), ("R7", R7), ("R8", R8), ("R9", R9)):
        if marker not in hits:
            match = pattern.search(data)
            if match:
                hits.add(marker, base + match.start(), match.group(0))


def classify(regions: Iterable[tuple[int, bytes]], numpy_itself: bool = False) -> NumpyFacts:
    """Apply the marker rules to the data regions of one binary (pairs of file offset and bytes)."""
    if numpy_itself:
        return NumpyFacts(BuiltFor.NONE, None, None, (), "part of numpy itself (R0)")
    hits = _Hits()
    for base, data in regions:
        _search(hits, base, data)
    return _decide(hits)


def _decide(hits: _Hits) -> NumpyFacts:
    producer = _producer(hits)
    min_numpy = f"{hits.min_numpy[0]}.{hits.min_numpy[1]}" if hits.min_numpy else None

    def evidence(*markers: str) -> tuple[Evidence, ...]:
        shown = (*markers, "R8", "R9", "pybind11")
        return tuple(sorted((e for e in hits.found.values() if e.marker in shown), key=lambda e: e.offset))

    if "R1" in hits or "R2" in hits or "R7" in hits:
        return NumpyFacts(BuiltFor.NUMPY2, min_numpy, producer, evidence("R1", "R2", "R7", "R3"))
    if "R3" in hits:
        # pybind11 >= 2.12 picks numpy._core or numpy.core at run time: fine with both.
        return NumpyFacts(BuiltFor.NUMPY2, None, producer, evidence("R3"))
    if "R4" in hits or "R4a" in hits or "R4b" in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R4", "R4a", "R4b", "R5", "R6"))
    if "pybind11" in hits and "R5" in hits and "api" in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R5"))
    if "R6" in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R6"))
    if hits.upx:
        return NumpyFacts(BuiltFor.UNKNOWN, None, None, (), "packed executable (UPX): its strings are hidden")
    if "api" in hits:
        return NumpyFacts(
            BuiltFor.UNKNOWN, None, producer, evidence("api"),
            "refers to NumPy's C-API but carries no marker that tells which NumPy it was built for",
        )
    return NumpyFacts(BuiltFor.NONE, None, None, ())


def _producer(hits: _Hits) -> Producer:
    if "pybind11" in hits:
        return Producer.PYBIND11_NEW if "R3" in hits else Producer.PYBIND11_OLD
    if "R8" in hits:
        return Producer.F2PY
    if "R9" in hits:
        return Producer.CYTHON
    if "R1" in hits or "R4" in hits or "R4a" in hits or "R4b" in hits:
        return Producer.C_API
    if "R6" in hits or "R7" in hits:
        # Python-level import strings without numpy's C-level import: Cython's `cimport numpy`.
        return Producer.CYTHON
    return Producer.UNKNOWN
