"""Real wheels from the package index, downloaded once with pip and kept in the test cache."""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.cache import cache_root

_MANYLINUX = re.compile(r"manylinux_2_(\d+)_(\w+)")


def compatible_platforms(platform: str) -> list[str]:
    """The tags a machine with `platform` accepts, best first, as pip would compute them on that machine.

    pip's `--platform` takes a `manylinux_2_N` tag literally, so `manylinux_2_28_x86_64` alone would miss
    wheels tagged only `manylinux_2_17`/`manylinux2014`; we spell out every older glibc level. Other tags
    (manylinux2014, macosx_*, win_*) pip expands itself.
    """
    match = _MANYLINUX.fullmatch(platform)
    if not match:
        return [platform]
    glibc, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def fetch_wheel(requirement: str, platform: str, python_version: str = "3.11") -> Path:
    """The wheel pip picks for `requirement` on `platform` (a wheel platform tag), cached by arguments."""
    key = f"{requirement}-{platform}-py{python_version}".replace("=", "_").replace("/", "_")
    target = cache_root() / "wheels" / key
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(target.glob("*.whl"))
        if not found:
            platforms = [arg for tag in compatible_platforms(platform) for arg in ("--platform", tag)]
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 *platforms, "--python-version", python_version, "--dest", str(target), requirement],
                check=True,
            )
            found = sorted(target.glob("*.whl"))
    assert len(found) == 1, found
    return found[0]


def shared_objects(wheel: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of each shared object in `wheel`, one at a time to keep memory low."""
    from abiguard.binary import is_shared_object_name

    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if is_shared_object_name(info.filename):
                yield info.filename, zf.read(info)


def build_wheel(dest: Path, name: str, version: str, files: dict[str, bytes], requires: list[str]) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD with hashes) for distributions no index has."""
    import base64
    import hashlib
    import zipfile

    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    meta = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                      *(f"Requires-Dist: {r}" for r in requires)]) + "\n"
    files = {**files, f"{info}/METADATA": meta.encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"}
    record = []
    for rel, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{rel},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def corrupt_shared_objects(wheel: Path, dest: Path) -> Path:
    """A copy of `wheel` in `dest` whose shared objects' deflate streams are damaged (2,000 bytes inverted 50
    bytes into each), leaving the directory intact: zipfile then fails while inflating, not while opening."""
    import struct

    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        members = [i for i in zf.infolist() if i.filename.endswith(".so") and i.compress_type == zipfile.ZIP_DEFLATED]
    for info in members:
        name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len + 50
        for at in range(start, min(start + 2000, start - 50 + info.compress_size)):
            data[at] ^= 0xFF
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel.name
    out.write_bytes(bytes(data))
    return out


def with_requires(wheel: Path, dest: Path, requires: list[str]) -> Path:
    """A copy of `wheel` in `dest` whose METADATA declares `requires` instead of its own Requires-Dist lines."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            data = src.read(info)
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", info.filename):
                kept = [ln for ln in data.decode().split("\n") if not ln.startswith("Requires-Dist:")]
                data = "\n".join([kept[0], *(f"Requires-Dist: {r}" for r in requires), *kept[1:]]).encode()
            zf.writestr(info, data)
    return out
