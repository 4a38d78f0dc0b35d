"""Binary inspection: bytes in, facts out. No environment, no policy, no imports of scanned code."""

from __future__ import annotations

import os

from abiguard.binary import numpy as numpy_family
from abiguard.binary.formats import BytesReader, FileReader, FormatError, Reader, layout, sniff
from abiguard.model import BinaryFacts, BuiltFor

__all__ = ["BytesReader", "FileReader", "Reader", "inspect_bytes", "inspect_path", "inspect_reader", "sniff"]

SHARED_OBJECT_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


def is_shared_object_name(name: str) -> bool:
    """True for names a loader would take as a shared object: `x.so`, `libx.so.1.2`, `x.pyd`, `x.dylib`."""
    base = name.rsplit("/", 1)[-1].lower()
    if base.endswith(SHARED_OBJECT_SUFFIXES):
        return True
    return ".so." in base and base.rsplit(".so.", 1)[1].replace(".", "").isdigit()


def inspect_reader(reader: Reader, numpy_itself: bool = False) -> BinaryFacts:
    """Facts for one binary; never raises for bad input: unreadable files give built_for 'unknown'."""
    if reader.size == 0:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason="empty file", size=0)
    try:
        lay = layout(reader)
        regions = [(r.offset, reader.read(r.offset, r.size)) for r in lay.regions]
    except FormatError as exc:
        fmt = sniff(reader.read(0, 8)) or "unknown"
        return BinaryFacts(fmt, BuiltFor.UNKNOWN, reason=str(exc), bytes_read=_read(reader), size=reader.size)
    except OSError as exc:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"cannot read: {exc.strerror or exc}",
                           size=reader.size)
    facts = numpy_family.classify(regions, numpy_itself or lay.exports_multiarray)
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


def _read(reader: Reader) -> int:
    return getattr(reader, "bytes_read", reader.size)


def inspect_path(path: str | os.PathLike[str], numpy_itself: bool = False) -> BinaryFacts:
    try:
        reader = FileReader(os.fspath(path))
    except OSError as exc:
        return BinaryFacts("unknown", BuiltFor.UNKNOWN, reason=f"cannot open: {exc.strerror or exc}")
    with reader:
        return inspect_reader(reader, numpy_itself)


def inspect_bytes(data: bytes, numpy_itself: bool = False) -> BinaryFacts:
    return inspect_reader(BytesReader(data), numpy_itself)
