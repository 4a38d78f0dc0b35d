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
Job = tuple[str, bool]  # a path, and whether it is numpy's own file

POOL_MIN_FILES = 32  # below these, starting workers costs more than it saves
POOL_MIN_BYTES = 64 << 20
LOOKUP_STEP = 256  # added paths are stat-ed and looked up in the cache this many at a time
_BATCHES_PER_WORKER = 4


class Scanner:
    """Add paths as they are found (`add`), then collect every answer (`finish`); used as a context manager
    so that an error between the two stops the workers.

    Paths are looked up in the cache a few hundred at a time. Cache misses wait until there are enough to
    pay for worker processes (on a multi-core Linux machine: searching bytes holds the GIL, so threads would
    not help, and only fork starts workers faster than they pay back); from then on they go to the workers
    as they come, so the workers read while the caller is still finding files. Without workers, `finish`
    inspects them in this process. Files that vanished are left out.
    """

    def __init__(self, *, use_cache: bool = True, progress: Progress | None = None) -> None:
        self._store = Cache.open(enabled=use_cache)
        self._progress = progress
        self._pool: ProcessPoolExecutor | None = None
        self._queue: list[Job] = []  # added, not yet looked up
        self._waiting: list[Job] = []  # cache misses not yet handed to a worker
        self._pending: list[tuple[list[str], Iterator[BinaryFacts]]] = []
        self._keys: dict[str, FileKey] = {}
        self._fresh: dict[FileKey, BinaryFacts] = {}
        self._unsettled: set[str] = set()  # judged but not remembered: changed moments ago (stamps.settled)
        self.facts: dict[str, BinaryFacts] = {}
        self.missing: list[str] = []  # added, but not on disk

    def add(self, paths: list[str], *, numpy_itself: bool = False) -> None:
        """`numpy_itself`: the paths are numpy's own files, judged by what they export (see binary.numpy)."""
        self._queue.extend((p, numpy_itself) for p in paths)
        if len(self._queue) >= LOOKUP_STEP:
            self._look_up()

    def finish(self) -> dict[str, BinaryFacts]:
        with self:
            self._look_up()
            self._report()
            for job in self._waiting:
                self._record(job[0], _inspect_job(job))
            for paths, results in self._pending:
                for path, facts in zip(paths, results, strict=True):
                    self._record(path, facts)
            if self._fresh:
                self._store.store_files(self._fresh)
        return self.facts

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the workers, also when the caller fails or is interrupted (Ctrl-C) before `finish`: the files
        being read are finished, the others not started, and nothing waits for them."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self._store.close()

    def _look_up(self) -> None:
        found: list[tuple[Job, FileKey]] = []
        for job in self._queue:
            try:
                st = stamps.stat(job[0])
            except OSError:
                self.missing.append(job[0])  # listed in a RECORD but gone: nothing to judge
                continue
            key = FileKey.from_stat(job[0], st)
            found.append((job, key))
            self._keys[job[0]] = key
            if not stamps.settled(st) or job[1]:
                # numpy's own files are judged by whose they are, not by their bytes: the same file is
                # another package's copy in an environment that shadows it; their headers cost little
                self._unsettled.add(job[0])
        self._queue = []
        hits = self._store.lookup_files([key for job, key in found if not job[1]])
        for job, key in found:
            if key in hits:
                self.facts[job[0]] = hits[key]
            else:
                self._waiting.append(job)
        if self._waiting and (self._pool is not None or self._wants_pool()):
            self._hand_out()

    def _hand_out(self) -> None:
        """Deal the waiting files, largest first, into a few batches per worker: a task per file costs more
        than reading most files, and every batch gets its share of the big ones."""
        pool = self._start_pool()
        jobs = sorted(self._waiting, key=lambda job: -self._keys[job[0]].size)
        self._waiting = []
        count = min(len(jobs), _BATCHES_PER_WORKER * (os.cpu_count() or 1))
        batches = [jobs[i::count] for i in range(count)]
        self._pending.append(([p for batch in batches for p, _ in batch],
                              (f for done in pool.map(_inspect_batch, batches) for f in done)))

    def _record(self, path: str, facts: BinaryFacts) -> None:
        self.facts[path] = facts
        if path not in self._unsettled and not facts.read_failed:  # a failed read may succeed next time
            self._fresh[self._keys[path]] = facts
        self._report()

    def _report(self) -> None:
        if self._progress is not None and self._keys:
            self._progress(len(self.facts), len(self._keys))

    def _wants_pool(self) -> bool:
        waiting = self._waiting
        if len(waiting) < POOL_MIN_FILES or sum(self._keys[p].size for p, _ in waiting) < POOL_MIN_BYTES:
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
    scanner = Scanner(use_cache=use_cache, progress=progress)
    scanner.add([p for p in paths if p not in numpy_own])
    scanner.add([p for p in paths if p in numpy_own], numpy_itself=True)
    return scanner.finish()


def _leave_interrupts_to_the_parent() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the scan, workers must not print tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _inspect_batch(jobs: list[Job]) -> list[BinaryFacts]:
    return [_inspect_job(job) for job in jobs]


def _inspect_job(job: Job) -> BinaryFacts:
    from abiguard.binary import inspect_path

    return inspect_path(job[0], numpy_itself=job[1])
