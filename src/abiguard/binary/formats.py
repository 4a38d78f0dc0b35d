"""Find the byte ranges of a shared object that can hold string literals.

Pure: everything goes through a `Reader` (a size and a way to read byte ranges), so the same code reads a
local file with `pread`, a member inflated from a remote wheel, or bytes in memory. We read headers and
section tables only, and return the file ranges of non-executable data sections: that is where compilers
put `const char[]` literals (ELF `.rodata`, PE `.rdata`, Mach-O `__cstring`/`__const`), and it is usually
a small fraction of the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Protocol


class Reader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class FormatError(Exception):
    """The bytes claim a format but its headers are not readable."""


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Layout:
    format: str  # "elf", "pe", "macho", "macho-fat"
    regions: tuple[Region, ...]
    exports_multiarray: bool = False  # exports PyInit__multiarray_umath (numpy's own core, R0)


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class FileReader:
    """Reads ranges of a local file with pread and counts the bytes it read."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.size = os.fstat(self._fd).st_size
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        data = os.pread(self._fd, min(length, self.size - offset), offset)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ELF_MAGIC = b"\x7fELF"
PE_MAGIC = b"MZ"
MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce": ">",  # 32-bit big endian
    b"\xce\xfa\xed\xfe": "<",  # 32-bit little endian
    b"\xfe\xed\xfa\xcf": ">",  # 64-bit big endian
    b"\xcf\xfa\xed\xfe": "<",  # 64-bit little endian
}
FAT_MAGICS = {b"\xca\xfe\xba\xbe": False, b"\xca\xfe\xba\xbf": True}  # value: 64-bit fat_arch entries

_MAX_SECTIONS = 10_000


def sniff(head: bytes) -> str | None:
    """The container format named by the first bytes, or None for anything else."""
    if head.startswith(ELF_MAGIC):
        return "elf"
    if head.startswith(PE_MAGIC):
        return "pe"
    if head[:4] in MACHO_MAGICS:
        return "macho"
    if head[:4] in FAT_MAGICS:
        return "macho-fat"
    return None


def layout(reader: Reader) -> Layout:
    """The data regions worth searching; raises FormatError for unreadable or unknown headers."""
    head = reader.read(0, 64)
    kind = sniff(head)
    if kind == "elf":
        return _elf(reader, head)
    if kind == "pe":
        return _pe(reader)
    if kind == "macho":
        return Layout("macho", tuple(_macho(reader, 0, reader.size)))
    if kind == "macho-fat":
        return _fat(reader, head)
    raise FormatError("not an ELF, PE or Mach-O file")


def _unpack(fmt: str, data: bytes, offset: int = 0) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error as exc:
        raise FormatError(f"truncated header ({exc})") from None


def _check_range(reader: Reader, offset: int, size: int, what: str) -> None:
    if offset < 0 or size < 0 or offset + size > reader.size:
        raise FormatError(f"{what} lies outside the file (offset {offset}, size {size}, file {reader.size})")


# ---------------------------------------------------------------------------------------------- ELF

_SHT_PROGBITS = 1
_SHT_NOBITS = 8
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_ELF_SKIP_PREFIXES = (".eh_frame", ".gcc_except_table", ".init_array", ".fini_array", ".got", ".plt")


def _elf(reader: Reader, head: bytes) -> Layout:
    if len(head) < 52:
        raise FormatError("truncated ELF header")
    ei_class, ei_data = head[4], head[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise FormatError("invalid ELF identification bytes")
    end = "<" if ei_data == 1 else ">"
    if ei_class == 2:
        shoff, shentsize, shnum, shstrndx = (*_unpack(end + "Q", head, 0x28), *_unpack(end + "HHH", head, 0x3A))
    else:
        shoff, shentsize, shnum, shstrndx = (*_unpack(end + "I", head, 0x20), *_unpack(end + "HHH", head, 0x2E))
    if shoff == 0 or shnum == 0:
        raise FormatError("ELF file has no section table (stripped of sections or packed)")
    if shnum > _MAX_SECTIONS or shentsize < (64 if ei_class == 2 else 40):
        raise FormatError("implausible ELF section table")
    _check_range(reader, shoff, shnum * shentsize, "ELF section table")
    table = reader.read(shoff, shnum * shentsize)
    fmt = end + ("IIQQQQIIQQ" if ei_class == 2 else "IIIIIIIIII")
    sections = []
    for i in range(shnum):
        name, sh_type, flags, _addr, offset, size, *_ = _unpack(fmt, table, i * shentsize)
        sections.append((name, sh_type, flags, offset, size))
    if shstrndx >= shnum:
        raise FormatError("ELF section-name table index out of range")
    _n, _t, _f, str_off, str_size = sections[shstrndx]
    _check_range(reader, str_off, str_size, "ELF section-name table")
    names = reader.read(str_off, str_size)
    regions = []
    exports = False
    for name_off, sh_type, flags, offset, size in sections:
        name = names[name_off : names.find(b"\0", name_off)].decode("latin-1")
        if name == ".dynstr" and size:
            _check_range(reader, offset, size, f"section {name}")
            exports = b"PyInit__multiarray_umath\0" in reader.read(offset, size)
            continue
        if sh_type != _SHT_PROGBITS or not flags & _SHF_ALLOC or flags & _SHF_EXECINSTR or size == 0:
            continue
        if name.startswith(_ELF_SKIP_PREFIXES):
            continue
        _check_range(reader, offset, size, f"section {name}")
        regions.append(Region(name, offset, size))
    return Layout("elf", tuple(regions), exports)


# ----------------------------------------------------------------------------------------------- PE

_IMAGE_SCN_CNT_CODE = 0x20
_IMAGE_SCN_CNT_INITIALIZED_DATA = 0x40
_IMAGE_SCN_MEM_EXECUTE = 0x20000000


def _pe(reader: Reader) -> Layout:
    dos = reader.read(0, 64)
    (e_lfanew,) = _unpack("<I", dos, 0x3C)
    _check_range(reader, e_lfanew, 24, "PE header")
    coff = reader.read(e_lfanew, 24)
    if coff[:4] != b"PE\0\0":
        raise FormatError("MZ file without a PE signature")
    nsections, = _unpack("<H", coff, 6)
    opt_size, = _unpack("<H", coff, 20)
    if nsections > 96:
        raise FormatError("implausible PE section count")
    table_off = e_lfanew + 24 + opt_size
    _check_range(reader, table_off, nsections * 40, "PE section table")
    table = reader.read(table_off, nsections * 40)
    regions = []
    exports = False
    for i in range(nsections):
        raw_name, _vsize, _vaddr, raw_size, raw_ptr = _unpack("<8sIIII", table, i * 40)
        (chars,) = _unpack("<I", table, i * 40 + 36)
        name = raw_name.rstrip(b"\0").decode("latin-1")
        if chars & (_IMAGE_SCN_CNT_CODE | _IMAGE_SCN_MEM_EXECUTE) or not chars & _IMAGE_SCN_CNT_INITIALIZED_DATA:
            continue
        if raw_size == 0 or name in (".pdata", ".reloc", ".tls"):
            continue
        _check_range(reader, raw_ptr, raw_size, f"section {name}")
        regions.append(Region(name, raw_ptr, raw_size))
        if name == ".edata":
            exports = b"PyInit__multiarray_umath\0" in reader.read(raw_ptr, raw_size)
    return Layout("pe", tuple(regions), exports)


# -------------------------------------------------------------------------------------------- Mach-O

_LC_SEGMENT = 0x1
_LC_SEGMENT_64 = 0x19
_S_ATTR_PURE_INSTRUCTIONS = 0x80000000
_S_ATTR_SOME_INSTRUCTIONS = 0x00000400
_S_ZEROFILL = 0x1
_MACHO_STRING_SECTIONS = ("__cstring", "__const", "__data", "__objc_methname", "__rodata")


def _macho(reader: Reader, base: int, size: int) -> list[Region]:
    head = reader.read(base, 32)
    end = MACHO_MAGICS.get(head[:4])
    if end is None:
        raise FormatError("fat slice is not a Mach-O image")
    is64 = head[3] == 0xCF or head[0] == 0xCF
    ncmds, sizeofcmds = _unpack(end + "II", head, 16)
    header_size = 32 if is64 else 28
    if ncmds > _MAX_SECTIONS:
        raise FormatError("implausible Mach-O load command count")
    _check_range(reader, base + header_size, sizeofcmds, "Mach-O load commands")
    cmds = reader.read(base + header_size, sizeofcmds)
    regions = []
    pos = 0
    for _ in range(ncmds):
        cmd, cmdsize = _unpack(end + "II", cmds, pos)
        if cmdsize < 8:
            raise FormatError("corrupt Mach-O load command")
        if cmd in (_LC_SEGMENT, _LC_SEGMENT_64):
            seg64 = cmd == _LC_SEGMENT_64
            nsects = _unpack(end + "I", cmds, pos + (64 if seg64 else 48))[0]
            sect_pos = pos + (72 if seg64 else 56)
            sect_fmt = end + ("16s16sQQIIIIIIII" if seg64 else "16s16sIIIIIIIII")
            sect_size = 80 if seg64 else 68
            for j in range(nsects):
                sectname, _seg, _addr, sz, off, _align, _reloff, _nreloc, flags, *_ = _unpack(
                    sect_fmt, cmds, sect_pos + j * sect_size
                )
                name = sectname.rstrip(b"\0").decode("latin-1")
                if flags & (_S_ATTR_PURE_INSTRUCTIONS | _S_ATTR_SOME_INSTRUCTIONS):
                    continue
                if (flags & 0xFF) == _S_ZEROFILL or sz == 0 or off == 0:
                    continue
                if name not in _MACHO_STRING_SECTIONS:
                    continue
                if off + sz > size:
                    raise FormatError(f"section {name} lies outside the image")
                regions.append(Region(name, base + off, sz))
        pos += cmdsize
    return regions


def _fat(reader: Reader, head: bytes) -> Layout:
    is64 = FAT_MAGICS[head[:4]]
    (narch,) = _unpack(">I", head, 4)
    if narch == 0 or narch > 64:
        raise FormatError("implausible number of architectures in a fat Mach-O")
    entry = 32 if is64 else 20
    table = reader.read(8, narch * entry)
    regions: list[Region] = []
    for i in range(narch):
        if is64:
            _cpu, _sub, offset, size, _align, _res = _unpack(">iiQQII", table, i * entry)
        else:
            _cpu, _sub, offset, size, _align = _unpack(">iiIII", table, i * entry)
        _check_range(reader, offset, size, "fat Mach-O slice")
        regions.extend(_macho(reader, offset, size))
    return Layout("macho-fat", tuple(regions))
