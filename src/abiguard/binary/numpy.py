"""The NumPy ABI family: which NumPy C-ABI a binary was compiled for, from the string literals in it.

The rules (R0-R11) and why each is decisive are in shared/research/numpy-abi.md; R12 (rust-numpy) and R13 (no
Python symbol, no NumPy ABI) are ours.
They only look at bytes; nothing here imports or runs the binary.

Order of trust: C-level literals that numpy's own headers compile into `_import_array()`/`_import_umath()`
(R1, R2, R4*) decide first, because they are present exactly when the C-API is imported; R1/R4 count only
next to a capsule name (`_ARRAY_API`/`_UFUNC_API`), since both module names are also plain Python imports.
Binding libraries that pick the module at run time (pybind11 R3/R5, rust-numpy R12) come next, and
Python-level literals from Cython's numpy `.pxd` (R6, R7) last: Cython >= 3.1 may compress them away and
hand-written code copies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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
PYBIND11_OLD_MODULE = b"numpy.core.multiarray\0"  # pybind11 < 2.12 imports this name literally
# rust-numpy (PyO3): Rust literals carry no NUL. From 0.22 it reads numpy.lib.NumpyVersion at run time to pick
# numpy._core or numpy.core (R12, fine with both); before, it hard-codes numpy.core.multiarray (R12old).
RUST_NUMPY = (b"_RUST_NUMPY_BORROW_CHECKING_API", b"Failed to access NumPy array API capsule")
RUST_NUMPY_SWITCH = b"NumpyVersion"
RUST_NUMPY_OLD_MODULE = b"numpy.core.multiarray"
# Python-level literals (Cython `cimport numpy` without a C-level import_array()).
R6 = re.compile(rb"numpy\.core\.(?:multiarray|umath) failed to import(?! \(auto-generated)")
R7 = re.compile(rb"numpy\._core\.(?:multiarray|umath) failed to import")
R8 = re.compile(rb"is auto-generated with f2py \(version:([0-9][0-9A-Za-z.+-]*)\)")
R9 = re.compile(rb"_cython_(\d+)_(\d+)_(\d+)")
CYTHON_RUNTIME = b"cython_runtime\0"  # every Cython module (0.26+) calls PyImport_AddModule("cython_runtime")
ARRAY_API = b"_ARRAY_API"
UFUNC_API = b"_UFUNC_API"
NUMPY_CORE_EXPORT = b"PyInit__multiarray_umath\0"  # numpy's own core module (R0)
# NumPy's ABI reaches a binary only through Python's C-API: `_import_array()`, pybind11 and rust-numpy call
# PyCapsule_GetPointer, and Cython's import-time type checks ("numpy.dtype size changed", no capsule needed) call
# PyObject_GetAttrString. So a binary whose symbol names start neither with "Py" nor "_Py" (CPython, PyPy; a
# Mach-O name carries one more "_") uses no NumPy ABI, whatever its data says (R13).
_PY = b"Py"
_PY_UNDERSCORES = 2  # at most these many "_" between a name's start and "Py": "_Py" (ELF, PE), "__Py" (Mach-O)

_FIXED = (
    ("R1", R1), ("R3", R3), ("R4", R4), ("R4a", R4A), ("R4b", R4B), ("R5", PYBIND11_OLD_MODULE),
    ("api", ARRAY_API), ("ufunc-api", UFUNC_API),
)
_PATTERNS = (("R6", R6), ("R7", R7))
_PREFIXES = {
    R2: b"module was compiled against NumPy C-API version",
    R6: b"numpy.core.",
    R7: b"numpy._core.",
    R8: b"is auto-generated with f2py",
    R9: b"_cython_",
}
# Every marker above but the producers' contains one of these anchors ("umpy" stands for numpy and Numpy, "API"
# for the capsule names, "C-API" and "API version"). A chunk is searched once per anchor; a chunk without any needs
# nothing more, and in one with some, each marker is tested only where its anchor occurs instead of with a pass
# of its own. Every marker that can decide a verdict holds one of the two gates: a chunk without them is not
# searched for the others. Two gates, not more: each is a pass over every byte read, the scan's largest cost.
# Producer markers without an anchor (R8, pybind11's) get a pass of their own, with their whole literal prefix:
# a long needle is found several times faster than a short one, so that beats a short anchor of their own.
_GATE = (b"umpy", b"API")
_CYTHON = b"cython_"  # the producer markers R9 ("_cython_3_0_11") and `CYTHON_RUNTIME`: one pass for both
_ANCHORS = (*_GATE, _CYTHON)
_MAX_ANCHORS = 4096  # beyond this many occurrences in a chunk, a pass per marker is cheaper
# Evidence that names who built a binary, not which NumPy ABI it uses (R8 says f2py, and says it of a numpy).
PRODUCER_MARKERS = ("R8", "R9", "pybind11", "cython", "rust-numpy")


def deciding_first(evidence: Iterable[Evidence]) -> list[Evidence]:
    """The markers that decide the ABI, then those that only say who built the binary; each in file order."""
    return sorted(evidence, key=lambda e: (e.marker in PRODUCER_MARKERS, e.offset))


def _anchor(needle: bytes) -> tuple[bytes | None, int]:
    """The first anchor in `needle` and where it sits, or (None, 0) for a needle without one."""
    for token in _ANCHORS:
        at = needle.find(token)
        if at >= 0:
            return token, at
    return None, 0


_FIXED_ANCHORED = (*_FIXED, ("R12", RUST_NUMPY_SWITCH), ("R12old", RUST_NUMPY_OLD_MODULE))
# Every literal searched for, with its anchor: worked out once here, not per chunk.
_ANCHOR_OF = {literal: _anchor(literal) for literal in (
    *(needle for _m, needle in _FIXED_ANCHORED), CYTHON_RUNTIME, PYBIND11, *RUST_NUMPY, *_PREFIXES.values())}
Anchors = dict[bytes, list[int] | None]  # occurrences of each anchor in a chunk; None: too many to use


@dataclass(frozen=True)
class NumpyFacts:
    built_for: BuiltFor
    min_numpy: str | None
    producer: Producer | None
    evidence: tuple[Evidence, ...]
    reason: str | None = None


class Hits:
    """First occurrence of each marker across the chunks searched, and the highest R2 target seen."""

    def __init__(self) -> None:
        self.found: dict[str, Evidence] = {}
        self.min_numpy: tuple[int, int] | None = None

    def add(self, marker: str, offset: int, text: bytes) -> None:
        if marker not in self.found:
            self.found[marker] = Evidence(marker, offset, text.decode("latin-1"))

    def __contains__(self, marker: str) -> bool:
        return marker in self.found


def search(hits: Hits, base: int, data: bytes, stop: int | None = None) -> bool:
    """Record the markers in `data` (read at file offset `base`) that start before `stop`.

    Returns False, having searched for no producer marker (R8 among them), while neither `data` nor a chunk
    searched before it holds a NumPy marker: producers matter only if some chunk does (see `search_producers`
    and `wants_producers`), and most chunks of a Python extension pass the gates ("API" is common) without one.
    """
    stop = len(data) if stop is None else stop
    anchors = {token: _occurrences(data, token) for token in _GATE}
    if all(found == [] for found in anchors.values()):  # None means many
        return False
    for marker, needle in _FIXED_ANCHORED:
        _search_fixed(hits, marker, needle, data, base, stop, anchors)
    for match in _matches(R2, data, stop, anchors):
        version = (int(match.group(1)), int(match.group(2)))
        if hits.min_numpy is None or version > hits.min_numpy:
            hits.min_numpy = version
            hits.found["R2"] = Evidence("R2", base + match.start(), match.group(0).decode("latin-1"))
    for marker, pattern in _PATTERNS:
        _search_re(hits, marker, pattern, data, base, stop, anchors)
    if not _numpy_related(hits):
        return False
    search_producers(hits, base, data, stop, anchors)
    return True


def search_producers(
    hits: Hits, base: int, data: bytes, stop: int | None = None, anchors: Anchors | None = None,
) -> None:
    """Record the markers that name the binding generator (Cython, pybind11, rust-numpy, f2py)."""
    stop = len(data) if stop is None else stop
    anchors = dict(anchors or {})
    if "R9" not in hits or "cython" not in hits:  # else, in the later chunks of a large file, not needed again
        anchors[_CYTHON] = _occurrences(data, _CYTHON)
    _search_re(hits, "R8", R8, data, base, stop, anchors)
    _search_re(hits, "R9", R9, data, base, stop, anchors)
    _search_fixed(hits, "cython", CYTHON_RUNTIME, data, base, stop, anchors)
    _search_fixed(hits, "pybind11", PYBIND11, data, base, stop)
    for needle in RUST_NUMPY:
        _search_fixed(hits, "rust-numpy", needle, data, base, stop, anchors)


def wants_producers(hits: Hits) -> bool:
    """Whether chunks skipped by `search` must be searched for producer markers before deciding.

    Only when something NumPy-related was found (else the verdict is "none" whatever the producer) and the
    producer markers found so far do not already settle the producer.
    """
    settled = "pybind11" in hits or "rust-numpy" in hits or "R8" in hits or "R3" in hits
    return _numpy_related(hits) and not settled


def _numpy_related(hits: Hits) -> bool:
    return any(marker not in PRODUCER_MARKERS for marker in hits.found)


def _occurrences(data: bytes, token: bytes) -> list[int] | None:
    found: list[int] = []
    pos = data.find(token)
    while pos >= 0:
        if len(found) == _MAX_ANCHORS:
            return None
        found.append(pos)
        pos = data.find(token, pos + 1)
    return found


def _starts(
    data: bytes, needle: bytes, stop: int, token: bytes | None = None, at: int = 0, anchors: Anchors | None = None,
) -> Iterator[int]:
    """Where `needle` starts in `data` before `stop`, in order: tested at its anchor's occurrences when those
    are known, else found with a pass of bytes.find."""
    positions = anchors.get(token) if anchors is not None and token is not None else None
    if positions is None:
        end = stop + len(needle) - 1
        pos = data.find(needle, 0, end)
        while pos >= 0:
            yield pos
            pos = data.find(needle, pos + 1, end)
        return
    for occurrence in positions:
        start = occurrence - at
        if start >= stop:
            return
        if start >= 0 and data.startswith(needle, start):
            yield start


def _search_fixed(
    hits: Hits, marker: str, needle: bytes, data: bytes, base: int, stop: int, anchors: Anchors | None = None,
) -> None:
    if marker not in hits:
        for start in _starts(data, needle, stop, *_ANCHOR_OF[needle], anchors):
            hits.add(marker, base + start, needle.rstrip(b"\0"))
            return


def _search_re(
    hits: Hits, marker: str, pattern: re.Pattern[bytes], data: bytes, base: int, stop: int,
    anchors: Anchors | None = None,
) -> None:
    if marker not in hits:
        for match in _matches(pattern, data, stop, anchors):
            hits.add(marker, base + match.start(), match.group(0))
            return


def _matches(
    pattern: re.Pattern[bytes], data: bytes, stop: int, anchors: Anchors | None = None,
) -> Iterator[re.Match[bytes]]:
    """Matches starting before `stop`, tried only where the pattern's literal prefix starts.

    bytes.find (or the anchors) is several times faster than the regex engine's own scan.
    """
    prefix = _PREFIXES[pattern]
    for start in _starts(data, prefix, stop, *_ANCHOR_OF[prefix], anchors):
        match = pattern.match(data, start)
        if match:
            yield match


def classify(
    regions: Iterable[tuple[int, bytes]], numpy_itself: bool = False, packer: str | None = None
) -> NumpyFacts:
    """Apply the marker rules to the data regions of one image (pairs of file offset and bytes)."""
    if numpy_itself:
        return itself()
    hits = Hits()
    skipped = [(base, data) for base, data in regions if not search(hits, base, data)]
    if wants_producers(hits):
        for base, data in skipped:
            search_producers(hits, base, data)
    return decide(hits, packer)


def itself() -> NumpyFacts:
    return NumpyFacts(BuiltFor.NONE, None, None, (), "part of numpy itself (R0)")


def uses_python(symbol_names: bytes) -> bool:
    """Whether a piece of a symbol-name table names a Python C-API symbol (R13): a NUL-started name that
    begins with "Py" after at most `_PY_UNDERSCORES` underscores.

    One pass for "Py", each occurrence then tested for a name start before it: a library without Python
    is read to its end, and one pass instead of one per prefix halves that.
    """
    pos = symbol_names.find(_PY)
    while pos >= 0:
        if symbol_names[max(pos - _PY_UNDERSCORES - 1, 0) : pos].rstrip(b"_").endswith(b"\0"):
            return True
        pos = symbol_names.find(_PY, pos + 2)
    return False


def no_python() -> NumpyFacts:
    return NumpyFacts(BuiltFor.NONE, None, None, (), "names no Python C-API symbol, so cannot use NumPy's ABI (R13)")


def decide(hits: Hits, packer: str | None = None) -> NumpyFacts:
    """The verdict for one image from its markers, in the order of trust given in the module docstring."""
    # The C-API capsule names: without them R1/R4 are mere Python-level imports of numpy's core.
    c_api = "api" in hits or "ufunc-api" in hits
    producer = _producer(hits)
    min_numpy = f"{hits.min_numpy[0]}.{hits.min_numpy[1]}" if hits.min_numpy else None

    def evidence(*markers: str) -> tuple[Evidence, ...]:
        shown = (*markers, "R8", "R9", "pybind11", "cython")
        return tuple(sorted((e for e in hits.found.values() if e.marker in shown), key=lambda e: e.offset))

    if "R2" in hits or ("R1" in hits and c_api):
        reason = None
        if "R4a" in hits or "R4b" in hits:
            reason = "also carries NumPy 1.x header literals (R4a/R4b): part of it may be built for NumPy 1.x"
        return NumpyFacts(BuiltFor.NUMPY2, min_numpy, producer, evidence("R1", "R2", "R3", "R4a", "R4b", "R5", "R7"),
                          reason)
    if ("R4" in hits and c_api) or "R4a" in hits or "R4b" in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R4", "R4a", "R4b", "R3", "R5", "R6"))
    if producer is Producer.PYBIND11_OLD:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R5", "api"))
    rust = "rust-numpy" in hits and "api" in hits
    if rust and "R12old" in hits and "R12" not in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R12old", "rust-numpy"),
                          "rust-numpy < 0.22 reads NumPy 1.x structures: under NumPy 2 it imports but can misbehave")
    if "R3" in hits or (rust and "R12" in hits):
        # pybind11 >= 2.12 and rust-numpy >= 0.22 pick numpy._core or numpy.core at run time: fine with both.
        return NumpyFacts(BuiltFor.NUMPY2, None, producer, evidence("R3", "R12", "rust-numpy"))
    if "R7" in hits:
        return NumpyFacts(BuiltFor.NUMPY2, None, producer, evidence("R7"))
    if "R6" in hits:
        return NumpyFacts(BuiltFor.NUMPY1, None, producer, evidence("R6"))
    if packer:
        return NumpyFacts(BuiltFor.UNKNOWN, None, None, (), f"packed executable ({packer}): its strings are hidden")
    if c_api:
        return NumpyFacts(
            BuiltFor.UNKNOWN, None, producer, evidence("api", "ufunc-api"),
            "refers to NumPy's C-API but carries no marker that tells which NumPy it was built for",
        )
    return NumpyFacts(BuiltFor.NONE, None, None, ())


def _producer(hits: Hits) -> Producer:
    if "R3" in hits:
        return Producer.PYBIND11_NEW
    if "R5" in hits and "pybind11" in hits and "api" in hits:
        return Producer.PYBIND11_OLD
    if "rust-numpy" in hits and "api" in hits:
        return Producer.RUST_NUMPY_NEW if "R12" in hits else Producer.RUST_NUMPY_OLD
    if "R8" in hits:
        return Producer.F2PY
    if "R9" in hits or "cython" in hits:
        return Producer.CYTHON
    if any(m in hits for m in ("R1", "R2", "R4", "R4a", "R4b")):
        return Producer.C_API
    return Producer.UNKNOWN
