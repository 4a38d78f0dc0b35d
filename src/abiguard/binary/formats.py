"""Find the byte ranges of a shared object that can hold string literals.

Pure: everything goes through a `Reader` (a size and a way to read byte ranges), so the same code reads a
local file with `pread`, a member inflated from a remote wheel, or bytes in memory. We read headers and
section tables only, and return the file ranges of read-only, non-executable data: that is where compilers
put `const char[]` literals (ELF `.rodata`, PE `.rdata`, Mach-O `__TEXT,__cstring`/`__TEXT,__const`), and it
is usually a tenth of the file. Writable data (`.data`, `__DATA`) is skipped: scanning real wheels found no
marker there, and it is often as large as `.rodata`.

Every failure to make sense of the headers is a `FormatError` (never `struct.error`, `IndexError` ...), so
callers can turn it into an "unknown" verdict with the message as the reason.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


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
    group: int = 0  # which image of a fat Mach-O the region belongs to (0 for everything else)


@dataclass(frozen=True)
class Layout:
    format: str  # "elf", "pe", "macho", "macho-fat"
    regions: tuple[Region, ...]
    # Where exported symbol names live (ELF .dynstr, PE export directory, Mach-O string table). Read only
    # when a binary turns out to use NumPy, to recognise a copy of numpy's own core (R0).
    symbols: tuple[Region, ...] = ()
    packer: str | None = None  # "UPX" when the headers show a packed image
    groups: int = 1  # number of images (architectures) in a fat Mach-O
    # Whether `symbols` also holds the names of imported symbols (ELF .dynstr and the Mach-O string table do;
    # a PE export directory does not), so that a name absent from it is neither imported nor exported.
    lists_imports: bool = False


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0:
            return b""
        data = self._data[offset : offset + length]
        self.bytes_read += len(data)
        return data


_pread: Callable[[int, int, int], bytes] | None = getattr(os, "pread", None)


def open_regular(path: str) -> int:
    """A read-only descriptor of `path`, or OSError unless it is a regular file: opening a FIFO that carries a
    library's (or a RECORD's) name would wait forever for a writer, and a device never ends."""
    return _open_regular(path)[0]


def _open_regular(path: str) -> tuple[int, int]:
    """`open_regular`, and the file's size from the same fstat."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except OSError:
        os.close(fd)
        raise
    return fd, st.st_size


class FileReader:
    """Reads ranges of a local file with pread and counts the bytes it read."""

    def __init__(self, path: str) -> None:
        self._fd, self.size = _open_regular(path)
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        if _pread is not None:
            data = _pread(self._fd, length, offset)
        else:  # Windows has no pread
            os.lseek(self._fd, offset, os.SEEK_SET)
            data = os.read(self._fd, length)
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
UPX_MAGIC = b"UPX!"

_MAX_SECTIONS = 10_000
_MAX_FAT_ARCHS = 30  # also keeps Java class files (same magic, "narch" >= 45) out
HEAD_SIZE = 512  # first read: the file header and, for ELF, usually the program headers too


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
    head = reader.read(0, HEAD_SIZE)
    kind = sniff(head)
    if kind == "elf":
        return _elf(reader, head)
    if kind == "pe":
        return _pe(reader, head)
    if kind == "macho":
        regions, symbols = _macho(reader, 0, reader.size, 0)
        return Layout("macho", regions, symbols, _upx_in(head), lists_imports=bool(symbols))
    if kind == "macho-fat":
        return _fat(reader, head)
    raise FormatError("not an ELF, PE or Mach-O file")


class Chunk(NamedTuple):
    """Bytes of one region read at `offset`; a match counts only if it starts before `stop`.

    Consecutive chunks overlap by `OVERLAP` bytes so that a marker cut by a chunk boundary is found whole in
    the next chunk, and `stop` keeps it from being counted (or misjudged, for patterns with look-ahead) in
    the first.
    """

    offset: int
    data: bytes
    stop: int


CHUNK_SIZE = 1 << 20
OVERLAP = 1024  # longer than any marker plus the look-ahead rules need


def chunks(reader: Reader, regions: Sequence[Region], size: int = CHUNK_SIZE) -> Iterator[Chunk]:
    """Read `regions` in bounded pieces, merging ones that touch so that nothing straddles a seam."""
    for start, end in _merge(regions):
        pos = start
        while pos < end:
            step = min(size, end - pos)
            last = pos + step >= end
            data = reader.read(pos, step if last else min(step + OVERLAP, end - pos))
            if not data:
                break
            yield Chunk(pos, data, len(data) if last else step)
            pos += step


def _merge(regions: Sequence[Region]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for r in sorted(regions, key=lambda r: r.offset):
        if r.size <= 0:
            continue
        if spans and r.offset <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], r.offset + r.size))
        else:
            spans.append((r.offset, r.offset + r.size))
    return spans


def _unpack(fmt: str, data: bytes, offset: int = 0) -> tuple[Any, ...]:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise FormatError(f"truncated header (needed {struct.calcsize(fmt)} bytes at {offset})") from None


def _check_range(reader: Reader, offset: int, size: int, what: str) -> None:
    if offset < 0 or size < 0 or offset + size > reader.size:
        raise FormatError(
            f"{what} lies outside the file (offset {offset}, size {size}, file {reader.size}): truncated?"
        )


def _upx_in(data: bytes) -> str | None:
    return "UPX" if UPX_MAGIC in data else None


# ---------------------------------------------------------------------------------------------- ELF

_SHT_PROGBITS = 1
_SHT_STRTAB = 3
_SHT_NOBITS = 8
_SHF_WRITE = 0x1
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_PT_LOAD = 1
_PF_X, _PF_W, _PF_R = 1, 2, 4
# Read-only sections that hold no C literals: unwind tables, and CUDA device code (catboost's .nv_fatbin is
# 224 MB of its 277 MB file).
_ELF_SKIP_PREFIXES = (".eh_frame", ".gcc_except_table", ".interp", ".note", ".gnu_debuglink", ".ARM.ex",
                      ".nv_fatbin", "__nv_relfatbin", ".nvFatBin")

# The fields of a section header we use (name, type, flags, offset, size), the others skipped as padding.
_SECTION_ENTRY = {(end, is64): struct.Struct(end + ("IIQ8xQQ24x" if is64 else "III4xII16x"))
                  for end in "<>" for is64 in (False, True)}


def _elf(reader: Reader, head: bytes) -> Layout:
    if len(head) < 52:
        raise FormatError("truncated ELF header")
    ei_class, ei_data = head[4], head[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise FormatError("invalid ELF identification bytes")
    end = "<" if ei_data == 1 else ">"
    is64 = ei_class == 2
    if is64:
        phoff, shoff = _unpack(end + "QQ", head, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = _unpack(end + "HHHHH", head, 0x36)
    else:
        phoff, shoff = _unpack(end + "II", head, 0x1C)
        phentsize, phnum, shentsize, shnum, shstrndx = _unpack(end + "HHHHH", head, 0x2A)
    packer = _upx_in(head)
    if shoff == 0:
        # No section table: sstrip'd or packed. The loader's view (program headers) still says where
        # read-only data lives.
        return _elf_segments(reader, end, is64, phoff, phentsize, phnum, packer)
    if shentsize < (64 if is64 else 40):
        raise FormatError(f"implausible ELF section header size {shentsize}")
    if shnum == 0 or shstrndx == 0xFFFF:  # extended numbering: the real values sit in section 0
        _check_range(reader, shoff, shentsize, "ELF section table")
        _n, _t, _f, _a, _o, size0, link0, *_ = _unpack(end + ("IIQQQQII" if is64 else "IIIIIIII"),
                                                        reader.read(shoff, shentsize))
        shnum = shnum or size0
        shstrndx = link0 if shstrndx == 0xFFFF else shstrndx
    if shnum == 0 or shnum > _MAX_SECTIONS:
        raise FormatError(f"implausible ELF section count {shnum}")
    _check_range(reader, shoff, shnum * shentsize, "ELF section table")
    table = reader.read(shoff, shnum * shentsize)
    entry = _SECTION_ENTRY[end, is64]
    if shentsize == entry.size and len(table) == shnum * shentsize:
        sections = list(entry.iter_unpack(table))
    else:
        sections = [_unpack(entry.format, table, i * shentsize) for i in range(shnum)]
    if shstrndx >= shnum:
        raise FormatError("ELF section-name table index out of range")
    str_off, str_size = sections[shstrndx][3:5]
    _check_range(reader, str_off, str_size, "ELF section-name table")
    names = reader.read(str_off, str_size)
    if names.startswith(b"UPX") or b"\0UPX" in names:
        packer = "UPX"
    regions = []
    symbols = []
    for name_off, sh_type, flags, offset, size in sections:
        if not size or sh_type == _SHT_NOBITS:
            continue
        if offset + size > reader.size:  # a cut file fails here, not later
            _check_range(reader, offset, size, f"section {_name(names, name_off)}")
        if sh_type == _SHT_STRTAB:
            if _name(names, name_off) == ".dynstr":
                symbols.append(Region(".dynstr", offset, size))
            continue
        if sh_type != _SHT_PROGBITS or flags & (_SHF_ALLOC | _SHF_EXECINSTR | _SHF_WRITE) != _SHF_ALLOC:
            continue
        name = _name(names, name_off)
        if not name.startswith(_ELF_SKIP_PREFIXES):
            regions.append(Region(name, offset, size))
    if not regions:
        return _elf_segments(reader, end, is64, phoff, phentsize, phnum, packer, tuple(symbols))
    return Layout("elf", tuple(regions), tuple(symbols), packer, lists_imports=bool(symbols))


def _name(names: bytes, offset: int) -> str:
    stop = names.find(b"\0", offset)
    return names[offset : stop if stop >= 0 else len(names)].decode("latin-1")


def _elf_segments(
    reader: Reader, end: str, is64: bool, phoff: int, phentsize: int, phnum: int, packer: str | None,
    symbols: tuple[Region, ...] = (),
) -> Layout:
    """Read-only loadable segments, for ELF files without a usable section table."""
    if phoff == 0 or phnum == 0:
        raise FormatError("ELF file has neither a section table nor program headers")
    if phentsize < (56 if is64 else 32) or phnum > _MAX_SECTIONS:
        raise FormatError("implausible ELF program header table")
    _check_range(reader, phoff, phnum * phentsize, "ELF program header table")
    table = reader.read(phoff, phnum * phentsize)
    packer = packer or _upx_in(table)
    loads = []
    for i in range(phnum):
        if is64:
            p_type, p_flags, offset, _va, _pa, filesz, *_ = _unpack(end + "IIQQQQQQ", table, i * phentsize)
        else:
            p_type, offset, _va, _pa, filesz, _memsz, p_flags, _ = _unpack(end + "IIIIIIII", table, i * phentsize)
        if p_type == _PT_LOAD and filesz and p_flags & _PF_R and not p_flags & _PF_W:
            _check_range(reader, offset, filesz, f"ELF segment {i}")
            loads.append((bool(p_flags & _PF_X), Region(f"PT_LOAD[{i}]", offset, filesz)))
    # Prefer segments without code (linkers since 2018 put .rodata in its own); else take them all.
    data_only = tuple(r for x, r in loads if not x)
    regions = data_only or tuple(r for _x, r in loads)
    if not regions:
        raise FormatError("ELF file has no read-only loadable data")
    return Layout("elf", regions, symbols, packer, lists_imports=bool(symbols))


# ----------------------------------------------------------------------------------------------- PE

_IMAGE_SCN_CNT_CODE = 0x20
_IMAGE_SCN_CNT_INITIALIZED_DATA = 0x40
_IMAGE_SCN_MEM_EXECUTE = 0x20000000
_IMAGE_SCN_MEM_WRITE = 0x80000000
_PE_SKIP = (".pdata", ".reloc", ".rsrc", ".tls", ".xdata", ".nv_fatb")


def _pe(reader: Reader, head: bytes) -> Layout:
    (e_lfanew,) = _unpack("<I", head, 0x3C)
    _check_range(reader, e_lfanew, 24, "PE header")
    coff = reader.read(e_lfanew, 24)
    if coff[:4] != b"PE\0\0":
        raise FormatError("MZ file without a PE signature")
    (nsections,) = _unpack("<H", coff, 6)
    (opt_size,) = _unpack("<H", coff, 20)
    if nsections == 0 or nsections > 96:
        raise FormatError(f"implausible PE section count {nsections}")
    opt = reader.read(e_lfanew + 24, opt_size)
    table_off = e_lfanew + 24 + opt_size
    _check_range(reader, table_off, nsections * 40, "PE section table")
    table = reader.read(table_off, nsections * 40)
    regions = []
    mapped = []
    packer = None
    for i in range(nsections):
        raw_name, vsize, vaddr, raw_size, raw_ptr = _unpack("<8sIIII", table, i * 40)
        (chars,) = _unpack("<I", table, i * 40 + 36)
        name = raw_name.rstrip(b"\0").decode("latin-1")
        if name.startswith("UPX"):
            packer = "UPX"
        if raw_size == 0 or raw_ptr == 0:
            continue
        _check_range(reader, raw_ptr, raw_size, f"section {name}")
        mapped.append((vaddr, min(vsize or raw_size, raw_size), raw_ptr))
        if chars & (_IMAGE_SCN_CNT_CODE | _IMAGE_SCN_MEM_EXECUTE | _IMAGE_SCN_MEM_WRITE):
            continue
        if not chars & _IMAGE_SCN_CNT_INITIALIZED_DATA or name in _PE_SKIP:
            continue
        regions.append(Region(name, raw_ptr, raw_size))
    symbols = _pe_exports(opt, mapped)
    return Layout("pe", tuple(regions), symbols, packer or _upx_in(head))


def _pe_exports(opt: bytes, mapped: list[tuple[int, int, int]]) -> tuple[Region, ...]:
    """The file range of the export directory (it holds the exported names), if any."""
    if len(opt) < 2:
        return ()
    magic = struct.unpack_from("<H", opt)[0]
    dir_at = {0x10B: 96, 0x20B: 112}.get(magic)  # PE32 / PE32+: offset of the data directories
    if dir_at is None or len(opt) < dir_at + 8:
        return ()
    rva, size = struct.unpack_from("<II", opt, dir_at)
    for vaddr, vsize, raw_ptr in mapped:
        if size and vaddr <= rva < vaddr + vsize:
            return (Region("exports", raw_ptr + rva - vaddr, min(size, vaddr + vsize - rva)),)
    return ()


# -------------------------------------------------------------------------------------------- Mach-O

_LC_SEGMENT = 0x1
_LC_SYMTAB = 0x2
_LC_SEGMENT_64 = 0x19
_S_ATTR_PURE_INSTRUCTIONS = 0x80000000
_S_ATTR_SOME_INSTRUCTIONS = 0x00000400
_S_ZEROFILL, _S_CSTRING_LITERALS, _S_GB_ZEROFILL, _S_THREAD_LOCAL_ZEROFILL = 0x1, 0x2, 0xC, 0x12
_MACHO_TEXT_SKIP = ("__unwind_info", "__eh_frame", "__gcc_except_tab", "__stubs", "__stub_helper")


def _macho(reader: Reader, base: int, size: int, group: int) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """Regions of the image at `base` (file offsets inside a fat slice are relative to the slice)."""
    head = reader.read(base, 32)
    end = MACHO_MAGICS.get(head[:4])
    if end is None:
        raise FormatError("fat slice is not a Mach-O image")
    is64 = head[3] == 0xCF or head[0] == 0xCF
    ncmds, sizeofcmds = _unpack(end + "II", head, 16)
    header_size = 32 if is64 else 28
    if ncmds > _MAX_SECTIONS:
        raise FormatError(f"implausible Mach-O load command count {ncmds}")
    if header_size + sizeofcmds > size:
        raise FormatError("Mach-O load commands lie outside the image: truncated?")
    _check_range(reader, base + header_size, sizeofcmds, "Mach-O load commands")
    cmds = reader.read(base + header_size, sizeofcmds)
    regions = []
    symbols = []
    pos = 0
    for _ in range(ncmds):
        cmd, cmdsize = _unpack(end + "II", cmds, pos)
        if cmdsize < 8 or pos + cmdsize > len(cmds):
            raise FormatError("corrupt Mach-O load command")
        if cmd in (_LC_SEGMENT, _LC_SEGMENT_64):
            seg64 = cmd == _LC_SEGMENT_64
            fileoff, filesize = _unpack(end + ("QQ" if seg64 else "II"), cmds, pos + (40 if seg64 else 32))
            if fileoff + filesize > size:
                raise FormatError("Mach-O segment lies outside the image: truncated?")
            (nsects,) = _unpack(end + "I", cmds, pos + (64 if seg64 else 48))
            sect_pos = pos + (72 if seg64 else 56)
            sect_fmt = end + ("16s16sQQIIIIIIII" if seg64 else "16s16sIIIIIIIII")
            sect_size = 80 if seg64 else 68
            if sect_pos + nsects * sect_size > pos + cmdsize:
                raise FormatError("Mach-O segment claims more sections than it holds")
            for j in range(nsects):
                sectname, segname, _addr, sz, off, _align, _reloff, _nreloc, flags, *_ = _unpack(
                    sect_fmt, cmds, sect_pos + j * sect_size
                )
                name = sectname.rstrip(b"\0").decode("latin-1")
                seg = segname.rstrip(b"\0").decode("latin-1")
                kind = flags & 0xFF
                if flags & (_S_ATTR_PURE_INSTRUCTIONS | _S_ATTR_SOME_INSTRUCTIONS) or sz == 0 or off == 0:
                    continue
                if kind in (_S_ZEROFILL, _S_GB_ZEROFILL, _S_THREAD_LOCAL_ZEROFILL):
                    continue
                # C string literals (any segment) and read-only constant arrays in __TEXT, which is where
                # clang puts `static const char x[]` (Cython's string tables).
                if kind != _S_CSTRING_LITERALS and (seg != "__TEXT" or name in _MACHO_TEXT_SKIP):
                    continue
                if off + sz > size:
                    raise FormatError(f"section {seg},{name} lies outside the image: truncated?")
                regions.append(Region(f"{seg},{name}", base + off, sz, group))
        elif cmd == _LC_SYMTAB:
            _symoff, _nsyms, stroff, strsize = _unpack(end + "IIII", cmds, pos + 8)
            if strsize and stroff + strsize <= size:
                symbols.append(Region("symtab strings", base + stroff, strsize, group))
        pos += cmdsize
    return tuple(regions), tuple(symbols)


def _fat(reader: Reader, head: bytes) -> Layout:
    is64 = FAT_MAGICS[head[:4]]
    (narch,) = _unpack(">I", head, 4)
    if narch == 0 or narch > _MAX_FAT_ARCHS:
        raise FormatError(f"implausible number of architectures in a fat Mach-O: {narch}")
    entry = 32 if is64 else 20
    _check_range(reader, 8, narch * entry, "fat Mach-O architecture table")
    table = reader.read(8, narch * entry)
    regions: list[Region] = []
    symbols: list[Region] = []
    for i in range(narch):
        if is64:
            _cpu, _sub, offset, size, _align, _res = _unpack(">iiQQII", table, i * entry)
        else:
            _cpu, _sub, offset, size, _align = _unpack(">iiIII", table, i * entry)
        _check_range(reader, offset, size, "fat Mach-O slice")
        slice_regions, slice_symbols = _macho(reader, offset, size, i)
        regions.extend(slice_regions)
        symbols.extend(slice_symbols)
    return Layout("macho-fat", tuple(regions), tuple(symbols), _upx_in(head), narch,
                  lists_imports=len(symbols) == narch)
