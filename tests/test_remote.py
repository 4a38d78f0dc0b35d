"""Range reads of real wheels from a local HTTP server, including servers that misbehave.

`WheelServer` (also used by test_index.py and test_inspect.py) serves files with single-range support on
127.0.0.1. The first path segment picks a behaviour: `/ok/`, `/ignore-range/` (answers 200 with the whole
body), `/truncate/` (declares the full length, sends half, closes), `/shift/` (Content-Range starts one
byte late), `/total/` (Content-Range claims another total), `/long/` (sends more than asked), `/slow/`
(stalls), `/flaky/` (503 twice per path, then fine), `/redirect/` (302 to `/ok/`), `/auth/` (Basic auth
required for every path below it, pages included).
"""

from __future__ import annotations

import base64
import gzip
import io
import random
import re
import socket
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from abiguard.binary import inspect_reader, is_shared_object_name
from abiguard.cache import Cache
from abiguard.model import BuiltFor
from abiguard.sources.remote import HttpClient, MemberTooLarge, RemoteError, RemoteZip, redact
from abiguard.sources.wheel import ReadPolicy, inspect_local_wheel, inspect_remote_wheel
from tests.support.wheels import fetch_wheel

LINUX = "manylinux2014_x86_64"
USER, PASSWORD = "alice", "s3cr3t-token"


class WheelServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with keep-alive, single ranges and fault modes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # name -> body, served under every mode prefix
        self.pages: dict[str, tuple[str, bytes]] = {}  # exact path -> (content type, body)
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, client port)
        self.flaky: dict[str, int] = {}
        self.gzipped: set[str] = set()  # pages sent gzip-encoded when the client accepts it
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    server.handle(self)
                except (BrokenPipeError, ConnectionResetError):  # the client hung up on purpose
                    self.close_connection = True

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str, mode: str = "ok") -> str:
        return f"{self.base}/{mode}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests_for(self, name: str) -> int:
        return sum(1 for path, _, _ in self.log if path.endswith("/" + name))

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.log.append((h.path, h.headers.get("Range"), h.client_address[1]))
        if h.path.startswith("/auth/"):
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if h.headers.get("Authorization") != expected:
                return self._send(h, 401, b"who are you?")
        if h.path in self.pages:
            kind, body = self.pages[h.path]
            headers = {"Content-Type": kind}
            if h.path in self.gzipped and "gzip" in (h.headers.get("Accept-Encoding") or ""):
                body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
            return self._send(h, 200, body, headers)
        match = re.match(r"^/([a-z-]+)/(.+)$", h.path)
        if not match or match.group(2) not in self.files:
            return self._send(h, 404, b"not found")
        mode, name = match.groups()
        body = self.files[name]
        if mode == "redirect":
            return self._send(h, 302, b"", {"Location": f"/ok/{name}"})
        if mode == "flaky":
            with self.lock:
                self.flaky[h.path] = self.flaky.get(h.path, 0) + 1
                if self.flaky[h.path] <= 2:
                    return self._send(h, 503, b"busy")
        if mode == "slow":
            time.sleep(1.5)
        spec = h.headers.get("Range")
        if spec is None or mode == "ignore-range":
            return self._send(h, 200, body)
        start, end = _parse_range(spec, len(body))
        part = body[start : end + 1]
        total = len(body)
        if mode == "shift":
            start, end = start + 1, end + 1
        if mode == "total":
            total += 1000
        if mode == "long":
            part += b"\0" * 100
        headers = {"Content-Range": f"bytes {start}-{end}/{total}"}
        if mode == "truncate":
            h.send_response(206)
            h.send_header("Content-Range", headers["Content-Range"])
            h.send_header("Content-Length", str(len(part)))
            h.end_headers()
            h.wfile.write(part[: len(part) // 2])
            h.close_connection = True
            return None
        return self._send(h, 206, part, headers)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-response are part of the tests


def _parse_range(spec: str, size: int) -> tuple[int, int]:
    match = re.match(r"bytes=(\d*)-(\d*)$", spec)
    assert match, spec
    first, last = match.groups()
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last) if last else size - 1, size - 1)


@pytest.fixture(scope="module")
def server() -> Iterator[WheelServer]:
    srv = WheelServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def wheels(server: WheelServer) -> dict[str, Path]:
    found = {}
    for req in ("pandas==2.0.3", "pandas==2.2.3", "pymsis==0.8.0", "pymsis==0.10.0"):
        path = fetch_wheel(req, LINUX, "3.11")
        server.files[path.name] = path.read_bytes()
        found[req] = path
    return found


def client(**kw: float) -> HttpClient:
    return HttpClient(timeout=kw.get("timeout", 5.0), retries=int(kw.get("retries", 2)), backoff=0.01)


# --- the ZIP reader against real wheels ----------------------------------------------------------------


def test_members_match_zipfile(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.10.0"]
    with client() as http:
        remote = RemoteZip(server.url(path.name), http, size=path.stat().st_size)
        entries = {e.name: e for e in remote.entries()}
        with zipfile.ZipFile(path) as zf:
            assert set(entries) == set(zf.namelist())
            for info in zf.infolist():
                assert entries[info.filename].file_size == info.file_size
            for name in [n for n in zf.namelist() if is_shared_object_name(n)]:
                member = remote.open_member(entries[name])
                assert member.read(0, member.size) == zf.read(name)
                assert member.bytes_read < entries[name].compressed_size + 2048
    assert remote.counters.requests >= 2


def test_pandas_203_is_numpy1_from_a_small_fraction(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pandas==2.0.3"]
    with client() as http:
        report = inspect_remote_wheel(server.url(path.name), http, size=path.stat().st_size)
    assert report.built_for is BuiltFor.NUMPY1
    assert report.wheel_size == path.stat().st_size
    assert report.bytes_read < 0.15 * report.wheel_size
    assert report.requests <= 6
    assert not report.outcome.sampled and report.outcome.unread  # settled, not sampled
    doc = report.to_json()
    assert doc["members_total"] == 43 and doc["bytes_read"] == report.bytes_read
    numpy1 = [b for b in doc["binaries"] if b["built_for"] == "numpy1"]
    assert numpy1 and {"path", "module", "built_for", "min_numpy", "producer", "evidence"} <= set(numpy1[0])


def test_remote_and_local_agree_on_pandas_223(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pandas==2.2.3"]
    with client() as http:
        remote = inspect_remote_wheel(server.url(path.name), http, size=path.stat().st_size)
    local = inspect_local_wheel(path)
    assert remote.built_for is local.built_for is BuiltFor.NUMPY2
    assert remote.outcome.min_numpy == local.outcome.min_numpy == "1.20"
    assert not remote.outcome.unread and not remote.outcome.sampled
    assert remote.bytes_read < remote.wheel_size
    assert [m.facts.to_json() for m in remote.outcome.members] == [m.facts.to_json() for m in local.outcome.members]


def test_sampling_says_so(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pandas==2.2.3"]
    with client() as http:
        report = inspect_remote_wheel(server.url(path.name), http, policy=ReadPolicy(sample=3))
    assert report.built_for is BuiltFor.NUMPY2
    assert report.outcome.sampled and report.outcome.unread
    assert report.to_json()["sampled"] is True
    assert "sample" in (report.outcome.note or "")
    assert report.bytes_read < 0.1 * report.wheel_size


def test_connection_is_reused(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pandas==2.2.3"]
    before = len(server.log)
    with client() as http:
        report = inspect_remote_wheel(server.url(path.name), http)
    assert report.built_for is BuiltFor.NUMPY2
    ports = {port for _, _, port in server.log[before:]}
    assert len(ports) == 1 and report.requests >= 3


def test_cache_makes_second_read_free(server: WheelServer, wheels: dict[str, Path], tmp_path: Path) -> None:
    path = wheels["pymsis==0.10.0"]
    sha = "0" * 64
    with Cache.open(tmp_path / "c.sqlite3") as cache, client() as http:
        first = inspect_remote_wheel(server.url(path.name), http, sha256=sha, cache=cache)
        second = inspect_remote_wheel(server.url(path.name), http, sha256=sha, cache=cache)
    assert first.bytes_read > 0 and first.built_for is BuiltFor.NUMPY2
    assert (second.bytes_read, second.requests) == (0, 0)
    assert second.built_for is first.built_for and second.outcome.min_numpy == first.outcome.min_numpy
    assert all(m.cached for m in second.outcome.members)


# --- misbehaving servers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("ignore-range", "ignored the Range request"),
        ("truncate", "truncated body"),
        ("shift", "Content-Range"),
        ("total", "server sent bytes"),
        ("long", "larger than"),
    ],
)
def test_bad_servers_give_clear_errors(server: WheelServer, wheels: dict[str, Path], mode: str, message: str) -> None:
    path = wheels["pymsis==0.8.0"]
    with client() as http, pytest.raises(RemoteError, match=message) as info:
        inspect_remote_wheel(server.url(path.name, mode), http, size=path.stat().st_size)
        if mode == "ignore-range":
            assert http.counters.bytes_read == 0  # never downloaded the whole file by accident
    assert "\n" not in str(info.value)


def test_range_contradicting_listed_size(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.8.0"]
    size = path.stat().st_size
    with client() as http:
        with pytest.raises(RemoteError, match="the index lists"):
            http.get_range(server.url(path.name), 0, 100, total=size + 1)
        with pytest.raises(RemoteError, match="server sent bytes 1-100"):
            http.get_range(server.url(path.name, "shift"), 0, 100, total=size)
        with pytest.raises(RemoteError, match="the index lists"):
            http.get_range(server.url(path.name, "total"), 0, 100, total=size)


def test_slow_server_times_out(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.8.0"]
    start = time.monotonic()
    with client(timeout=0.3, retries=1) as http, pytest.raises(RemoteError, match="timed out"):
        inspect_remote_wheel(server.url(path.name, "slow"), http)
    assert time.monotonic() - start < 5


def test_retries_on_503(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.8.0"]
    with client(retries=3) as http:
        report = inspect_remote_wheel(server.url(path.name, "flaky"), http)
    assert report.built_for is BuiltFor.NUMPY1
    server.files["busy-1.0-py3-none-any.whl"] = b"x" * 100
    with client(retries=1) as http, pytest.raises(RemoteError, match="503") as info:
        http.get_range(server.url("busy-1.0-py3-none-any.whl", "flaky"), 0, 10)
    assert "2 attempts" in str(info.value)


def test_redirect_keeps_the_range(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.8.0"]
    with client() as http:
        report = inspect_remote_wheel(server.url(path.name, "redirect"), http, size=path.stat().st_size)
    assert report.built_for is BuiltFor.NUMPY1 and report.bytes_read < report.wheel_size


def test_missing_file_is_an_error(server: WheelServer) -> None:
    with client() as http, pytest.raises(RemoteError, match="404"):
        inspect_remote_wheel(server.url("nothing-1.0-py3-none-any.whl"), http)


def test_credentials_are_used_and_never_shown(server: WheelServer, wheels: dict[str, Path]) -> None:
    path = wheels["pymsis==0.8.0"]
    authed = server.url(path.name, "auth").replace("http://", f"http://{USER}:{PASSWORD}@")
    with client() as http:
        report = inspect_remote_wheel(authed, http)
        assert report.built_for is BuiltFor.NUMPY1
        assert PASSWORD not in report.source and PASSWORD not in str(report.to_json())
        wrong = authed.replace(PASSWORD, PASSWORD + "x")
        with pytest.raises(RemoteError) as info:
            inspect_remote_wheel(wrong, http)
    assert "401" in str(info.value) and PASSWORD not in str(info.value) and USER not in str(info.value)


def test_redact() -> None:
    assert redact("https://u:p%40ss@host.example/simple/") == "https://***@host.example/simple/"
    assert redact("https://token@host.example/x") == "https://***@host.example/x"
    assert redact("https://host.example/x") == "https://host.example/x"


# --- hand-made archives: CRC, ZIP64, bombs -----------------------------------------------------------


def make_zip(members: list[tuple[str, bytes, int, int, int]], zip64: bool = False) -> bytes:
    """A ZIP from (name, stored bytes, method, declared size, crc) tuples; ZIP64 records when asked."""
    out = io.BytesIO()
    central = io.BytesIO()
    for name, data, method, usize, crc in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, method, 0, 0x21, crc, len(data), usize,
                              len(raw), 0) + raw + data)
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, usize, len(data), offset)
            sizes = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        else:
            extra, sizes = b"", (len(data), usize, offset)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, method, 0, 0x21, crc,
                                  sizes[0], sizes[1], len(raw), len(extra), 0, 0, 0, 0, sizes[2]) + raw + extra)
    cd_offset = out.tell()
    out.write(central.getvalue())
    cd_size = len(central.getvalue())
    if zip64:
        eocd64 = out.tell()
        out.write(struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(members), len(members),
                              cd_size, cd_offset))
        out.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64, 1))
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), cd_size, cd_offset, 0))
    return out.getvalue()


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def so_bytes(wheels: dict[str, Path]) -> tuple[str, bytes]:
    with zipfile.ZipFile(wheels["pymsis==0.10.0"]) as zf:
        name = next(n for n in zf.namelist() if is_shared_object_name(n) and "libs" not in n)
        return name, zf.read(name)


def test_zip64_archive(server: WheelServer, wheels: dict[str, Path]) -> None:
    name, data = so_bytes(wheels)
    blob = make_zip([("demo/readme.txt", b"hello", 0, 5, zlib.crc32(b"hello")),
                     (name, deflate(data), 8, len(data), zlib.crc32(data))], zip64=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:  # the hand-made archive is valid
        assert zf.read(name) == data
    server.files["zip64-1.0-cp311-cp311-linux_x86_64.whl"] = blob
    with client() as http:
        remote = RemoteZip(server.url("zip64-1.0-cp311-cp311-linux_x86_64.whl"), http)
        entry = next(e for e in remote.entries() if e.name == name)
        assert entry.file_size == len(data)
        assert remote.open_member(entry).read(0, len(data)) == data
        assert inspect_reader(remote.open_member(entry)).built_for is BuiltFor.NUMPY2


def test_crc_mismatch_is_an_error(server: WheelServer, wheels: dict[str, Path]) -> None:
    name, data = so_bytes(wheels)
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    blob = make_zip([(name, bytes(damaged), 0, len(data), zlib.crc32(data))])
    server.files["crc-1.0-cp311-cp311-linux_x86_64.whl"] = blob
    with client() as http, pytest.raises(RemoteError, match="CRC"):
        inspect_remote_wheel(server.url("crc-1.0-cp311-cp311-linux_x86_64.whl"), http)


def test_zip_bomb_is_bounded(server: WheelServer) -> None:
    big = 64 * 1024 * 1024
    packed = deflate(b"\0" * big)
    honest = make_zip([("bomb/a.so", packed, 8, big, zlib.crc32(b"\0" * big))])
    lying = make_zip([("bomb/a.so", packed, 8, 4096, 0)])
    server.files["honest-1.0-cp311-cp311-linux_x86_64.whl"] = honest
    server.files["lying-1.0-cp311-cp311-linux_x86_64.whl"] = lying
    tracemalloc.start()
    try:
        with client() as http:
            url = server.url("honest-1.0-cp311-cp311-linux_x86_64.whl")
            report = inspect_remote_wheel(url, http, max_member=1024 * 1024)
            assert report.built_for is BuiltFor.UNKNOWN
            assert "too large to read remotely" in (report.outcome.members[0].facts.reason or "")
            assert report.bytes_read < 200_000  # the member itself was never fetched
            with pytest.raises(RemoteError, match="more than its declared"):
                inspect_remote_wheel(server.url("lying-1.0-cp311-cp311-linux_x86_64.whl"), http)
            remote = RemoteZip(url, http, max_member=1024 * 1024)
            with pytest.raises(MemberTooLarge):
                remote.open_member(remote.entries()[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_a_member_that_ends_inside_the_tail_is_not_fetched_twice(server: WheelServer) -> None:
    """The first read fetches the last 128 KB (the directory); a member reaching into them is completed from
    those bytes, so reading a small wheel whole never costs more than the wheel (it cost 111% before)."""
    big = random.Random(7).randbytes(300_000)  # incompressible: stored, its end inside the tail
    blob = make_zip([("demo/_big.so", big, 0, len(big), zlib.crc32(big)),
                     ("demo/readme.txt", b"hello", 0, 5, zlib.crc32(b"hello"))])
    server.files["straddle-1.0-cp311-cp311-linux_x86_64.whl"] = blob
    with client() as http:
        remote = RemoteZip(server.url("straddle-1.0-cp311-cp311-linux_x86_64.whl"), http)
        entry = next(e for e in remote.entries() if e.name == "demo/_big.so")
        assert remote.open_member(entry).read(0, len(big)) == big
        assert remote.counters.bytes_read <= len(blob)
        assert remote.counters.requests == 2


def nobody_listens() -> str:
    """`http://127.0.0.1:PORT` with a port just freed: connections to it are refused."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{taken.getsockname()[1]}"


def test_a_host_that_refuses_every_attempt_is_not_retried_again(server: WheelServer) -> None:
    """Connection refused after every retry: the next request to that host fails at once, with the same reason;
    other hosts are still asked."""
    closed = nobody_listens()
    with client(retries=2) as http:
        with pytest.raises(RemoteError, match=r"^Connection refused from .*/a/ \(after 3 attempts\)$"):
            http.get(f"{closed}/a/")
        assert http.counters.requests == 3
        with pytest.raises(RemoteError, match=r"^Connection refused from .*/b/ \(not retried: the host could not"):
            http.get(f"{closed}/b/")
        assert http.counters.requests == 3
        assert http.get(server.url("nothing-1.0-py3-none-any.whl")).status == 404
