"""Facts for local binaries: from the cache by file identity, else by inspecting them, in worker processes
when there are many, while the caller goes on finding more files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from abiguard import stamps
from abiguard.cache import Cache, FileKey
from abiguard.model import BinaryFacts

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

Progress = Callable[[int, int], None]

POOL_MIN_FILES = 32  # below these, starting workers costs more than it saves
POOL_MIN_BYTES = 64 << 20
_BATCHES_PER_WORKER = 4


class Scanner:
    """Add paths in batches (`add`), then collect every answer (`finish`).

    A batch's cache misses start at once: in worker processes on a multi-core Linux machine when the batch
    is large (searching bytes holds the GIL, so threads would not help, and only fork starts workers faster
    than they pay back), else right away in this process. Files that vanished are left out.
    """

    def __init__(self, numpy_own: set[str], *, use_cache: bool = True, progress: Progress | None = None) -> None:
        self._store = Cache.open(enabled=use_cache)
        self._numpy_own = numpy_own
        self._progress = progress
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[list[str], Iterator[BinaryFacts]]] = []
        self._keys: dict[str, FileKey] = {}
        self._fresh: dict[FileKey, BinaryFacts] = {}
        self._unsettled: set[str] = set()  # changed moments ago: judged, but not remembered (stamps.settled)
        self.facts: dict[str, BinaryFacts] = {}

    def add(self, paths: list[str]) -> None:
        keys = {}
        for p in paths:
            try:
                st = stamps.stat(p)
            except OSError:
                continue  # listed in a RECORD but gone: nothing to judge
            keys[p] = FileKey.from_stat(p, st)
            if not stamps.settled(st):
                self._unsettled.add(p)
        self._keys.update(keys)
        hits = self._store.lookup_files(list(keys.values()))
        misses = []
        for p, key in keys.items():
            if key in hits:
                self.facts[p] = hits[key]
            else:
                misses.append(p)
        self._report()
        if self._wants_pool(misses):
            pool = self._start_pool()
            # A task per file costs more than reading most files: deal the files, largest first, into a few
            # batches per worker, so that every batch gets its share of the big ones.
            misses.sort(key=lambda p: -keys[p].size)
            count = min(len(misses), _BATCHES_PER_WORKER * (os.cpu_count() or 1))
            batches = [misses[i::count] for i in range(count)]
            jobs = [[(p, p in self._numpy_own) for p in batch] for batch in batches]
            self._pending.append(([p for batch in batches for p in batch],
                                  (f for done in pool.map(_inspect_batch, jobs) for f in done)))
        else:
            for p in misses:
                self._record(p, _inspect_job((p, p in self._numpy_own)))

    def finish(self) -> dict[str, BinaryFacts]:
        done = False
        try:
            for paths, results in self._pending:
                for path, facts in zip(paths, results, strict=True):
                    self._record(path, facts)
            done = True
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=not done)  # on Ctrl-C: let the running files finish, no more
        if self._fresh:
            self._store.store_files(self._fresh)
        self._store.close()
        return self.facts

    def _record(self, path: str, facts: BinaryFacts) -> None:
        self.facts[path] = facts
        if path not in self._unsettled:
            self._fresh[self._keys[path]] = facts
        self._report()

    def _report(self) -> None:
        if self._progress is not None and self.facts:
            self._progress(len(self.facts), len(self._keys))

    def _wants_pool(self, misses: list[str]) -> bool:
        if self._pool is not None:
            return bool(misses)
        if len(misses) < POOL_MIN_FILES or sum(self._keys[p].size for p in misses) < POOL_MIN_BYTES:
            return False
        import threading

        # fork copies only the calling thread: with others running (a library caller's), a lock one of them
        # holds would never be released in the workers.
        return (os.cpu_count() or 1) > 1 and sys.platform.startswith("linux") and threading.active_count() == 1

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._store.close()  # no database connection may cross a fork; the next lookup reconnects
            fork = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(min(os.cpu_count() or 1, 8), mp_context=fork,
                                             initializer=_leave_interrupts_to_the_parent)
        return self._pool


def inspect_all(
    paths: list[str], numpy_own: set[str], *, use_cache: bool = True, progress: Progress | None = None
) -> dict[str, BinaryFacts]:
    """Facts for the local files that exist, in one batch."""
    scanner = Scanner(numpy_own, use_cache=use_cache, progress=progress)
    scanner.add(paths)
    return scanner.finish()


def _leave_interrupts_to_the_parent() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the scan, workers must not print tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _inspect_batch(jobs: list[tuple[str, bool]]) -> list[BinaryFacts]:
    return [_inspect_job(job) for job in jobs]


def _inspect_job(job: tuple[str, bool]) -> BinaryFacts:
    from abiguard.binary import inspect_path

    return inspect_path(job[0], numpy_itself=job[1])
