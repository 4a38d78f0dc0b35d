"""Binary inspection: bytes in, facts out. No environment, no policy, no imports of scanned code."""

from __future__ import annotations

import os

from abiguard.binary import numpy as numpy_family
from abiguard.binary.formats import (
    UPX_MAGIC,
    BytesReader,
    FileReader,
    FormatError,
    Layout,
    Reader,
    Region,
    chunks,
    layout,
    sniff,
)
from abiguard.model import BinaryFacts, BuiltFor

__all__ = [
    "SHARED_OBJECT_SUFFIXES",
    "BytesReader",
    "FileReader",
    "Reader",
    "inspect_bytes",
    "inspect_path",
    "inspect_reader",
    "is_shared_object_name",
    "sniff",
]

SHARED_OBJECT_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


def is_shared_object_name(name: str) -> bool:
    """True for names a loader would take as a shared object: `x.so`, `libx.so.1.2`, `x.pyd`, `x.dylib`."""
    if name.endswith(SHARED_OBJECT_SUFFIXES):  # the common case, cheaply: this runs on every file of an env
        return True
    if name[-6:].lower().endswith(SHARED_OBJECT_SUFFIXES):
        return True
    if ".so." not in name and ".SO." not in name:
        return False
    base = name.rsplit("/", 1)[-1].lower()
    return ".so." in base and base.rsplit(".so.", 1)[1].replace(".", "").isdigit()


def inspect_reader(reader: Reader, numpy_itself: bool = False) -> BinaryFacts:
    """Facts for one binary; never raises for bad input: unreadable files give built_for 'unknown'.

    An unexpected error (a bug, not bad input) is reported the same way, with a reason starting
    "inspection failed", so one odd file cannot abort the scan of an environment.
    """
    if reader.size == 0:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason="empty file", size=0)
    try:
        return _inspect(reader, numpy_itself)
    except FormatError as exc:
        return _unknown(reader, str(exc))
    except OSError as exc:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"cannot read: {exc.strerror or exc}",
                           bytes_read=_read(reader), size=reader.size)
    except Exception as exc:
        return _unknown(reader, f"inspection failed: {type(exc).__name__}: {exc}")


def _inspect(reader: Reader, numpy_itself: bool) -> BinaryFacts:
    lay = layout(reader)
    if numpy_itself:
        facts = numpy_family.itself()
    elif _without_python(reader, lay):
        facts = numpy_family.no_python()
    else:
        per_image = [_classify(reader, lay, group) for group in range(lay.groups)]
        facts = _combine(per_image)
        if _may_be_numpy_core(facts) and _exports_numpy_core(reader, lay.symbols):
            facts = numpy_family.itself()
    return BinaryFacts(
        format=lay.format,
        built_for=facts.built_for,
        min_numpy=facts.min_numpy,
        producer=facts.producer,
        evidence=facts.evidence,
        reason=facts.reason,
        bytes_read=_read(reader),
        size=reader.size,
    )


def _classify(reader: Reader, lay: Layout, group: int) -> numpy_family.NumpyFacts:
    hits = numpy_family.Hits()
    skipped = []
    for chunk in chunks(reader, [r for r in lay.regions if r.group == group]):
        if not numpy_family.search(hits, chunk.offset, chunk.data, chunk.stop):
            skipped.append((chunk.offset, len(chunk.data), chunk.stop))
    if skipped and numpy_family.wants_producers(hits):
        # Producer markers can sit in a chunk of their own in a large .rodata: read those chunks again.
        for offset, length, stop in skipped:
            numpy_family.search_producers(hits, offset, reader.read(offset, length), stop)
    return numpy_family.decide(hits, lay.packer)


def _combine(per_image: list[numpy_family.NumpyFacts]) -> numpy_family.NumpyFacts:
    """One answer for the architectures of a fat Mach-O: they must agree on the ABI, or we don't know."""
    first = per_image[0]
    if all(f.built_for is first.built_for for f in per_image):
        floors = [f.min_numpy for f in per_image if f.min_numpy]
        min_numpy = max(floors, key=lambda v: tuple(int(p) for p in v.split("."))) if floors else None
        return numpy_family.NumpyFacts(first.built_for, min_numpy, first.producer, first.evidence, first.reason)
    seen = ", ".join(f"image {i}: {f.built_for.value}" for i, f in enumerate(per_image))
    return numpy_family.NumpyFacts(
        BuiltFor.UNKNOWN, None, first.producer, first.evidence,
        f"the architectures of this fat binary were built differently ({seen})",
    )


def _without_python(reader: Reader, lay: Layout) -> bool:
    """R13 from the symbol names, asked only when they are fewer bytes than the data we would search instead.

    Most large libraries in a data-science environment (LLVM, libtorch_cpu, GDAL) never touch Python: their
    names decide in a fraction of the reading.
    """
    names = sum(r.size for r in lay.symbols)
    if lay.packer or not lay.lists_imports or not names or names >= sum(r.size for r in lay.regions):
        return False
    return not any(numpy_family.uses_python(c.data) for c in chunks(reader, lay.symbols))


def _may_be_numpy_core(facts: numpy_family.NumpyFacts) -> bool:
    """numpy's core provides the C-API, so it lacks the run-time version checks of `_import_array()`.

    Only then is the symbol table (often larger than the data) worth reading.
    """
    checks = {"R2", "R4a", "R4b", "R3", "R5"}
    return facts.built_for is not BuiltFor.NONE and not any(e.marker in checks for e in facts.evidence)


def _exports_numpy_core(reader: Reader, symbols: tuple[Region, ...]) -> bool:
    return any(numpy_family.NUMPY_CORE_EXPORT in c.data for c in chunks(reader, symbols))


def _unknown(reader: Reader, reason: str) -> BinaryFacts:
    head = reader.read(0, 4096)
    if UPX_MAGIC in head:
        reason = f"packed executable (UPX): its strings are hidden; {reason}"
    return BinaryFacts(sniff(head) or "unknown", BuiltFor.UNKNOWN, reason=reason, bytes_read=_read(reader),
                       size=reader.size)


def _read(reader: Reader) -> int:
    return int(getattr(reader, "bytes_read", reader.size))


def inspect_path(path: str | os.PathLike[str], numpy_itself: bool = False) -> BinaryFacts:
    """Facts for a file on disk, read with pread (only headers and data sections)."""
    try:
        reader = FileReader(os.fspath(path))
    except OSError as exc:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"cannot open: {exc.strerror or exc}")
    with reader:
        return inspect_reader(reader, numpy_itself)


def inspect_bytes(data: bytes, numpy_itself: bool = False) -> BinaryFacts:
    """Facts for a binary already in memory, e.g. a member read from a wheel."""
    return inspect_reader(BytesReader(data), numpy_itself)
