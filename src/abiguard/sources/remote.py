"""Read members of a remote wheel with HTTP range requests, without downloading the wheel whole.

A wheel is a ZIP file; its table of contents (the central directory) sits at the end. So: one suffix
request for the tail (end-of-central-directory record, ZIP64 when needed, usually the whole central
directory), then one request per member we want, spanning its local header and compressed data. Members
are inflated in memory with a hard bound, and their CRC32 is checked.

Anything that would make the answer wrong rather than merely slow is an error, never a guess: a server
that answers a range request with the whole file (200), a short body, a Content-Range or total length that
contradicts what we asked for or what the index listed, or a CRC mismatch. Each becomes a one-line
`RemoteError` whose text never contains credentials (`redact`).

The HTTP client is the standard library's `http.client`, with one keep-alive connection per host, a
timeout, bounded retries with exponential backoff (connection errors, 429 and 5xx), Basic auth from the
URL's user-info or `~/.netrc`, and the environment's proxies.
"""

from __future__ import annotations

import base64
import errno
import http.client
import netrc
import os
import re
import socket
import ssl
import struct
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message

DEFAULT_MAX_MEMBER = 512 * 1024 * 1024  # largest member we inflate in memory
DEFAULT_TAIL = 128 * 1024  # first suffix read: EOCD plus, for most wheels, the whole central directory
_MAX_BODY = 256 * 1024 * 1024  # largest non-range body (index listings) we accept
_MAX_REDIRECTS = 5
_LOCAL_SLACK = 1024  # bytes beyond the central directory's extra-field size a local header may add
_CHUNK = 256 * 1024

USER_AGENT = "abiguard"


class RemoteError(Exception):
    """A remote read failed or returned data we cannot trust; the message is one line, credentials redacted."""


class MemberTooLarge(Exception):
    """A member is bigger than the in-memory bound; the caller reports it as unknown instead of reading it."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"{name}: {size:,} bytes inflated, more than the {limit:,}-byte limit for remote reads")
        self.size = size
        self.limit = limit


def redact(url: str) -> str:
    """`url` without its password (and user name): safe to print or log."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes
    url: str  # the final URL after redirects (may carry credentials: redact before printing)


@dataclass
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    auth: str | None  # value of the Authorization header

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@dataclass
class Counters:
    """What a read cost: body bytes received (after transfer decoding) and HTTP requests sent."""

    bytes_read: int = 0
    requests: int = 0


class HttpClient:
    """A small keep-alive HTTP/1.1 client with retries; not thread-safe (one per thread)."""

    def __init__(
        self,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        cafile: str | None = None,
        total_timeout: float = 600.0,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.total_timeout = total_timeout
        self.counters = Counters()
        self._cafile = cafile
        self._ssl: ssl.SSLContext | None = None
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        # Hosts that refused every attempt or have no address: asked again, they fail at once (a lockfile of
        # 100 entries on a dead index would wait out the retries 100 times).
        self._unreachable: dict[tuple[str, str, int], str] = {}
        self._proxies = urllib.request.getproxies()
        self._netrc: netrc.netrc | bool | None = False  # False: not loaded yet

    # -- public -----------------------------------------------------------------------------------

    def get(self, url: str, headers: Mapping[str, str] | None = None, max_body: int = _MAX_BODY) -> Response:
        """GET with redirects and retries; returns 2xx and 404 responses, raises RemoteError otherwise."""
        resp = self._request(url, dict(headers or {}), max_body, expect_range=None)
        if resp.status == 404 or 200 <= resp.status < 300:
            return resp
        raise RemoteError(f"HTTP {resp.status} {_reason(resp.status)} from {redact(url)}")

    def get_range(self, url: str, start: int, length: int, total: int | None = None) -> tuple[bytes, int]:
        """Bytes [start, start+length) clipped to the file's end, and the file's total size.

        `total`, when known (from the index listing), must agree with the server's Content-Range.
        """
        if length <= 0:
            return b"", total or 0
        spec = f"bytes={start}-{start + length - 1}"
        resp = self._request(url, {"Range": spec}, length, expect_range=(start, start + length - 1))
        got_start, got_end, got_total = _content_range(resp, url)
        expected_end = min(start + length, got_total) - 1
        if got_start != start or got_end != expected_end:
            raise RemoteError(
                f"server sent bytes {got_start}-{got_end} for a request of bytes {start}-{expected_end}"
                f" of {redact(url)}"
            )
        _check_total(got_total, total, url)
        return resp.body, got_total

    def get_suffix(self, url: str, length: int, total: int | None = None) -> tuple[bytes, int, int]:
        """The last `length` bytes (fewer for a smaller file): (data, offset of data, total size)."""
        resp = self._request(url, {"Range": f"bytes=-{length}"}, length, expect_range=(-length, -1))
        got_start, got_end, got_total = _content_range(resp, url)
        if got_end != got_total - 1 or got_end - got_start + 1 != min(length, got_total):
            raise RemoteError(
                f"server sent bytes {got_start}-{got_end}/{got_total} for the last {length} bytes of"
                f" {redact(url)}"
            )
        _check_total(got_total, total, url)
        return resp.body, got_start, got_total

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one logical request: redirects and retries ---------------------------------------------

    def _request(
        self, url: str, headers: dict[str, str], max_body: int, expect_range: tuple[int, int] | None
    ) -> Response:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._with_retries(current, headers, max_body, expect_range)
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                if not location:
                    raise RemoteError(f"HTTP {resp.status} without a Location from {redact(current)}")
                current = _follow(current, location)
                continue
            resp.url = current
            return resp
        raise RemoteError(f"more than {_MAX_REDIRECTS} redirects from {redact(url)}")

    def _with_retries(
        self, url: str, headers: dict[str, str], max_body: int, expect_range: tuple[int, int] | None
    ) -> Response:
        host = self._target(url).key
        if host in self._unreachable:
            raise RemoteError(f"{self._unreachable[host]} from {redact(url)} (not retried: the host could not be "
                              "reached earlier in this run)")
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                resp = self._once(url, headers, max_body, expect_range)
            except _Transient as exc:
                last = str(exc)
                if exc.unreachable and attempt == self.retries:
                    self._unreachable[host] = last
                continue
            if resp.status == 429 or resp.status >= 500:
                last = f"HTTP {resp.status} {_reason(resp.status)}"
                delay = max(delay, _retry_after(resp.headers))
                continue
            return resp
        raise RemoteError(f"{last} from {redact(url)} (after {self.retries + 1} attempts)")

    # -- one HTTP exchange ------------------------------------------------------------------------

    def _once(
        self, url: str, headers: dict[str, str], max_body: int, expect_range: tuple[int, int] | None
    ) -> Response:
        target = self._target(url)
        conn = self._connection(target)
        send = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity" if expect_range else "gzip", **headers}
        if target.auth:
            send["Authorization"] = target.auth
        deadline = time.monotonic() + self.total_timeout
        self.counters.requests += 1
        try:
            conn.request("GET", target.path, headers=send)
            raw = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(target)
            raise _Transient(_describe(exc), _cannot_connect(exc)) from None
        if expect_range is not None and raw.status == 200:
            self._drop(target)  # do not download the whole file by accident
            raise RemoteError(f"server ignored the Range request (answered 200 with the whole file) for"
                              f" {redact(url)}; it does not support partial reads")
        if raw.status >= 300:  # redirects and errors: their bodies are of no use; start afresh
            self._drop(target)
            return Response(raw.status, raw.msg, b"", url)
        body = self._read_body(raw, target, max_body, deadline, url)
        if raw.will_close:
            self._drop(target)
        if raw.getheader("Content-Encoding", "identity").lower() == "gzip":
            if expect_range is not None:
                raise RemoteError(f"server compressed a range response from {redact(url)}")
            body = _gunzip(body, max_body, url)
        return Response(raw.status, raw.msg, body, url)

    def _read_body(
        self, raw: http.client.HTTPResponse, target: _Target, limit: int, deadline: float, url: str
    ) -> bytes:
        declared = raw.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self._drop(target)
            raise RemoteError(f"response of {int(declared):,} bytes from {redact(url)} is larger than the"
                              f" {limit:,} bytes asked for")
        parts: list[bytes] = []
        got = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    self._drop(target)
                    raise _Transient(f"timed out after {self.total_timeout:.0f} s reading the body")
                chunk = raw.read(min(_CHUNK, limit + 1 - got))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
                self.counters.bytes_read += len(chunk)
                if got > limit:
                    self._drop(target)
                    raise RemoteError(f"response from {redact(url)} is longer than the {limit:,} bytes"
                                      " asked for")
        except http.client.IncompleteRead as exc:
            self._drop(target)
            raise _Transient(f"truncated body ({got + len(exc.partial):,} of {declared} bytes)") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(target)
            raise _Transient(_describe(exc)) from None
        body = b"".join(parts)
        if declared is not None and declared.isdigit() and len(body) != int(declared):
            self._drop(target)
            raise _Transient(f"truncated body ({len(body):,} of {int(declared):,} bytes)")
        return body

    # -- connections ------------------------------------------------------------------------------

    def _target(self, url: str) -> _Target:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise RemoteError(f"not a valid URL: {redact(url)}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"unsupported URL (only http and https can be read remotely): {redact(url)}")
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password else ""
        if user is None:
            user, password = self._netrc_login(host)
        auth = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            auth = f"Basic {token}"
        return _Target(parts.scheme, host, port, path, auth)

    def _netrc_login(self, host: str) -> tuple[str | None, str]:
        if self._netrc is False:
            try:
                self._netrc = netrc.netrc()
            except (OSError, netrc.NetrcParseError):
                self._netrc = None
        if not isinstance(self._netrc, netrc.netrc):
            return None, ""
        found = self._netrc.authenticators(host)
        if not found:
            return None, ""
        return found[0], found[2] or ""

    def _connection(self, target: _Target) -> http.client.HTTPConnection:
        key = target.key
        conn = self._conns.get(key)
        if conn is not None:
            return conn
        proxy = self._proxy_for(target)
        if target.scheme == "https":
            context = self._ssl_context()
            if proxy:
                conn = http.client.HTTPSConnection(proxy[0], proxy[1], timeout=self.timeout, context=context)
                conn.set_tunnel(target.host, target.port)
            else:
                conn = http.client.HTTPSConnection(target.host, target.port, timeout=self.timeout,
                                                   context=context)
        elif proxy:
            conn = _ProxiedHTTPConnection(proxy[0], proxy[1], timeout=self.timeout)
            conn.origin = f"http://{target.host}:{target.port}"
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=self.timeout)
        self._conns[key] = conn
        return conn

    def _proxy_for(self, target: _Target) -> tuple[str, int] | None:
        proxy = self._proxies.get(target.scheme)
        if not proxy or urllib.request.proxy_bypass(target.host):
            return None
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not parts.hostname:
            return None
        return parts.hostname, parts.port or 8080

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            cafile = self._cafile if self._cafile and os.path.isfile(self._cafile) else None
            self._ssl = ssl.create_default_context(cafile=cafile)
        return self._ssl

    def _drop(self, target: _Target) -> None:
        conn = self._conns.pop(target.key, None)
        if conn is not None:
            conn.close()


class _ProxiedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP through a proxy: the request line carries the absolute URL."""

    origin = ""

    def putrequest(self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False) -> None:
        super().putrequest(method, self.origin + url, skip_host, skip_accept_encoding)


class _Transient(Exception):
    """A failure worth retrying (connection reset, timeout, short body); `unreachable`: no connection could be
    made at all (refused, no such host, no route)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _cannot_connect(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retry_after(headers: Message) -> float:
    value = headers.get("Retry-After", "")
    return min(float(value), 10.0) if value.strip().isdigit() else 0.0


def _follow(current: str, location: str) -> str:
    """The redirect target; credentials are kept only when the host stays the same."""
    new = urllib.parse.urljoin(current, location)
    old_parts, new_parts = urllib.parse.urlsplit(current), urllib.parse.urlsplit(new)
    if old_parts.username and not new_parts.username and old_parts.hostname == new_parts.hostname:
        new = urllib.parse.urlunsplit(new_parts._replace(netloc=old_parts.netloc))
    return new


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")


def _content_range(resp: Response, url: str) -> tuple[int, int, int]:
    if resp.status == 404:
        raise RemoteError(f"HTTP 404 Not Found from {redact(url)}")
    if resp.status != 206:
        raise RemoteError(f"HTTP {resp.status} {_reason(resp.status)} instead of 206 Partial Content for a"
                          f" range of {redact(url)}")
    header = resp.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.match(header)
    if not match:
        raise RemoteError(f"unreadable Content-Range {header!r} from {redact(url)}")
    start, end, total = (int(g) for g in match.groups())
    if end < start or end >= total:
        raise RemoteError(f"inconsistent Content-Range {header!r} from {redact(url)}")
    if len(resp.body) != end - start + 1:
        raise RemoteError(
            f"server sent {len(resp.body):,} bytes for a Content-Range of {end - start + 1:,} from {redact(url)}"
        )
    return start, end, total


def _check_total(got: int, expected: int | None, url: str) -> None:
    if expected is not None and got != expected:
        raise RemoteError(f"{redact(url)} is {got:,} bytes long but the index lists {expected:,}")


def _gunzip(body: bytes, limit: int, url: str) -> bytes:
    try:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, limit + 1)
    except zlib.error as exc:
        raise RemoteError(f"bad gzip body from {redact(url)}: {exc}") from None
    if len(out) > limit:
        raise RemoteError(f"response from {redact(url)} inflates beyond {limit:,} bytes")
    return out


# --- ZIP over HTTP ---------------------------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_STORED, _DEFLATED = 0, 8


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory record: enough to find, fetch and check a member."""

    name: str
    header_offset: int
    compressed_size: int
    file_size: int
    crc: int
    method: int
    flags: int


@dataclass
class MemberReader:
    """An inflated member: the `Reader` that `abiguard.binary.inspect_reader` takes.

    `bytes_read` is what fetching it cost on the wire (its compressed span), not its inflated size.
    """

    data: bytes
    bytes_read: int
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class RemoteZip:
    """The central directory of a remote ZIP, read with range requests, and its members on demand."""

    def __init__(
        self,
        url: str,
        client: HttpClient,
        size: int | None = None,
        max_member: int = DEFAULT_MAX_MEMBER,
        tail: int = DEFAULT_TAIL,
    ) -> None:
        self.url = url
        self.client = client
        self.size = size
        self.max_member = max_member
        self.tail = tail
        self.counters = Counters()
        self._entries: list[ZipEntry] | None = None
        self._ends: dict[int, int] = {}  # header offset -> where the next record starts
        self._tail: tuple[int, bytes] = (0, b"")  # the suffix read first; members inside it cost nothing

    # -- central directory ------------------------------------------------------------------------

    def entries(self) -> list[ZipEntry]:
        if self._entries is None:
            self._entries = self._load_directory()
        return self._entries

    def _load_directory(self) -> list[ZipEntry]:
        data, start, total = self._suffix(self.tail)
        self.size = total
        self._tail = (start, data)
        pos = data.rfind(_EOCD)
        while pos >= 0 and (pos + 22 > len(data) or pos + 22 + struct.unpack_from("<H", data, pos + 20)[0]
                            != len(data)):
            pos = data.rfind(_EOCD, 0, pos)  # that match was inside the archive comment
        if pos < 0:
            raise RemoteError(f"{redact(self.url)} is not a ZIP file (no end-of-central-directory record)")
        count, cd_size, cd_offset = self._directory_bounds(data, start, pos)
        if cd_offset + cd_size > total:
            raise RemoteError(f"{redact(self.url)}: central directory points beyond the end of the file")
        if cd_offset >= start:
            directory = data[cd_offset - start : cd_offset - start + cd_size]
        else:  # the tail did not hold all of it: fetch what is missing, one request
            missing = self._range(cd_offset, start - cd_offset)
            directory = (missing + data)[: cd_size]
        entries = _parse_directory(directory, count, self.url)
        self._index_ends(entries, cd_offset)
        return entries

    def _directory_bounds(self, data: bytes, start: int, pos: int) -> tuple[int, int, int]:
        _, _, _, count, cd_size, cd_offset, _ = struct.unpack_from("<HHHHIIH", data, pos + 4)
        if count != 0xFFFF and cd_size != 0xFFFFFFFF and cd_offset != 0xFFFFFFFF:
            return count, cd_size, cd_offset
        loc = pos - 20
        if loc < 0 or data[loc : loc + 4] != _EOCD64_LOCATOR:
            raise RemoteError(f"{redact(self.url)}: ZIP64 archive without its locator record")
        (eocd64_offset,) = struct.unpack_from("<Q", data, loc + 8)
        record = (data[eocd64_offset - start : eocd64_offset - start + 56] if eocd64_offset >= start
                  else self._range(eocd64_offset, 56))
        if len(record) < 56 or record[:4] != _EOCD64:
            raise RemoteError(f"{redact(self.url)}: unreadable ZIP64 end-of-central-directory record")
        count64, cd_size64, cd_offset64 = struct.unpack_from("<QQQ", record, 32)
        return count64, cd_size64, cd_offset64

    def _index_ends(self, entries: list[ZipEntry], cd_offset: int) -> None:
        offsets = sorted({e.header_offset for e in entries})
        for here, following in zip(offsets, [*offsets[1:], cd_offset], strict=True):
            self._ends[here] = following

    # -- members ----------------------------------------------------------------------------------

    def open_member(self, entry: ZipEntry) -> MemberReader:
        """Fetch, inflate and check one member; MemberTooLarge if it is over the memory bound."""
        if entry.file_size > self.max_member or entry.compressed_size > self.max_member:
            raise MemberTooLarge(entry.name, max(entry.file_size, entry.compressed_size), self.max_member)
        if entry.method not in (_STORED, _DEFLATED):
            raise RemoteError(f"{entry.name} in {redact(self.url)} uses ZIP compression method"
                              f" {entry.method}; only stored and deflate are supported")
        before = self.counters.bytes_read
        compressed = self._member_bytes(entry)
        data = _inflate(entry, compressed, self.url)
        return MemberReader(data, self.counters.bytes_read - before)

    def _member_bytes(self, entry: ZipEntry) -> bytes:
        name_len = len(entry.name.encode("utf-8" if entry.flags & 0x800 else "cp437", "replace"))
        end = self._ends.get(entry.header_offset, entry.header_offset)
        guess = 30 + name_len + _LOCAL_SLACK + entry.compressed_size
        span = min(max(end - entry.header_offset, 30), guess)
        chunk = self._range(entry.header_offset, span)
        if len(chunk) < 30 or chunk[:4] != _LOCAL:
            raise RemoteError(f"{entry.name} in {redact(self.url)}: no local file header at its offset")
        local_name_len, extra_len = struct.unpack_from("<HH", chunk, 26)
        begin = 30 + local_name_len + extra_len
        need = begin + entry.compressed_size
        if need > len(chunk):
            chunk += self._range(entry.header_offset + len(chunk), need - len(chunk))
        if len(chunk) < need:
            raise RemoteError(f"{entry.name} in {redact(self.url)}: member runs past the end of the file")
        return chunk[begin:need]

    def _range(self, start: int, length: int) -> bytes:
        tail_start, tail = self._tail
        if tail and start >= tail_start and start + length <= tail_start + len(tail):
            return tail[start - tail_start : start - tail_start + length]  # already fetched with the tail
        if tail and start < tail_start < start + length:  # its end came with the tail: fetch only the rest
            return self._range(start, tail_start - start) + tail[: start + length - tail_start]
        before = self.client.counters.bytes_read, self.client.counters.requests
        try:
            data, total = self.client.get_range(self.url, start, length, self.size)
        finally:
            self._count(before)
        if len(data) != min(length, total - start):
            raise RemoteError(f"short read from {redact(self.url)}")
        return data

    def _suffix(self, length: int) -> tuple[bytes, int, int]:
        before = self.client.counters.bytes_read, self.client.counters.requests
        try:
            return self.client.get_suffix(self.url, length, self.size)
        finally:
            self._count(before)

    def _count(self, before: tuple[int, int]) -> None:
        self.counters.bytes_read += self.client.counters.bytes_read - before[0]
        self.counters.requests += self.client.counters.requests - before[1]


def _parse_directory(directory: bytes, count: int, url: str) -> list[ZipEntry]:
    entries: list[ZipEntry] = []
    pos = 0
    for _ in range(count):
        if directory[pos : pos + 4] != _CENTRAL or pos + 46 > len(directory):
            raise RemoteError(f"{redact(url)}: damaged central directory (entry {len(entries) + 1} of {count})")
        (flags, method, crc, csize, usize, name_len, extra_len, comment_len, offset) = (
            struct.unpack_from("<HH4xIIIHHH8xI", directory, pos + 8)
        )
        name_bytes = directory[pos + 46 : pos + 46 + name_len]
        extra = directory[pos + 46 + name_len : pos + 46 + name_len + extra_len]
        usize, csize, offset = _zip64_fields(extra, usize, csize, offset)
        name = name_bytes.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        entries.append(ZipEntry(name, offset, csize, usize, crc, method, flags))
        pos += 46 + name_len + extra_len + comment_len
    return entries


def _zip64_fields(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace saturated 32-bit fields by their values from the ZIP64 extra field (id 0x0001)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            values = extra[pos + 4 : pos + 4 + size]
            index = 0
            fields = [usize, csize, offset]
            for i, value in enumerate(fields):
                if value == 0xFFFFFFFF and index + 8 <= len(values):
                    (fields[i],) = struct.unpack_from("<Q", values, index)
                    index += 8
            return fields[0], fields[1], fields[2]
        pos += 4 + size
    return usize, csize, offset


def _inflate(entry: ZipEntry, compressed: bytes, url: str) -> bytes:
    """The member's bytes; never more than its declared size + 1 are produced, whatever the input."""
    where = f"{entry.name} in {redact(url)}"
    if entry.method == _STORED:
        data = compressed
    else:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(compressed, entry.file_size + 1)
        except zlib.error as exc:
            raise RemoteError(f"{where}: corrupt deflate data ({exc})") from None
        if len(data) > entry.file_size:
            raise RemoteError(f"{where}: inflates to more than its declared {entry.file_size:,} bytes")
        if not inflater.eof:
            raise RemoteError(f"{where}: deflate stream ends early")
    if len(data) != entry.file_size:
        raise RemoteError(f"{where}: {len(data):,} bytes instead of the declared {entry.file_size:,}")
    if zlib.crc32(data) != entry.crc:
        raise RemoteError(f"{where}: CRC-32 mismatch; the data is damaged")
    return data


__all__ = [
    "DEFAULT_MAX_MEMBER",
    "HttpClient",
    "MemberReader",
    "MemberTooLarge",
    "RemoteError",
    "RemoteZip",
    "ZipEntry",
    "redact",
]

