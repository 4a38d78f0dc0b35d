"""A small SQLite cache of binary facts, so a second scan costs little more than listing the files.

Three kinds of rows:
- local binaries, keyed by file identity (path, size, mtime_ns, inode, ctime_ns): a rewritten file gets a new
  key, even one rewritten in place with its size and mtime restored (`cp -p`), and so does a chmod;
- members of remote wheels, keyed by the wheel's sha256 and the member's name: a wheel never changes;
- the list of a remote wheel's shared objects, by sha256, so that a fully cached wheel costs no request;
- a remote wheel's declared requirements (Requires-Dist), by sha256.

Design choices, briefly:
- Opening is lazy: `Cache.open()` touches nothing; the first lookup connects. A command that finds
  nothing to look up pays nothing.
- Lookups are batched (`lookup_files` takes many keys, one query per 500 paths).
- Several processes may share the file: WAL journal, a busy timeout, and a few retries on
  "database is locked".
- The cache is an optimisation, never a reason to fail: a corrupt file is moved aside and recreated, any
  other database error disables the cache for the rest of the run; both leave a line in `warnings`.
- Rows carry no version; the database records one generation (schema number and abiguard version) and
  is emptied when it differs, so a new release never reads facts an older rule set produced.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from abiguard import __version__
from abiguard.model import BinaryFacts
from abiguard.paths import cache_dir

# 2: files keyed by ctime too, in `files2` (an older abiguard sharing the file meets no column it does not know);
# declared requirements of wheels
SCHEMA_VERSION = 2
_CHUNK = 500  # keys per query; well under SQLite's bound-parameter limit
_LOCK_RETRIES = 5
_BUSY_TIMEOUT_S = 5.0

T = TypeVar("T")


class FileKey(NamedTuple):
    """Identity of a local file: any write or chmod changes its ctime, which no user can set back (mtime can
    be: `cp -p`, `touch -r`). A tuple: a cached check makes and compares thousands of them."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int = 0

    @staticmethod
    def from_stat(path: str | os.PathLike[str], st: os.stat_result) -> FileKey:
        return FileKey(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    @staticmethod
    def from_path(path: str | os.PathLike[str]) -> FileKey:
        return FileKey.from_stat(path, os.stat(path))


@dataclass(frozen=True)
class WheelListing:
    """A remote wheel's size and its shared objects as (name, inflated size, compressed size)."""

    size: int
    members: tuple[tuple[str, int, int], ...]


def default_path() -> str:
    """`cache.sqlite3` in abiguard's cache directory (see `paths.cache_dir`)."""
    return os.path.join(cache_dir(), "cache.sqlite3")


def _generation() -> str:
    """Cached facts are only as good as the code that produced them: key them on the inspection source too,
    so an upgrade, or an edit in a source checkout, invalidates them (reading ~40 KB costs well under 1 ms;
    a checksum detects an edit as well as a cryptographic hash, and needs no OpenSSL at start-up)."""
    checksum = 0
    folder = os.path.join(os.path.dirname(__file__), "binary")
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
        with open(os.path.join(folder, name), "rb") as fh:
            checksum = zlib.crc32(fh.read(), checksum)
    return f"{SCHEMA_VERSION}/{__version__}/{checksum:08x}"


class Cache:
    """Facts of local binaries and remote wheel members. Use `Cache.open()`; `enabled=False` is a no-op."""

    def __init__(self, path: str | None, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled and path is not None
        self.warnings: list[str] = []
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, enabled: bool = True) -> Cache:
        """A cache at `path` (default: `default_path()`); connects on first use, never raises."""
        if not enabled:
            return cls(None, enabled=False)
        return cls(os.fspath(path) if path is not None else default_path())

    # -- public API -------------------------------------------------------------------------------

    def lookup_files(self, keys: Iterable[FileKey]) -> dict[FileKey, BinaryFacts]:
        """Cached facts for those keys that have a row; `bytes_read` is 0 and `size` the key's size."""
        wanted = [k for k in dict.fromkeys(keys) if _storable(k.path)]
        found: dict[FileKey, BinaryFacts] = {}
        if not wanted or not self._ready():
            self.misses += len(wanted)
            return found
        by_path: dict[str, list[FileKey]] = {}
        for key in wanted:
            by_path.setdefault(key.path, []).append(key)
        paths = list(by_path)
        # Most rows of an environment share a handful of texts ("none", as ELF): parse each text once.
        parsed: dict[str, BinaryFacts | None] = {}
        for chunk in _chunks(paths):
            sql = f"SELECT path, size, mtime_ns, inode, ctime_ns, facts FROM files2 WHERE path IN ({_marks(chunk)})"
            for path, size, mtime_ns, inode, ctime_ns, facts in self._select(sql, chunk):
                key = FileKey(path, size, mtime_ns, inode, ctime_ns)
                if key not in by_path.get(path, ()):
                    continue
                if facts not in parsed:
                    parsed[facts] = _parse(facts, 0)
                template = parsed[facts]
                if template is not None:
                    found[key] = template.with_size(key.size)
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def store_files(self, results: Mapping[FileKey, BinaryFacts]) -> None:
        """Remember facts for local files; older rows for the same paths are replaced."""
        if not results or not self._ready():
            return
        rows = [(k.path, k.size, k.mtime_ns, k.inode, k.ctime_ns, json.dumps(f.to_json()))
                for k, f in results.items() if _storable(k.path)]

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany("DELETE FROM files2 WHERE path = ?", [(r[0],) for r in rows])
                conn.executemany("INSERT OR REPLACE INTO files2 VALUES (?, ?, ?, ?, ?, ?)", rows)

        self._run(write)

    # The lead's `check` asked for these names; same functions.
    get_many = lookup_files
    put_many = store_files

    def lookup_members(self, sha256: str, members: Iterable[str]) -> dict[str, BinaryFacts]:
        """Cached facts for members of the wheel with this sha256."""
        names = list(dict.fromkeys(members))
        found: dict[str, BinaryFacts] = {}
        if not names or not sha256 or not self._ready():
            self.misses += len(names)
            return found
        for chunk in _chunks(names):
            sql = f"SELECT member, size, facts FROM members WHERE sha256 = ? AND member IN ({_marks(chunk)})"
            for member, size, facts in self._select(sql, [sha256.lower(), *chunk]):
                parsed = _parse(facts, size)
                if parsed is not None:
                    found[member] = parsed
        self.hits += len(found)
        self.misses += len(names) - len(found)
        return found

    def lookup_member(self, sha256: str, member: str) -> BinaryFacts | None:
        return self.lookup_members(sha256, [member]).get(member)

    def store_members(self, sha256: str, results: Mapping[str, BinaryFacts]) -> None:
        if not results or not sha256 or not self._ready():
            return
        rows = [(sha256.lower(), m, f.size, json.dumps(f.to_json())) for m, f in results.items()]

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)", rows)

        self._run(write)

    def store_member(self, sha256: str, member: str, facts: BinaryFacts) -> None:
        self.store_members(sha256, {member: facts})

    def lookup_wheel(self, sha256: str) -> WheelListing | None:
        """The shared objects of the wheel with this sha256, as stored by `store_wheel`."""
        if not sha256 or not self._ready():
            return None
        rows = self._select("SELECT size, members FROM wheels WHERE sha256 = ?", [sha256.lower()])
        if not rows:
            return None
        try:
            members = tuple((str(n), int(s), int(c)) for n, s, c in json.loads(rows[0][1]))
        except (ValueError, TypeError):
            return None
        return WheelListing(int(rows[0][0]), members)

    def store_wheel(self, sha256: str, listing: WheelListing) -> None:
        """Remember a wheel's shared objects, so a later run needs no request when their facts are cached."""
        if not sha256 or not self._ready():
            return
        row = (sha256.lower(), listing.size, json.dumps([list(m) for m in listing.members]))

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("INSERT OR REPLACE INTO wheels VALUES (?, ?, ?)", row)

        self._run(write)

    def lookup_requires(self, sha256: str) -> tuple[str, ...] | None:
        """The Requires-Dist of the wheel with this sha256, as stored by `store_requires`; None when not stored."""
        if not sha256 or not self._ready():
            return None
        rows = self._select("SELECT lines FROM requires WHERE sha256 = ?", [sha256.lower()])
        try:
            lines = json.loads(rows[0][0]) if rows else None
        except (ValueError, TypeError):
            return None
        return tuple(str(x) for x in lines) if isinstance(lines, list) else None

    def store_requires(self, sha256: str, lines: tuple[str, ...]) -> None:
        """Remember a wheel's declared requirements: a search for a compatible release reads them again for
        every release it looks at."""
        if not sha256 or not self._ready():
            return
        row = (sha256.lower(), json.dumps(list(lines)))

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("INSERT OR REPLACE INTO requires VALUES (?, ?)", row)

        self._run(write)

    def close(self) -> None:
        if self._conn is not None:
            with suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection management --------------------------------------------------------------------

    def _ready(self) -> bool:
        if not self.enabled:
            return False
        if self._conn is None:
            self._conn = self._connect()
        return self._conn is not None

    def _connect(self) -> sqlite3.Connection | None:
        assert self.path is not None
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            return self._with_lock_retries(lambda: self._setup(self.path))
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc) or not isinstance(exc, sqlite3.OperationalError):
                return self._recreate(exc)
            self._disable(f"cache disabled ({exc}): {self.path}")
        except OSError as exc:
            self._disable(f"cache disabled: cannot create {os.path.dirname(self.path)}: {exc.strerror or exc}")
        return None

    def _setup(self, path: str | None) -> sqlite3.Connection:
        assert path is not None
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None:
                raise sqlite3.DatabaseError("file is not a database")
            conn.execute("PRAGMA synchronous = NORMAL")
            if self._current(conn):
                return conn  # the common case: no write transaction just to open
            with conn:
                # Hold the write lock from reading the generation to writing it: two processes opening a new
                # cache at once would otherwise both see no generation, and the second would empty the first's rows.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                self._drop_other_generation(conn)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files2 (path TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER,"
                    " ctime_ns INTEGER, facts TEXT, PRIMARY KEY (path, size, mtime_ns, inode, ctime_ns)) WITHOUT ROWID"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS members (sha256 TEXT, member TEXT, size INTEGER, facts TEXT,"
                    " PRIMARY KEY (sha256, member)) WITHOUT ROWID"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS wheels (sha256 TEXT PRIMARY KEY, size INTEGER, members TEXT)"
                    " WITHOUT ROWID"
                )
                conn.execute("CREATE TABLE IF NOT EXISTS requires (sha256 TEXT PRIMARY KEY, lines TEXT) WITHOUT ROWID")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (_generation(),))
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _current(conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.OperationalError:
            return False  # no tables yet
        return row is not None and row[0] == _generation()

    @staticmethod
    def _drop_other_generation(conn: sqlite3.Connection) -> None:
        """Drop the tables when another schema or abiguard release wrote them: their rows, and maybe their
        columns, are not this one's."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None or row[0] != _generation():
            for table in ("files", "files2", "members", "wheels", "requires"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")

    def _recreate(self, exc: BaseException) -> sqlite3.Connection | None:
        assert self.path is not None
        aside = f"{self.path}.corrupt-{int(time.time())}-{os.getpid()}"
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
            conn = self._setup(self.path)
        except (OSError, sqlite3.Error) as again:
            self._disable(f"cache disabled: {self.path} is unreadable ({exc}), cannot replace it ({again})")
            return None
        self._warn(f"cache file was corrupt ({exc}); moved it to {os.path.basename(aside)} and started a new one")
        return conn

    def _disable(self, message: str) -> None:
        self._warn(message)
        self.enabled = False
        self.close()
        return None

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        sys.stderr.write(f"abiguard: warning: {message}\n")

    def _select(self, sql: str, args: list[str]) -> list[tuple[Any, ...]]:
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall())
        return rows or []

    def _run(self, action: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run one statement group; a failing cache is disabled, never raised to the caller."""
        conn = self._conn
        if conn is None:
            return None
        try:
            return self._with_lock_retries(lambda: action(conn))
        except sqlite3.Error as exc:
            self._disable(f"cache disabled after an error: {exc}")
            return None

    @staticmethod
    def _with_lock_retries(action: Callable[[], T]) -> T:
        delay = 0.05
        for attempt in range(_LOCK_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _storable(path: str) -> bool:
    """SQLite takes UTF-8 text only: a file name that is not (undecodable bytes, kept by Python as surrogates)
    is read every time instead of remembered."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def _parse(text: str, size: int) -> BinaryFacts | None:
    try:
        return BinaryFacts.from_json(json.loads(text), bytes_read=0, size=size)
    except (ValueError, KeyError, TypeError):
        return None  # a row we cannot read is a miss, not an error


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(items: list[T]) -> str:
    return ", ".join("?" * len(items))
