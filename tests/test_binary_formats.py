"""ELF/PE/Mach-O section selection, chunked reading, and robustness against malformed input.

Small synthetic images (built here, byte by byte, to the formats' specifications) pin down which sections
are read; real compiled modules and fuzzed copies of them show that nothing escapes `inspect_bytes`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from abiguard.binary import formats, inspect_bytes, inspect_path, is_shared_object_name
from abiguard.binary import numpy as fam
from abiguard.binary.formats import BytesReader, Region, chunks, layout
from abiguard.model import BinaryFacts, BuiltFor, Producer
from tests.conftest import NumpyModuleFactory

C1 = (b"\0numpy.core._multiarray_umath\0_ARRAY_API\0"
      b"module compiled against API version 0x%x but this version of numpy is 0x%x\0")
C2 = (b"\0numpy._core._multiarray_umath\0numpy.core._multiarray_umath\0_ARRAY_API\0"
      b"module was compiled against NumPy C-API version 0x%x (NumPy 1.20) but the running NumPy\0")
CORE_ONLY = b"\0numpy._core._multiarray_umath\0_ARRAY_API\0"  # what numpy's own core carries

SHF_WRITE, SHF_ALLOC, SHF_EXEC = 1, 2, 4
PROGBITS, STRTAB = 1, 3


# ------------------------------------------------------------------------------------------ image builders

def make_elf(sections: list[tuple[str, int, int, bytes]], *, segments: bool = False) -> bytes:
    """A 64-bit little-endian ELF shared object with these (name, type, flags, data) sections.

    With `segments`, one PT_LOAD per allocated section (R, plus W/X from its flags), as a linker would.
    """
    phnum = sum(1 for _n, _t, f, _d in sections if f & SHF_ALLOC) if segments else 0
    pos = 64 + 56 * phnum
    body = bytearray()
    placed = []
    for name, sh_type, flags, data in sections:
        placed.append((name, sh_type, flags, pos + len(body), len(data)))
        body += data + b"\0" * (-len(data) % 16)
    names = b"\0" + b"".join(n.encode() + b"\0" for n, *_ in sections) + b".shstrtab\0"
    names_off = pos + len(body)
    body += names + b"\0" * (-len(names) % 8)
    shoff = pos + len(body)
    shdrs = bytearray(64)  # the null section
    name_at = 1
    for name, sh_type, flags, offset, size in placed:
        shdrs += struct.pack("<IIQQQQIIQQ", name_at, sh_type, flags, offset, offset, size, 0, 0, 1, 0)
        name_at += len(name) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_at, STRTAB, 0, 0, names_off, len(names), 0, 0, 1, 0)
    shnum = len(sections) + 2
    ehdr = bytearray(b"\x7fELF\x02\x01\x01" + b"\0" * 9)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64 if phnum else 0, shoff, 0, 64, 56, phnum, 64,
                        shnum, shnum - 1)
    phdrs = bytearray()
    for _name, _t, flags, offset, size in placed:
        if segments and flags & SHF_ALLOC:
            p_flags = 4 | (2 if flags & SHF_WRITE else 0) | (1 if flags & SHF_EXEC else 0)
            phdrs += struct.pack("<IIQQQQQQ", 1, p_flags, offset, offset, offset, size, size, 0x1000)
    return bytes(ehdr + phdrs + body + shdrs)


S_CSTRING = 0x2
S_PURE_INSTRUCTIONS = 0x80000400


def make_macho(sections: list[tuple[str, str, int, bytes]], strings: bytes | None = None) -> bytes:
    """A 64-bit little-endian Mach-O dylib with these (segment, section, flags, data) sections.

    `strings` becomes the string table of an LC_SYMTAB (the symbol names, imported ones included).
    """
    segs: dict[str, list[tuple[str, int, bytes]]] = {}
    for seg, sect, flags, data in sections:
        segs.setdefault(seg, []).append((sect, flags, data))
    sizeofcmds = sum(72 + 80 * len(s) for s in segs.values()) + (24 if strings is not None else 0)
    pos = 32 + sizeofcmds
    cmds = bytearray()
    body = bytearray()
    for seg, sects in segs.items():
        cmd = bytearray(struct.pack("<II16sQQQQiiII", 0x19, 72 + 80 * len(sects), seg.encode(), 0, 0, 0, 0, 7,
                                    7, len(sects), 0))
        for sect, flags, data in sects:
            offset = pos + len(body)
            cmd += struct.pack("<16s16sQQIIIIIIII", sect.encode(), seg.encode(), offset, len(data), offset, 0, 0,
                               0, flags, 0, 0, 0)
            body += data + b"\0" * (-len(data) % 16)
        cmds += cmd
    if strings is not None:
        cmds += struct.pack("<IIIIII", 0x2, 24, 0, 0, pos + len(body), len(strings))
        body += strings
    ncmds = len(segs) + (strings is not None)
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 6, ncmds, sizeofcmds, 0, 0)
    return bytes(header + cmds + body)


def make_fat(images: list[bytes]) -> bytes:
    """A fat (universal) Mach-O holding `images`, each aligned to 4 KiB."""
    out = bytearray(struct.pack(">II", 0xCAFEBABE, len(images)))
    offset = 0x1000
    blobs = bytearray()
    for image in images:
        out += struct.pack(">iiIII", 0x0100000C, 0, offset, len(image), 12)
        pad = -len(image) % 0x1000
        blobs += image + b"\0" * pad
        offset += len(image) + pad
    return bytes(out + b"\0" * (0x1000 - len(out)) + blobs)


CODE, IDATA, EXEC, READ, WRITE = 0x20, 0x40, 0x20000000, 0x40000000, 0x80000000


def make_pe(sections: list[tuple[str, int, bytes]], exports: bytes | None = None) -> bytes:
    """A PE32+ DLL with these (name, characteristics, data) sections; `exports` becomes an .edata section."""
    if exports is not None:
        sections = [*sections, (".edata", IDATA | READ, exports)]
    nsec = len(sections)
    headers = 0x40 + 24 + 240 + 40 * nsec
    raw = (headers + 0x1FF) // 0x200 * 0x200
    table = bytearray()
    body = bytearray()
    export_dir = (0, 0)
    for i, (name, chars, data) in enumerate(sections):
        rva = 0x1000 * (i + 1)
        size = (len(data) + 0x1FF) // 0x200 * 0x200
        table += struct.pack("<8sIIIIIIHHI", name.encode(), len(data), rva, size, raw + len(body), 0, 0, 0, 0,
                             chars)
        body += data + b"\0" * (size - len(data))
        if name == ".edata":
            export_dir = (rva, len(data))
    opt = bytearray(240)
    struct.pack_into("<H", opt, 0, 0x20B)
    struct.pack_into("<II", opt, 112, *export_dir)
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x8664, nsec, 0, 0, 0, 240, 0x2022)
    dos = bytearray(b"MZ" + b"\0" * 62)
    struct.pack_into("<I", dos, 0x3C, 0x40)
    image = dos + coff + opt + table
    return bytes(image + b"\0" * (raw - len(image)) + body)


# ------------------------------------------------------------------------------------------ section choice

def test_elf_reads_only_read_only_data() -> None:
    image = make_elf([
        (".text", PROGBITS, SHF_ALLOC | SHF_EXEC, C2),
        (".rodata", PROGBITS, SHF_ALLOC, C1),
        (".data", PROGBITS, SHF_ALLOC | SHF_WRITE, C2),
        (".eh_frame", PROGBITS, SHF_ALLOC, C2),
        (".comment", PROGBITS, 0, C2),
    ])
    assert [r.name for r in layout(BytesReader(image)).regions] == [".rodata"]
    facts = inspect_bytes(image)
    assert (facts.format, facts.built_for) == ("elf", BuiltFor.NUMPY1)
    assert facts.bytes_read < len(image)


def test_elf_program_headers_when_sections_are_gone() -> None:
    image = bytearray(make_elf([(".text", PROGBITS, SHF_ALLOC | SHF_EXEC, C2), (".rodata", PROGBITS, SHF_ALLOC, C1)],
                               segments=True))
    struct.pack_into("<Q", image, 0x28, 0)  # e_shoff: no section table
    struct.pack_into("<HH", image, 0x3C, 0, 0)
    lay = layout(BytesReader(bytes(image)))
    assert len(lay.regions) == 1 and lay.regions[0].name.startswith("PT_LOAD")
    assert inspect_bytes(bytes(image)).built_for is BuiltFor.NUMPY1


def test_macho_reads_text_strings_and_cstring_sections() -> None:
    image = make_macho([
        ("__TEXT", "__text", S_PURE_INSTRUCTIONS, C2),
        ("__TEXT", "__cstring", S_CSTRING, C1),
        ("__TEXT", "__const", 0, b"\0numpy.core.multiarray failed to import\0"),
        ("__DATA", "__data", 0, C2),
        ("__DATA_CONST", "__const", 0, C2),
    ])
    lay = layout(BytesReader(image))
    assert [r.name for r in lay.regions] == ["__TEXT,__cstring", "__TEXT,__const"]
    assert inspect_bytes(image).built_for is BuiltFor.NUMPY1
    # A C-string section is read wherever it sits.
    other = make_macho([("__DATA", "__cstring", S_CSTRING, C2)])
    assert inspect_bytes(other).built_for is BuiltFor.NUMPY2


def test_fat_macho_images_must_agree() -> None:
    one = make_macho([("__TEXT", "__cstring", S_CSTRING, C2)])
    same = inspect_bytes(make_fat([one, one]))
    assert (same.format, same.built_for, same.min_numpy) == ("macho-fat", BuiltFor.NUMPY2, "1.20")
    two = make_macho([("__TEXT", "__cstring", S_CSTRING, C1)])
    mixed = inspect_bytes(make_fat([one, two]))
    assert mixed.built_for is BuiltFor.UNKNOWN
    assert mixed.reason is not None and "image 0: numpy2, image 1: numpy1" in mixed.reason


def test_pe_reads_rdata_only() -> None:
    image = make_pe([
        (".text", CODE | EXEC | READ, C2),
        (".rdata", IDATA | READ, C1),
        (".data", IDATA | READ | WRITE, C2),
        (".rsrc", IDATA | READ, C2),
    ])
    assert [r.name for r in layout(BytesReader(image)).regions] == [".rdata"]
    assert inspect_bytes(image).built_for is BuiltFor.NUMPY1


def test_numpy_core_recognised_by_its_export() -> None:
    """R0: a copy of numpy's core exports PyInit__multiarray_umath; without the export it is a C-API user."""
    elf = make_elf([(".dynstr", STRTAB, SHF_ALLOC, b"\0PyInit__multiarray_umath\0PyCapsule_GetPointer\0"),
                    (".rodata", PROGBITS, SHF_ALLOC, CORE_ONLY)])
    assert (inspect_bytes(elf).built_for, inspect_bytes(elf).reason) == (BuiltFor.NONE, "part of numpy itself (R0)")
    pe = make_pe([(".rdata", IDATA | READ, CORE_ONLY)], exports=b"\0" * 40 + b"x.pyd\0PyInit__multiarray_umath\0")
    assert inspect_bytes(pe).built_for is BuiltFor.NONE
    plain = make_elf([(".dynstr", STRTAB, SHF_ALLOC, b"\0PyInit_other\0PyCapsule_GetPointer\0"),
                      (".rodata", PROGBITS, SHF_ALLOC, CORE_ONLY)])
    assert inspect_bytes(plain).built_for is BuiltFor.NUMPY2


def test_symbols_are_read_only_when_the_verdict_could_be_numpy_core() -> None:
    """A module with `_import_array()`'s version check is a C-API user; its symbol table stays unread."""
    dynstr = b"\0" + b"x" * 50_000 + b"\0PyCapsule_GetPointer\0"
    user = make_elf([(".dynstr", STRTAB, SHF_ALLOC, dynstr), (".rodata", PROGBITS, SHF_ALLOC, C2)])
    assert inspect_bytes(user).bytes_read < 10_000


@pytest.mark.parametrize("python_symbol", [b"PyCapsule_GetPointer", b"PyObject_GetAttrString", b"_Py_Dealloc",
                                           b"PyPyCapsule_GetPointer"])
def test_r13_a_library_without_python_symbols_stays_unread(python_symbol: bytes) -> None:
    """R13: NumPy markers in a library that names no Python C-API symbol decide nothing, and are not read."""
    data = C2 + b"\0" * 100_000
    names = b"\0memcpy\0_ZN3foo3barEv\0"
    without = make_elf([(".dynstr", STRTAB, SHF_ALLOC, names), (".rodata", PROGBITS, SHF_ALLOC, data)])
    facts = inspect_bytes(without)
    assert (facts.built_for, facts.evidence) == (BuiltFor.NONE, ())
    assert "R13" in (facts.reason or "") and facts.bytes_read < 10_000
    user = make_elf([(".dynstr", STRTAB, SHF_ALLOC, names + python_symbol + b"\0"),
                     (".rodata", PROGBITS, SHF_ALLOC, data)])
    assert inspect_bytes(user).built_for is BuiltFor.NUMPY2
    # Mach-O lists imports in its string table too ("_" + the C name); a PE export directory does not, so a
    # PE is always searched.
    macho = [("__TEXT", "__cstring", S_CSTRING, data)]
    assert inspect_bytes(make_macho(macho, strings=b" \0_memcpy\0")).built_for is BuiltFor.NONE
    assert inspect_bytes(make_macho(macho, strings=b" \0_" + python_symbol + b"\0")).built_for is BuiltFor.NUMPY2
    assert inspect_bytes(make_pe([(".rdata", IDATA | READ, data)], exports=b"\0" * 40 + names)).built_for \
        is BuiltFor.NUMPY2


# ------------------------------------------------------------------------------------------ chunked reading

def scan(data: bytes, regions: list[Region], size: int) -> fam.Hits:
    hits = fam.Hits()
    for chunk in chunks(BytesReader(data), regions, size):
        fam.search(hits, chunk.offset, chunk.data, chunk.stop)
    return hits


@pytest.mark.parametrize("seam", range(1, len(fam.R1)))
def test_marker_cut_by_a_chunk_seam_is_found_once(seam: int) -> None:
    data = b"." * (64 - seam) + fam.R1 + b"\0_ARRAY_API\0" + b"." * 100
    hits = scan(data, [Region("r", 0, len(data))], size=64)
    assert hits.found["R1"].offset == 64 - seam
    assert fam.decide(hits).built_for is BuiltFor.NUMPY2


def test_look_ahead_is_not_fooled_by_a_seam() -> None:
    """Cython 3's auto-generated message must not turn into R6 when a chunk ends right after 'import'."""
    text = b"numpy.core.multiarray failed to import (auto-generated because you didn't call it)\0"
    cut = len(b"numpy.core.multiarray failed to import")
    data = b"." * (64 - cut) + text + b"." * 100
    assert "R6" not in scan(data, [Region("r", 0, len(data))], size=64)


def test_adjacent_regions_are_read_as_one() -> None:
    data = b"." * 40 + fam.R1 + b"\0_ARRAY_API\0" + b"." * 40
    split = 40 + 10  # inside the marker
    hits = scan(data, [Region("a", 0, split), Region("b", split, len(data) - split)], size=1 << 20)
    assert hits.found["R1"].offset == 40


def test_producer_marker_in_a_chunk_without_numpy_text() -> None:
    """Chunks without NumPy text are skipped at first, and searched for producers only when needed."""
    rodata = b"\0cython_runtime\0" + b"." * (3 << 20) + C1
    facts = inspect_bytes(make_elf([(".rodata", PROGBITS, SHF_ALLOC, rodata)]))
    assert (facts.built_for, facts.producer) == (BuiltFor.NUMPY1, Producer.CYTHON)
    # Without NumPy text nothing is read twice.
    plain = inspect_bytes(make_elf([(".rodata", PROGBITS, SHF_ALLOC, rodata[:-len(C1)])]))
    assert (plain.built_for, plain.producer) == (BuiltFor.NONE, None)
    assert plain.bytes_read < len(rodata) + 4096


def test_chunk_passing_the_gates_without_a_numpy_marker_is_searched_for_producers_only_when_needed() -> None:
    """"API" is common in any extension: a chunk with it but no NumPy marker gets no producer passes of its own
    (they are most of the search), yet its producer still names the builder once a later chunk uses NumPy."""
    head = b"\0cython_runtime\0the Python C-API\0"
    hits = fam.Hits()
    assert not fam.search(hits, 0, head)
    assert "cython" not in hits
    rodata = head + b"." * (3 << 20) + C1
    elf = make_elf([(".rodata", PROGBITS, SHF_ALLOC, rodata)])
    facts = inspect_bytes(elf)
    assert (facts.built_for, facts.producer) == (BuiltFor.NUMPY1, Producer.CYTHON)
    assert [e.offset for e in facts.evidence if e.marker == "cython"] == [elf.index(b"cython_runtime\0")]


# ------------------------------------------------------------------------------------------ malformed input

def assert_unknown(facts: BinaryFacts, *words: str) -> None:
    assert facts.built_for is BuiltFor.UNKNOWN
    assert facts.reason and not facts.reason.startswith("inspection failed"), facts.reason
    for word in words:
        assert word in facts.reason, facts.reason


def test_empty_and_zero_bytes() -> None:
    assert_unknown(inspect_bytes(b""), "empty")
    facts = inspect_bytes(b"\0" * 1000)
    assert facts.format == "unknown"
    assert_unknown(facts, "not an ELF, PE or Mach-O")


MAGICS = [b"\x7fELF\x02\x01\x01", b"\x7fELF\x01\x02\x01", b"MZ", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xce",
          b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"]


@pytest.mark.parametrize("magic", MAGICS)
def test_random_bytes_behind_a_magic(magic: bytes) -> None:
    rng = random.Random(magic)
    for size in (len(magic), 16, 63, 64, 200, 4096, 70_000):
        facts = inspect_bytes(magic + rng.randbytes(size))
        assert facts.built_for in (BuiltFor.UNKNOWN, BuiltFor.NONE)
        assert facts.reason is None or not facts.reason.startswith("inspection failed")


def test_elf_section_table_past_the_end() -> None:
    image = bytearray(make_elf([(".rodata", PROGBITS, SHF_ALLOC, C1)]))
    struct.pack_into("<Q", image, 0x28, len(image) + 100)
    assert_unknown(inspect_bytes(bytes(image)), "section table", "outside the file")


def test_elf_section_past_the_end() -> None:
    image = make_elf([(".rodata", PROGBITS, SHF_ALLOC, C1)])
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    patched = bytearray(image)
    struct.pack_into("<Q", patched, shoff + 64 + 32, 1 << 40)  # .rodata sh_size
    assert_unknown(inspect_bytes(bytes(patched)), ".rodata", "outside the file")


def test_elf_extended_section_numbering() -> None:
    """With e_shnum 0 and e_shstrndx SHN_XINDEX, the real count and index sit in section 0 (sh_size, sh_link)."""
    image = make_elf([(".rodata", PROGBITS, SHF_ALLOC, C2), (".dynstr", STRTAB, SHF_ALLOC, b"\0PyInit_m\0")])
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", image, 0x3C)
    extended = bytearray(image)
    struct.pack_into("<HH", extended, 0x3C, 0, 0xFFFF)
    struct.pack_into("<Q", extended, shoff + 32, shnum)  # section 0: sh_size
    struct.pack_into("<I", extended, shoff + 40, shstrndx)  # section 0: sh_link
    assert layout(BytesReader(bytes(extended))) == layout(BytesReader(image))
    assert [r.name for r in layout(BytesReader(image)).regions] == [".rodata"]
    assert inspect_bytes(bytes(extended)).built_for is BuiltFor.NUMPY2


@pytest.mark.parametrize(("build", "field", "value", "words"), [
    ("elf", (0x3C, "<H"), 0xFFFF, ("implausible",)),  # e_shnum
    ("elf", (0x3A, "<H"), 8, ("implausible",)),  # e_shentsize
    ("pe", (0x40 + 6, "<H"), 0xFFFF, ("implausible PE section count",)),
    ("macho", (16, "<I"), 0xFFFFFFFF, ("implausible Mach-O",)),
    ("macho", (32 + 64, "<I"), 0x7FFFFFFF, ("more sections",)),  # nsects of the first segment
    ("fat", (4, ">I"), 0xFFFF, ("implausible number of architectures",)),
])
def test_huge_counts(build: str, field: tuple[int, str], value: int, words: tuple[str, ...]) -> None:
    image = bytearray(SYNTHETIC[build]())
    struct.pack_into(field[1], image, field[0], value)
    assert_unknown(inspect_bytes(bytes(image)), *words)


def test_upx_packed_elf() -> None:
    """A UPX-packed ELF: no section table, one RWX-less code segment of compressed bytes, `UPX!` after the headers."""
    image = bytearray(make_elf([(".text", PROGBITS, SHF_ALLOC | SHF_EXEC, random.Random(1).randbytes(5000))],
                               segments=True))
    struct.pack_into("<Q", image, 0x28, 0)
    struct.pack_into("<HH", image, 0x3C, 0, 0)
    image[64 + 56 : 64 + 56 + 4] = b"UPX!"
    assert_unknown(inspect_bytes(bytes(image)), "UPX")


def test_upx_packed_pe() -> None:
    image = make_pe([("UPX0", IDATA | READ | WRITE | EXEC, b""), ("UPX1", IDATA | READ | WRITE | EXEC, b"x" * 900),
                     (".rsrc", IDATA | READ, b"\0" * 100)])
    assert_unknown(inspect_bytes(image), "UPX")


def test_file_and_bytes_readers_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = make_elf([(".rodata", PROGBITS, SHF_ALLOC, C2)])
    path = tmp_path / "m.so"
    path.write_bytes(image)
    assert inspect_path(path) == inspect_bytes(image)
    monkeypatch.setattr(formats, "_pread", None)  # as on Windows
    assert inspect_path(path) == inspect_bytes(image)
    assert inspect_path(tmp_path / "missing.so").reason == "cannot open: No such file or directory"


def test_shared_object_names() -> None:
    yes = ["a/b.cpython-311-x86_64-linux-gnu.so", "x.pyd", "libfoo.so.1.2", "libc.so.6", "x.dylib", "X.DLL"]
    no = ["x.py", "libfoo.so.bak", "foo.sofa", "so"]
    assert all(is_shared_object_name(n) for n in yes)
    assert not any(is_shared_object_name(n) for n in no)


# ------------------------------------------------------------------------------------------ fuzzing

SYNTHETIC: dict[str, Callable[[], bytes]] = {
    "elf": lambda: make_elf([(".text", PROGBITS, SHF_ALLOC | SHF_EXEC, b"\x90" * 64),
                             (".rodata", PROGBITS, SHF_ALLOC, C2),
                             (".dynstr", STRTAB, SHF_ALLOC, b"\0PyInit_m\0PyCapsule_GetPointer\0")], segments=True),
    "pe": lambda: make_pe([(".text", CODE | EXEC | READ, b"\xcc" * 64), (".rdata", IDATA | READ, C1)],
                          exports=b"\0" * 40 + b"m.pyd\0PyInit_m\0"),
    "macho": lambda: make_macho([("__TEXT", "__cstring", S_CSTRING, C2), ("__TEXT", "__const", 0, C1)]),
    "fat": lambda: make_fat([make_macho([("__TEXT", "__cstring", S_CSTRING, C2)])] * 2),
}

BOUNDARY = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random corruption aimed where parsers break: headers, tables, lengths, the end of the file."""
    out = bytearray(data)
    kind = rng.randrange(6)
    hot = min(len(out), 4096)
    if kind == 0:  # a few random bytes in the headers
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(hot)] = rng.randrange(256)
    elif kind == 1:  # a boundary integer over an aligned header field
        width = rng.choice((2, 4, 8))
        pos = rng.randrange(0, max(1, hot - width)) & ~(width - 1)
        value = rng.choice([*BOUNDARY, len(out), len(out) + 1]) & ((1 << (8 * width)) - 1)
        out[pos : pos + width] = value.to_bytes(width, rng.choice(("little", "big")))
    elif kind == 2:  # truncation
        del out[rng.randrange(len(out)) :]
    elif kind == 3:  # random bytes anywhere (section tables often sit at the end)
        for _ in range(rng.randint(1, 32)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 4:  # a block duplicated elsewhere: plausible-looking but wrong structures
        a, b = rng.randrange(len(out)), rng.randrange(len(out))
        n = rng.randint(1, 256)
        out[b : b + n] = out[a : a + n]
    else:  # the tail zeroed
        cut = rng.randrange(len(out))
        out[cut:] = bytes(len(out) - cut)
    return bytes(out)


def fuzz(seeds: dict[str, bytes], iterations: int, seed: int) -> int:
    """Inspect `iterations` corrupted copies; return how many were still classified (not unknown)."""
    rng = random.Random(seed)
    names = sorted(seeds)
    classified = 0
    for _ in range(iterations):
        data = seeds[rng.choice(names)]
        for _ in range(rng.randint(1, 3)):
            data = mutate(rng, data) if data else data
        facts = inspect_bytes(data)  # must not raise
        assert isinstance(facts, BinaryFacts)
        assert facts.reason is None or not facts.reason.startswith("inspection failed"), facts.reason
        if facts.built_for is BuiltFor.UNKNOWN:
            assert facts.reason
        else:
            classified += 1
        assert facts.bytes_read <= 2 * len(data) + 8192
    return classified


def test_fuzz_synthetic_images() -> None:
    classified = fuzz({k: build() for k, build in SYNTHETIC.items()}, 4000, seed=20240616)
    assert classified > 100  # the mutations leave many images readable: the fuzzing reaches the scanner


@pytest.mark.network
def test_fuzz_compiled_modules(numpy_module: NumpyModuleFactory) -> None:
    seeds = {v: numpy_module(v).read_bytes() for v in ("1.26.4", "2.2.6")}
    fuzz(seeds, 2000, seed=7)


@pytest.mark.network
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_real_module(numpy_module: NumpyModuleFactory, fraction: float) -> None:
    data = numpy_module("2.2.6").read_bytes()
    assert_unknown(inspect_bytes(data[: int(len(data) * fraction)]), "outside the file", "truncated")
