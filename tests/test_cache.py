"""The SQLite cache: round trips, batching, invalidation, concurrency and corruption recovery."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abiguard.cache import Cache, FileKey, default_path
from abiguard.model import BinaryFacts, BuiltFor, Evidence, Producer

FACTS = BinaryFacts(
    "elf", BuiltFor.NUMPY2, "1.20", Producer.CYTHON,
    (Evidence("R1", 10, "numpy._core._multiarray_umath"),), bytes_read=500, size=1000,
)


def key(path: str, size: int = 1000) -> FileKey:
    return FileKey(path, size, 123, 7)


def test_round_trip_files(tmp_path: Path) -> None:
    with Cache.open(tmp_path / "c.sqlite3") as cache:
        assert cache.lookup_files([key("/a")]) == {}
        cache.store_files({key("/a"): FACTS, key("/b", 5): BinaryFacts("elf", BuiltFor.NONE, size=5)})
    with Cache.open(tmp_path / "c.sqlite3") as cache:
        found = cache.lookup_files([key("/a"), key("/b", 5), key("/c")])
        assert set(found) == {key("/a"), key("/b", 5)}
        got = found[key("/a")]
        assert got.to_json() == FACTS.to_json()
        assert got.bytes_read == 0 and got.size == 1000  # a hit reads no binary bytes
        assert (cache.hits, cache.misses) == (2, 1)


def test_changed_identity_is_a_miss_and_replaces_old_row(tmp_path: Path) -> None:
    with Cache.open(tmp_path / "c.sqlite3") as cache:
        cache.store_files({key("/a"): FACTS})
        newer = FileKey("/a", 1000, 999, 7)
        assert cache.lookup_files([newer]) == {}
        cache.store_files({newer: FACTS})
        rows = sqlite3.connect(tmp_path / "c.sqlite3").execute("SELECT count(*) FROM files2").fetchone()
        assert rows == (1,)


def test_many_keys_in_batches(tmp_path: Path) -> None:
    keys = [key(f"/lib/{i}.so", i) for i in range(1, 2500)]
    with Cache.open(tmp_path / "c.sqlite3") as cache:
        cache.put_many({k: BinaryFacts("elf", BuiltFor.NONE, size=k.size) for k in keys})
        start = time.perf_counter()
        found = cache.get_many(keys)
        elapsed = time.perf_counter() - start
    assert len(found) == len(keys)
    assert elapsed < 1.0


def test_members_round_trip(tmp_path: Path) -> None:
    sha = "AB" * 32
    with Cache.open(tmp_path / "c.sqlite3") as cache:
        cache.store_member(sha, "pkg/x.so", FACTS)
        assert cache.lookup_member(sha.lower(), "pkg/x.so") is not None
        assert cache.lookup_members(sha, ["pkg/x.so", "pkg/y.so"]).keys() == {"pkg/x.so"}
        assert cache.lookup_member("", "pkg/x.so") is None


def test_disabled_cache_touches_nothing(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "c.sqlite3", enabled=False)
    cache.store_files({key("/a"): FACTS})
    assert cache.lookup_files([key("/a")]) == {}
    assert not (tmp_path / "c.sqlite3").exists()


def test_open_is_lazy(tmp_path: Path) -> None:
    Cache.open(tmp_path / "sub" / "c.sqlite3")
    assert not (tmp_path / "sub").exists()


def test_env_var_sets_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path / "here"))
    assert default_path() == str(tmp_path / "here" / "cache.sqlite3")
    with Cache.open() as cache:
        cache.store_files({key("/a"): FACTS})
    assert (tmp_path / "here" / "cache.sqlite3").exists()


def test_new_generation_empties_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with Cache.open(path) as cache:
        cache.store_files({key("/a"): FACTS})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '0/old' WHERE key = 'generation'")
    conn.close()
    with Cache.open(path) as cache:
        assert cache.lookup_files([key("/a")]) == {}


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 1000)
    with Cache.open(path) as cache:
        assert cache.lookup_files([key("/a")]) == {}
        cache.store_files({key("/a"): FACTS})
        assert cache.lookup_files([key("/a")]).keys() == {key("/a")}
        assert cache.warnings and "corrupt" in cache.warnings[0]
    assert any(p.name.startswith("c.sqlite3.corrupt-") for p in tmp_path.iterdir())


def test_unwritable_location_disables_with_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = Cache.open(blocker / "c.sqlite3")  # parent is a file: cannot create
    assert cache.lookup_files([key("/a")]) == {}
    cache.store_files({key("/a"): FACTS})
    assert cache.warnings and not cache.enabled


WRITER = """
import sys
from abiguard.cache import Cache, FileKey
from abiguard.model import BinaryFacts, BuiltFor
path, tag = sys.argv[1], sys.argv[2]
for round in range(40):
    with Cache.open(path) as cache:
        rows = {FileKey(f"/{tag}/{round}/{i}", i, 1, 1): BinaryFacts("elf", BuiltFor.NONE, size=i)
                for i in range(25)}
        cache.store_files(rows)
        assert len(cache.lookup_files(rows)) == 25, cache.warnings
        assert not cache.warnings, cache.warnings
"""


def test_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}"], env=env, stderr=subprocess.PIPE)
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM files2").fetchone() == (4 * 40 * 25,)


def test_a_cache_written_by_an_older_release_is_replaced_not_an_error(tmp_path: Path) -> None:
    """Schema 1 keyed files without ctime, in a 5-column table: a newer abiguard starts afresh beside it."""
    path = tmp_path / "c.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('generation', '1/0.1.0/00000000')")
    conn.execute("CREATE TABLE files (path TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER, facts TEXT,"
                 " PRIMARY KEY (path, size, mtime_ns, inode)) WITHOUT ROWID")
    conn.commit()
    conn.close()
    facts = BinaryFacts("elf", BuiltFor.NONE, size=1000)
    with Cache.open(path) as cache:
        assert cache.lookup_files([key("/a")]) == {}
        cache.store_files({key("/a"): facts})
        assert cache.lookup_files([key("/a")]) == {key("/a"): facts}
        assert cache.warnings == []
