"""Apply a change to an environment so that it can always be undone.

`apply_changes` locks the environment, snapshots what the change may touch, runs the installer, calls the
caller's re-check, and restores the snapshot when anything fails; `rollback` restores the last snapshot on
demand, also after the abiguard that made it was killed mid-apply.

Design choices, briefly:
- A snapshot lives in `<state dir>/snapshots/<env hash>/<UTC stamp>/` (`paths.state_dir`:
  `$ABIGUARD_STATE_DIR`, else the user state directory): `manifest.json`, `freeze.txt`, `journal.json` and
  `files/`, a byte-for-byte copy (`shutil.copy2`: mode and mtime kept, fsynced) of the RECORD-listed files
  and `.dist-info` directories of the *touched* distributions only. Copying only what the change may touch keeps the
  cost proportional to the change (numpy + pandas: 2,500 files, 110 MB) and lets the restore work offline, with
  no index and no resolver. `uv pip sync --python PY freeze.txt` is the alternative for a whole environment,
  but it needs the index, and it cannot bring back a file that differs from its wheel.
- The restore works on files, never through the installer: it removes the distributions that are installed
  now and were touched or are new since the snapshot, then copies the snapshot back, so every `RECORD` and
  every file comes back byte-identical. A file about to be replaced is unlinked first: it may be a hard link
  into uv's cache, and writing through it would change the cache.
- Nothing outside the environment's prefix is removed or written: RECORD paths may legally point anywhere,
  so each is resolved (links included) and checked against the real prefix first.
- The journal (pending -> applied, or pending/applied -> restoring -> rolled-back | restore-failed) is
  written durably before the installer runs, so a rollback after a SIGKILL knows the change was interrupted.
  An interrupted install leaves files no RECORD lists yet (uv links files before it writes RECORD; pip keeps
  its uninstall stash as `~umpy` next to `numpy`), so undoing an unfinished change also sweeps unlisted
  files from directories only the touched distributions own, and new top-level entries no distribution
  owns. The rollback of a change that completed leaves such entries alone and reports them: the user may
  have put them there since.
- One abiguard changes an environment at a time: an exclusive lock (`flock` / `msvcrt.locking`) keyed by
  the real prefix. On POSIX the installer inherits the lock's descriptor, so if abiguard dies, the lock stays
  held until the orphaned installer exits and a rollback cannot race it.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from abiguard import paths
from abiguard.fix.resolver import find_uv, pip_command
from abiguard.model import TargetEnvironment, canonical_name
from abiguard.sources.index import installer_environ

SCHEMA = 1
DEFAULT_LOCK_TIMEOUT = 30.0  # seconds a second abiguard waits for the environment before giving up
KEEP_SNAPSHOTS = 3  # per environment; older finished snapshots are deleted
TAIL_LINES = 20

PENDING = "pending"
APPLIED = "applied"
ROLLED_BACK = "rolled-back"
RESTORE_FAILED = "restore-failed"
RESTORING = "restoring"  # a restore began; if abiguard dies now, the next rollback starts over

_PARTIAL = ".partial"


class ApplyError(Exception):
    """A failure the user can act on (no snapshot, environment locked or read-only, installer missing).

    The message is one line, ready to print."""


@dataclass(frozen=True)
class ApplyResult:
    ok: bool  # the change is installed and `after()` accepted it
    snapshot: Path | None
    message: str  # one line
    output_tail: str = ""  # last lines of the installer's output, credentials masked
    restored: bool = False  # the environment was put back as it was before
    returncode: int | None = None
    snapshot_seconds: float = 0.0
    install_seconds: float = 0.0
    restore_seconds: float = 0.0
    notes: tuple[str, ...] = ()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a change, after the environment was restored (or not): the message says which.

    `signum` tells the two apart, so that the command can exit as the signal asks (130 or 143)."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass(frozen=True)
class RollbackResult:
    ok: bool
    snapshot: Path | None
    message: str
    output_tail: str = ""  # rollback runs no installer; kept so both results read alike
    restored: bool = False  # False when there was nothing to do (already rolled back)
    restore_seconds: float = 0.0
    notes: tuple[str, ...] = ()


# -- where state lives -------------------------------------------------------------------------------


def resolve_state_dir(state_dir: Path | None = None) -> Path:
    """The explicit argument, else `$ABIGUARD_STATE_DIR`, else the platform's per-user state directory."""
    return Path(state_dir) if state_dir is not None else Path(paths.state_dir())


def env_key(env: TargetEnvironment) -> str:
    """Stable id of an environment: the same venv reached through a symlink gets the same snapshots and lock."""
    return hashlib.sha256(os.path.normcase(_real(env.prefix)).encode("utf-8")).hexdigest()[:16]


def snapshots_dir(env: TargetEnvironment, state_dir: Path | None = None) -> Path:
    return resolve_state_dir(state_dir) / "snapshots" / env_key(env)


def last_snapshot(env: TargetEnvironment, state_dir: Path | None = None) -> Path | None:
    """The newest complete snapshot of `env` (one whose installer was at least about to run)."""
    return _last_snapshot(snapshots_dir(env, state_dir))


def snapshot_state(snapshot: Path) -> str | None:
    """The journal state of a snapshot: pending, applied, rolled-back or restore-failed."""
    journal = _read_json(snapshot / "journal.json")
    return str(journal["state"]) if journal else None


# -- public entry points -----------------------------------------------------------------------------


def apply_changes(
    env: TargetEnvironment,
    install_args: list[str],
    *,
    touched: Iterable[str],
    installer: str,
    after: Callable[[], str | None] | None = None,
    state_dir: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    keep_snapshots: int = KEEP_SNAPSHOTS,
) -> ApplyResult:
    """Install `install_args` into `env`, restoring the touched distributions if the installer or `after` fails.

    `touched` names every distribution the change may install, upgrade, downgrade or remove (the resolver's
    change set). Distributions that appear without being named are removed again by a restore; one that is
    changed or removed without being named is not in the snapshot and cannot come back (the result names it
    and `restored` is False). `after` runs once the installer succeeded, with the lock still held; it
    returns None to accept the change or a one-line reason to undo it (an exception counts as a reason).
    User errors found before anything changes raise `ApplyError`; failures after that return `ok=False`.
    """
    args = [str(a) for a in install_args]
    if not args:
        raise ApplyError("nothing to install: no installer arguments were given")
    touched_keys = sorted({canonical_name(t) for t in touched})
    prefix = _real(env.prefix)
    sites = _site_dirs(env)
    command = _installer_command(env, installer, args, sites)
    snaps = _ensure_dir(snapshots_dir(env, state_dir))
    lock_path = _ensure_dir(resolve_state_dir(state_dir) / "locks") / f"{env_key(env)}.lock"

    with _sigterm_interrupts(), _EnvLock(lock_path, env.prefix, lock_timeout, purpose="apply") as lock:
        _refuse_if_interrupted(snaps, env)
        _prune_partial(snaps)
        dists = _scan(sites)
        _check_writable(env, prefix, sites, dists, set(touched_keys))

        started = time.monotonic()
        snap, manifest = _take_snapshot(env, prefix, sites, dists, touched_keys, installer, args, snaps)
        snapshot_seconds = time.monotonic() - started
        try:
            _journal(snap, PENDING, "installer about to run")
        except OSError as exc:
            shutil.rmtree(snap, ignore_errors=True)
            raise ApplyError(f"cannot write the journal in {snap}: {exc.strerror or exc}") from None

        def undo(reason: str, returncode: int | None, tail: str, install_seconds: float) -> ApplyResult:
            t0 = time.monotonic()
            try:
                _journal(snap, RESTORING, reason)
                outcome = _restore(env, snap, manifest, after_infos=None, sweep=True)
            except KeyboardInterrupt as exc:  # a second Ctrl-C: stop, and say the environment is half restored
                with contextlib.suppress(Exception, KeyboardInterrupt):  # RESTORING says as much if this fails
                    _journal(snap, RESTORE_FAILED, f"{reason}; the restore was interrupted")
                raise Interrupted(
                    f"{reason}; the restore was interrupted, so packages may be missing: run "
                    f"`abiguard rollback --python {env.executable}` to finish it", _signum(exc)) from None
            except Exception as exc:
                _journal(snap, RESTORE_FAILED, f"{reason}; restore failed: {exc}")
                return ApplyResult(
                    ok=False, snapshot=snap, restored=False, output_tail=tail, returncode=returncode,
                    message=f"{reason}; restoring the snapshot failed ({_one_line(str(exc))}): "
                    f"run `abiguard rollback --python {env.executable}` to retry",
                    snapshot_seconds=snapshot_seconds, install_seconds=install_seconds,
                    restore_seconds=time.monotonic() - t0,
                )
            _journal(snap, ROLLED_BACK, reason)
            restore_seconds = time.monotonic() - t0
            _prune(snaps, keep_snapshots)
            message = f"{reason}; the environment was restored from the snapshot"
            if outcome.missing:
                message += f", except {', '.join(outcome.missing)}: not in the touched set, reinstall it"
            return ApplyResult(
                ok=False, snapshot=snap, restored=not outcome.missing, output_tail=tail, returncode=returncode,
                message=message, snapshot_seconds=snapshot_seconds, install_seconds=install_seconds,
                restore_seconds=restore_seconds, notes=tuple(outcome.notes),
            )

        t_install = time.monotonic()
        try:
            proc = subprocess.run(  # from the indexes the change was judged by (see `installer_environ`)
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, encoding="utf-8", errors="replace", pass_fds=lock.inheritable_fds(),
                env=installer_environ(installer),
            )
        except OSError as exc:
            result = undo(f"cannot run {installer}: {exc.strerror or exc}", None, "", 0.0)
            raise ApplyError(result.message) from None
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (the installer is killed): undo, then stop
            undone = undo(f"{_stopped(exc)} while the installer ran", None, "", time.monotonic() - t_install)
            raise Interrupted(undone.message, _signum(exc)) from None
        except BaseException:
            undo("interrupted while the installer ran", None, "", time.monotonic() - t_install)
            raise
        install_seconds = time.monotonic() - t_install
        tail = _tail(proc.stdout)
        if proc.returncode != 0:
            reason = f"{installer} failed (exit {proc.returncode}): {_error_line(proc.stdout)}"
            return undo(reason, proc.returncode, tail, install_seconds)

        if after is not None:
            try:
                reason_after = after()
            except Exception as exc:
                reason_after = f"the re-check raised {type(exc).__name__}: {_one_line(str(exc))}"
            except KeyboardInterrupt as exc:
                undone = undo(f"{_stopped(exc)} during the re-check", proc.returncode, tail, install_seconds)
                raise Interrupted(undone.message, _signum(exc)) from None
            except BaseException:
                undo("interrupted during the re-check", proc.returncode, tail, install_seconds)
                raise
            if reason_after:
                return undo(f"the change was undone: {_one_line(reason_after)}", proc.returncode, tail,
                            install_seconds)

        after_infos = [_rel(d.path, prefix) for d in _scan(sites) if _inside(d.path, prefix)]
        _journal(snap, APPLIED, "installed", after_dist_infos=after_infos)
        _prune(snaps, keep_snapshots)
        return ApplyResult(
            ok=True, snapshot=snap, restored=False, output_tail=tail, returncode=proc.returncode,
            message=f"installed with {installer}; snapshot {snap.name} keeps the previous state "
            f"(undo with `abiguard rollback --python {env.executable}`)",
            snapshot_seconds=snapshot_seconds, install_seconds=install_seconds,
        )


def rollback(
    env: TargetEnvironment, state_dir: Path | None = None, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> RollbackResult:
    """Restore the environment from its last snapshot; a second call finds nothing to do."""
    root = resolve_state_dir(state_dir)
    snaps = snapshots_dir(env, state_dir)
    nothing = RollbackResult(ok=True, snapshot=None,
                             message=f"nothing to roll back: abiguard took no snapshot of {env.prefix} (under {root})")
    if not snaps.is_dir():
        return nothing
    lock_path = _ensure_dir(root / "locks") / f"{env_key(env)}.lock"
    with _sigterm_interrupts(), _EnvLock(lock_path, env.prefix, lock_timeout, purpose="rollback"):
        _prune_partial(snaps)
        snap = _last_snapshot(snaps)
        if snap is None:
            return nothing
        manifest = _read_json(snap / "manifest.json")
        journal = _read_json(snap / "journal.json")
        if manifest is None or journal is None or manifest.get("schema") != SCHEMA:
            raise ApplyError(f"snapshot {snap} is unreadable or from another abiguard version; cannot roll back")
        state = str(journal.get("state"))
        if state == ROLLED_BACK:
            return RollbackResult(
                ok=True, snapshot=snap, restored=False,
                message=f"nothing to do: snapshot {snap.name} was already restored ({journal.get('updated')})",
            )
        prefix = _real(env.prefix)
        if os.path.normcase(str(manifest.get("prefix_real"))) != os.path.normcase(prefix):
            raise ApplyError(f"snapshot {snap} belongs to {manifest.get('prefix')}, not to {env.prefix}")
        _refuse_other_python(env, snap, manifest)
        sites = _site_dirs(env)
        _check_writable(env, prefix, sites, _scan(sites), set(manifest["touched"]))
        after_infos = journal.get("after_dist_infos")  # present once the change had completed
        _verify_snapshot(snap, manifest)  # a damaged snapshot is refused before anything changes
        t0 = time.monotonic()
        try:
            _journal(snap, RESTORING, "rollback requested")
            outcome = _restore(env, snap, manifest, after_infos=after_infos, sweep=state != APPLIED)
        except KeyboardInterrupt as exc:  # the journal still says restoring: the next rollback starts over
            raise Interrupted(f"the rollback was {_stopped(exc)}, so packages may be missing: run "
                              f"`abiguard rollback --python {env.executable}` again", _signum(exc)) from None
        except Exception as exc:
            _journal(snap, RESTORE_FAILED, f"rollback failed: {exc}")
            raise ApplyError(f"rollback from {snap} failed: {_one_line(str(exc))}") from None
        seconds = time.monotonic() - t0
        _journal(snap, ROLLED_BACK, "rolled back on request")
        what = ", ".join(_describe(d, outcome) for d in manifest["dists"]) or "nothing"
        why = " (the change was interrupted)" if state == PENDING else ""
        message = f"restored {what} from snapshot {snap.name}{why}"
        if outcome.removed_dists:
            message += f"; removed {', '.join(outcome.removed_dists)}"
        if outcome.missing:
            message += f"; could not restore {', '.join(outcome.missing)}: not in the touched set, reinstall it"
        return RollbackResult(
            ok=not outcome.missing, snapshot=snap, restored=True, message=message, restore_seconds=seconds,
            notes=tuple(outcome.notes),
        )


# -- signals -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI timeout, a container stop) stops a change the way Ctrl-C does: the installer is killed and
    the environment restored, instead of abiguard dying while its installer goes on alone. Only the main
    thread can handle signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise Interrupted("", signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signum(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, Interrupted) else signal.SIGINT


def _stopped(exc: BaseException) -> str:
    return "terminated (SIGTERM)" if _signum(exc) == signal.SIGTERM else "interrupted"


# -- the installer -----------------------------------------------------------------------------------


def _installer_command(env: TargetEnvironment, installer: str, args: list[str], sites: list[str]) -> list[str]:
    if installer == "uv":
        uv = find_uv()
        if uv is None:
            raise ApplyError("uv not found: install it (`pip install uv`) or use --installer pip")
        return [uv, "pip", "install", "--python", env.executable, *args]
    if installer == "pip":
        pip = pip_command(env)
        if pip is None:
            raise ApplyError(f"pip is neither installed in {env.prefix} nor importable by abiguard: use --installer "
                             "uv, or install pip there first")
        return [*pip, "install", "--disable-pip-version-check", *args]
    raise ApplyError(f"unknown installer {installer!r}: use uv or pip")


# -- locking -----------------------------------------------------------------------------------------

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


class _EnvLock:
    """Exclusive lock on one environment; waits up to `timeout` seconds, then fails with who holds it."""

    def __init__(self, path: Path, prefix: str, timeout: float, purpose: str) -> None:
        self.path = path
        self.owner = path.with_suffix(".owner")
        self.prefix = prefix
        self.timeout = timeout
        self.purpose = purpose
        self.fd: int | None = None

    def __enter__(self) -> _EnvLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ApplyError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + max(self.timeout, 0.0)
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise ApplyError(
                    f"{self.prefix} is being changed by another abiguard{self._holder()}; "
                    f"gave up after waiting {self.timeout:g} s (try again when it has finished)"
                )
            time.sleep(0.05)
        self.fd = fd
        with contextlib.suppress(OSError):
            self.owner.write_text(
                json.dumps({"pid": os.getpid(), "since": _now(), "purpose": self.purpose}), encoding="utf-8"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            _unlock(self.fd)
            os.close(self.fd)
            self.fd = None

    def inheritable_fds(self) -> tuple[int, ...]:
        """On POSIX the installer inherits the lock, so it outlives a killed abiguard until the installer ends."""
        if sys.platform == "win32" or self.fd is None:
            return ()
        return (self.fd,)

    def _holder(self) -> str:
        data = _read_json(self.owner)
        if not data:
            return ""
        pid, since, purpose = data.get("pid"), data.get("since"), data.get("purpose", "apply")
        if isinstance(pid, int) and not _alive(pid):
            return f" ({purpose} by pid {pid}, since {since}; that process is gone, its installer is still running)"
        return f" ({purpose} by pid {pid}, since {since})"


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no cheap, reliable check; the message then just names the pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- reading the environment -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    key: str
    name: str
    version: str
    site: str  # real path of its site-packages directory
    path: str  # real path of its .dist-info directory


def _real(path: str) -> str:
    # No normcase: paths are also written back on restore, and Windows must get its original spelling.
    return os.path.realpath(path)


@functools.lru_cache(maxsize=65536)
def _real_dir(path: str) -> str:
    """`_real` for the parent directories of RECORD entries (thousands of files share a few hundred); the
    cache is cleared at the start of each snapshot and restore."""
    return _real(path)


def _inside(path: str, root: str) -> bool:
    path, root = os.path.normcase(path), os.path.normcase(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _rel(path: str, prefix: str) -> str:
    return os.path.relpath(path, prefix).replace(os.sep, "/")


def _site_dirs(env: TargetEnvironment) -> list[str]:
    out: list[str] = []
    for site in env.site_packages:
        real = _real(site)
        if real not in out and os.path.isdir(real):
            out.append(real)
    return out


def _scan(sites: list[str]) -> list[_Dist]:
    """Every `.dist-info` directory, duplicates and half-written ones included (a restore must see them all)."""
    out: list[_Dist] = []
    for site in sites:
        try:
            entries = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(site, entry)
            if not entry.endswith(".dist-info") or os.path.islink(path) or not os.path.isdir(path):
                continue
            name, version = _name_version(path, entry)
            out.append(_Dist(canonical_name(name), name, version, site, path))
    return out


def _name_version(info: str, entry: str) -> tuple[str, str]:
    name, _, version = entry[: -len(".dist-info")].rpartition("-")
    try:
        with open(os.path.join(info, "METADATA"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line in ("\n", "\r\n"):
                    break
                key, _, value = line.partition(":")
                if key == "Name":
                    name = value.strip()
                elif key == "Version":
                    version = value.strip()
    except OSError:
        pass
    return name or entry, version


def _record(info: str) -> list[str]:
    try:
        with open(os.path.join(info, "RECORD"), newline="", encoding="utf-8", errors="replace") as fh:
            return [row[0] for row in csv.reader(fh) if row and row[0]]
    except OSError:
        return []


def _resolve(site: str, entry: str, prefix: str) -> str | None:
    """Where a RECORD entry is on disk, if that is inside `prefix`; never follows a link out of it."""
    full = os.path.normpath(os.path.join(site, entry))
    parent = _real_dir(os.path.dirname(full))
    if not _inside(parent, prefix):
        return None
    return os.path.join(parent, os.path.basename(full))


def _is_file(path: str) -> bool:
    return os.path.islink(path) or os.path.isfile(path)


def _owned_paths(dist: _Dist, prefix: str) -> tuple[set[str], list[str]]:
    """Files of a distribution inside `prefix` (its RECORD and its whole dist-info), and entries outside."""
    paths: set[str] = set()
    outside: list[str] = []
    for entry in _record(dist.path):
        p = _resolve(dist.site, entry, prefix)
        if p is None:
            outside.append(entry)
        elif _is_file(p):
            paths.add(p)
    for root, dirs, names in os.walk(dist.path):
        paths.update(os.path.join(root, n) for n in names)
        paths.update(os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d)))
    return paths, outside


def _identity(path: str) -> list[int]:
    """What says a file is still the very one the snapshot copied: installers replace files (new inode, new
    mtime), they never edit them in place. ctime is left out: linking the file elsewhere changes it."""
    st = os.lstat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode]


def _top(path: str, site: str) -> str | None:
    if not _inside(path, site) or path == site:
        return None
    return os.path.relpath(path, site).split(os.sep)[0]


def _freeze_line(dist: _Dist) -> tuple[str, dict[str, Any] | None]:
    direct = _read_json(Path(dist.path) / "direct_url.json")
    if not direct or not isinstance(direct.get("url"), str):
        return f"{dist.name}=={dist.version}", None
    url = direct["url"]
    subdir = direct.get("subdirectory")
    suffix = f"#subdirectory={subdir}" if subdir else ""
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict):
        return f"{dist.name} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}{suffix}", direct
    dir_info = direct.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return f"-e {url}{suffix}", direct
    return f"{dist.name} @ {url}{suffix}", direct


def _check_writable(
    env: TargetEnvironment, prefix: str, sites: list[str], dists: list[_Dist], touched: set[str]
) -> None:
    candidates = [s for s in sites if _inside(s, prefix)]
    candidates += [d.path for d in dists if d.key in touched and _inside(d.path, prefix)]
    scripts = _real(os.path.dirname(env.executable))
    if _inside(scripts, prefix):
        candidates.append(scripts)
    if not candidates:
        raise ApplyError(f"no site-packages directory of {env.executable} lies inside {env.prefix}: "
                         "abiguard only changes files inside the environment")
    for path in candidates:
        if not os.access(path, os.W_OK):
            raise ApplyError(f"cannot write to {path}: run abiguard as the owner of the environment")


# -- snapshots ---------------------------------------------------------------------------------------


def _take_snapshot(
    env: TargetEnvironment,
    prefix: str,
    sites: list[str],
    dists: list[_Dist],
    touched: list[str],
    installer: str,
    args: list[str],
    snaps: Path,
) -> tuple[Path, dict[str, Any]]:
    """Copy what the change may touch into a new snapshot directory; nothing in the environment changes.

    The directory is written as `<stamp>.partial` and renamed when complete, so a crash here leaves nothing
    a rollback would use. Any failure (a full disk) is a clean refusal before the installer runs."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    partial = snaps / (stamp + _PARTIAL)
    try:
        _real_dir.cache_clear()
        partial.mkdir(parents=True)
        inside = [d for d in dists if _inside(d.path, prefix)]
        owned = {d.path: _owned_paths(d, prefix) for d in inside}
        copied, pairs = _files_to_copy([d for d in inside if d.key in touched], owned, prefix)
        owned_dirs = _owned_dirs(inside, owned, set(touched), prefix)
        unlisted, empty_dirs = _leftovers(owned_dirs, {f for d in copied for f in d["files"]}, prefix)
        freeze, installed = _installed(dists, prefix)
        manifest: dict[str, Any] = {
            "schema": SCHEMA,
            "created": _now(),
            "prefix": env.prefix,
            "prefix_real": prefix,
            "python": env.executable,
            "python_version": env.python_version,
            "implementation": env.implementation,
            "installer": installer,
            "install_args": [_redact(a) for a in args],
            "touched": touched,
            "not_installed_before": sorted(set(touched) - {d.key for d in inside}),
            "dists": copied,
            "owned_dirs": owned_dirs,
            "unlisted": unlisted,
            "empty_dirs": empty_dirs,
            "identity": {rel: _identity(path) for path, rel in pairs},
            "dir_modes": _dir_modes(pairs, prefix),
            "sites": {_rel(s, prefix): sorted(os.listdir(s)) for s in sites if _inside(s, prefix)},
            "installed": installed,
        }
        _copy_files([(path, os.path.join(partial, "files", *rel.split("/"))) for path, rel in pairs])
        header = (
            f"# {env.prefix} before abiguard changed it ({manifest['created']}); a whole-environment\n"
            "# alternative to `abiguard rollback` (needs the index): "
            f"uv pip sync --python {env.executable} freeze.txt\n"
        )
        _write_durable(partial / "freeze.txt", header + "".join(f"{line}\n" for line in freeze))
        _write_durable(partial / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        final = snaps / stamp
        os.replace(partial, final)
        _fsync_dir(snaps)
        return final, manifest
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        where = f" ({exc.filename})" if exc.filename else ""
        raise ApplyError(f"cannot write the snapshot under {snaps}: {exc.strerror or exc}{where}") from None
    except BaseException:  # Ctrl-C: nothing changed yet, and a half-written copy is megabytes of nothing
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _dir_modes(pairs: list[tuple[str, str]], prefix: str) -> dict[str, int]:
    """The mode of every directory holding a copied file, up to the prefix: a restore re-creates some of them,
    and a read-only or setgid tree must come back as it was."""
    modes: dict[str, int] = {}
    for path, _ in pairs:
        folder = os.path.dirname(path)
        while folder != prefix and _inside(folder, prefix) and _rel(folder, prefix) not in modes:
            modes[_rel(folder, prefix)] = stat.S_IMODE(os.lstat(folder).st_mode)
            folder = os.path.dirname(folder)
    return modes


_Owned = dict[str, tuple[set[str], list[str]]]  # a dist-info's path: the files it owns, and those outside the prefix


def _files_to_copy(
    touched: list[_Dist], owned: _Owned, prefix: str,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The manifest entry of each touched distribution, and (path, path relative to the prefix) of every file
    it owns: what a restore puts back."""
    entries: list[dict[str, Any]] = []
    pairs: list[tuple[str, str]] = []
    for d in touched:
        paths, outside = owned[d.path]
        by_rel = sorted((_rel(p, prefix), p) for p in paths)
        pairs += [(p, rel) for rel, p in by_rel]
        entries.append({
            "name": d.name, "key": d.key, "version": d.version,
            "dist_info": os.path.basename(d.path), "dist_info_path": _rel(d.path, prefix),
            "site": _rel(d.site, prefix), "files": [rel for rel, _ in by_rel], "outside_prefix": outside,
        })
    return entries, pairs


def _owned_dirs(inside: list[_Dist], owned: _Owned, touched: set[str], prefix: str) -> list[str]:
    """Top-level directories of the site dirs that only touched distributions own: a thorough restore sweeps
    them of leftovers; a shared one (a namespace package) never is."""
    owners: dict[tuple[str, str], set[str]] = {}
    for d in inside:
        for p in owned[d.path][0]:
            top = _top(p, d.site)
            if top is not None:
                owners.setdefault((d.site, top), set()).add(d.key)
    found: list[str] = []
    for (site, top), keys in sorted(owners.items()):
        full = os.path.join(site, top)
        if (keys <= touched and top != "__pycache__" and not top.endswith(".dist-info")
                and os.path.isdir(full) and not os.path.islink(full)):
            found.append(_rel(full, prefix))
    return found


def _leftovers(owned_dirs: list[str], listed: set[str], prefix: str) -> tuple[list[str], list[str]]:
    """Files in the owned directories that no RECORD lists (kept as they are), and directories without files
    (a restore sweeps empty ones that are not listed)."""
    unlisted: list[str] = []
    empty_dirs: list[str] = []
    for od in owned_dirs:
        for root, dirs, names in os.walk(os.path.join(prefix, *od.split("/"))):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            unlisted.extend(r for r in (_rel(os.path.join(root, n), prefix) for n in names) if r not in listed)
            if not names and not dirs:
                empty_dirs.append(_rel(root, prefix))
    return sorted(unlisted), sorted(empty_dirs)


def _installed(dists: list[_Dist], prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The environment as `pip freeze` lines (first of each name) and as manifest entries (all of them)."""
    freeze: list[str] = []
    installed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in dists:
        line, direct = _freeze_line(d)
        if d.key not in seen:
            freeze.append(line)
            seen.add(d.key)
        installed.append({
            "name": d.name, "key": d.key, "version": d.version, "direct_url": direct,
            "dist_info": _rel(d.path, prefix) if _inside(d.path, prefix) else d.path,
            "inside_prefix": _inside(d.path, prefix),
        })
    return freeze, installed


def _last_snapshot(snaps: Path) -> Path | None:
    try:
        names = sorted(os.listdir(snaps), reverse=True)
    except OSError:
        return None
    for name in names:
        path = snaps / name
        if not name.endswith(_PARTIAL) and (path / "journal.json").is_file() and (path / "manifest.json").is_file():
            return path
    return None


def _refuse_if_interrupted(snaps: Path, env: TargetEnvironment) -> None:
    snap = _last_snapshot(snaps)
    if snap is None:
        return
    state = snapshot_state(snap)
    if state in (PENDING, RESTORING, RESTORE_FAILED):
        raise ApplyError(
            f"the last change to {env.prefix} did not finish (snapshot {snap.name} is {state}): "
            f"run `abiguard rollback --python {env.executable}` first"
        )


def _prune(snaps: Path, keep: int) -> None:
    """Delete all but the newest `keep` finished snapshots, and leftovers of interrupted snapshotting."""
    _prune_partial(snaps)
    try:
        names = sorted(os.listdir(snaps), reverse=True)
    except OSError:
        return
    for kept, name in enumerate(names, 1):
        path = snaps / name
        if kept > max(keep, 1) and snapshot_state(path) in (APPLIED, ROLLED_BACK, None):
            shutil.rmtree(path, ignore_errors=True)


def _prune_partial(snaps: Path) -> None:
    """Delete what an abiguard killed while it took a snapshot left; the caller holds the lock, so nobody is
    writing it."""
    try:
        names = os.listdir(snaps)
    except OSError:
        return
    for name in names:
        if name.endswith(_PARTIAL):
            shutil.rmtree(snaps / name, ignore_errors=True)


def _journal(snap: Path, state: str, message: str, **extra: Any) -> None:
    data = _read_json(snap / "journal.json") or {"schema": SCHEMA, "history": []}
    now = _now()
    data.update(extra)
    data.update({"state": state, "updated": now, "message": _redact(message)})
    data.setdefault("history", []).append({"state": state, "at": now, "message": _redact(message)})
    _write_durable(snap / "journal.json", json.dumps(data, indent=1))


# -- restoring ---------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    replaced: dict[str, str] = field(default_factory=dict)  # key -> the version installed before the restore
    removed_dists: list[str] = field(default_factory=list)  # installed by the change, gone again
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _restore(
    env: TargetEnvironment,
    snap: Path,
    manifest: dict[str, Any],
    *,
    after_infos: list[str] | None,
    sweep: bool,
) -> _Outcome:
    """Make the touched distributions exactly as in the snapshot, and remove what the change added.

    `after_infos` lists the dist-infos right after a completed change (None: it never completed, so whatever
    is new and unowned is the installer's). `sweep` also removes unlisted files under directories only the
    touched distributions own: right for an interrupted install or restore, too bold for a change that
    completed long ago (the user may have put files there since)."""
    _verify_snapshot(snap, manifest)
    _real_dir.cache_clear()
    prefix = _real(env.prefix)
    files_dir = snap / "files"
    outcome = _Outcome()
    sites = _site_dirs(env)
    for rel in manifest["sites"]:
        site = _real(os.path.join(prefix, *rel.split("/")))
        if site not in sites and os.path.isdir(site):
            sites.append(site)
    sites = [s for s in sites if _inside(s, prefix)]
    touched = set(manifest["touched"])
    before = {str(i["dist_info"]) for i in manifest["installed"] if i["inside_prefix"]}
    added_by_change = set(after_infos) - before if after_infos is not None else None
    # An untouched distribution the installer changed anyway is not in the snapshot: keeping its new version
    # is better than leaving nothing (the outcome reports it).
    untouched_before = {str(i["key"]) for i in manifest["installed"] if i["inside_prefix"]} - touched

    def is_new(d: _Dist) -> bool:
        rel = _rel(d.path, prefix)
        return (rel not in before and (added_by_change is None or rel in added_by_change)
                and d.key not in untouched_before)

    current = _scan(sites)
    remove = [d for d in current if d.key in touched or is_new(d)]
    keep = [d for d in current if d not in remove]
    protected: set[str] = set()
    for d in keep:
        protected |= _owned_paths(d, prefix)[0]
    restore = {str(r) for d in manifest["dists"] for r in d["files"]}
    dirs_to_tidy: set[str] = set()

    def target(rel: str) -> str:
        return os.path.join(prefix, *rel.split("/"))

    # Files the change left alone (a touched distribution the installer did not replace after all, or the
    # whole set when it failed early) stay where they are: no removal, no copy.
    identity: dict[str, list[int]] = manifest.get("identity", {})
    intact: set[str] = set()
    for rel in restore:
        with contextlib.suppress(OSError):
            if rel in identity and _identity(target(rel)) == identity[rel]:
                intact.add(rel)

    # 1. remove what is installed now
    for d in remove:
        for entry in _record(d.path):
            p = _resolve(d.site, entry, prefix)
            if p is None:
                continue
            rel = _rel(p, prefix)
            if rel in intact or (p in protected and rel not in restore):
                continue
            _remove_file(p, dirs_to_tidy)
        for root, _dirs, names in os.walk(d.path):
            for n in names:
                if _rel(os.path.join(root, n), prefix) not in intact:
                    _remove_file(os.path.join(root, n), dirs_to_tidy)
        info_rel = _rel(d.path, prefix) + "/"
        if not any(r.startswith(info_rel) for r in intact):
            _remove_tree(d.path, prefix)
        dirs_to_tidy.add(d.path)
        if any(d.key == x["key"] for x in manifest["dists"]):
            outcome.replaced[d.key] = d.version
        else:
            outcome.removed_dists.append(f"{d.name}=={d.version}")

    # 2. files left in directories only the touched distributions own (an interrupted install's leftovers,
    #    stale bytecode); files that were there before the change and that no RECORD lists stay
    unlisted = set(manifest["unlisted"])
    for od in manifest["owned_dirs"]:
        base = target(od)
        if not os.path.isdir(base) or os.path.islink(base) or not _inside(_real(base), prefix):
            continue
        for root, dirs, names in os.walk(base):
            links = [x for x in dirs if os.path.islink(os.path.join(root, x))]
            for n in [*names, *links]:
                p = os.path.join(root, n)
                rel = _rel(p, prefix)
                if rel in restore or rel in unlisted or p in protected:
                    continue
                if sweep or "__pycache__" in rel.split("/"):
                    _remove_file(p, dirs_to_tidy)
                else:
                    outcome.notes.append(f"left in place: {rel} (no RECORD lists it)")

    # 3. new top-level entries that no installed distribution owns: pip's `~name` uninstall stash, files an
    #    interrupted install linked before writing its RECORD; a directory the removed RECORDs made is only
    #    judged once step 6 has tidied it (it is usually empty by then)
    owned_tops = {(s, t) for p in protected for s in sites if (t := _top(p, s)) is not None}
    restore_tops = {(s, t) for r in restore for s in sites if (t := _top(target(r), s)) is not None}
    new_tops: list[str] = []
    for rel_site, names_before in manifest["sites"].items():
        site = _real(target(rel_site))
        if not os.path.isdir(site):
            continue
        for name in sorted(set(os.listdir(site)) - set(names_before)):
            if (site, name) in owned_tops or (site, name) in restore_tops:
                continue
            path = os.path.join(site, name)
            if after_infos is None or name == "__pycache__":
                _remove_tree(path, prefix)
            else:
                new_tops.append(path)

    # 4. stale bytecode next to sources that come back (same size and mtime would make it look valid)
    for rel in restore - intact:
        if rel.endswith(".py"):
            _remove_bytecode(target(rel), spare=lambda p: _rel(p, prefix) in restore)

    # 5. copy the snapshot back; unlink first, the file may be a hard link into uv's cache
    pairs = [(os.path.join(files_dir, *rel.split("/")), target(rel)) for rel in sorted(restore - intact)]
    for parent in sorted({os.path.dirname(dst) for _, dst in pairs}):
        if not _inside(_real(parent), prefix):  # before creating anything through a link
            raise ApplyError(f"refusing to restore into {parent}: it leads outside {env.prefix}")
        os.makedirs(parent, exist_ok=True)
    _copy_files(pairs, replace=True)
    for d in manifest["dists"]:
        record = f"{d['dist_info_path']}/RECORD"
        if record in restore and not _same_bytes(os.path.join(files_dir, record), target(record)):
            raise ApplyError(f"{record} differs from the snapshot after the restore")

    # 6. empty directories the removal left behind (or an earlier, interrupted restore did), except the ones
    #    that were empty before
    empty_before = {target(r) for r in manifest.get("empty_dirs", ())}
    stops = {prefix, *sites, *empty_before}
    for empty in sorted(dirs_to_tidy, key=len, reverse=True):
        while _inside(empty, prefix) and empty not in stops and os.path.dirname(empty) != prefix:
            try:
                os.rmdir(empty)
            except OSError:
                break
            empty = os.path.dirname(empty)
    for od in manifest["owned_dirs"] if sweep else ():
        for root, _dirs, _names in os.walk(target(od), topdown=False):
            if root not in stops:
                with contextlib.suppress(OSError):
                    os.rmdir(root)
    for empty in empty_before:
        if _inside(_real(os.path.dirname(empty)), prefix):
            os.makedirs(empty, exist_ok=True)
    for path in new_tops:  # bytecode alone would still import as a namespace package
        if os.path.isdir(path) and not os.path.islink(path) and _only_bytecode(path):
            _remove_tree(path, prefix)
        elif os.path.lexists(path):
            outcome.notes.append(f"left in place: {_rel(path, prefix)} (new; no RECORD lists it)")
    for rel, mode in manifest.get("dir_modes", {}).items():  # last: a read-only mode would stop the writes
        with contextlib.suppress(OSError):
            st = os.lstat(target(rel))
            if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
                os.chmod(target(rel), mode)

    # 7. distributions the change altered without naming them cannot come back from the snapshot
    now = {d.key: d.version for d in _scan(sites)}
    for item in manifest["installed"]:
        if item["inside_prefix"] and item["key"] not in touched and not os.path.isdir(target(item["dist_info"])):
            state = "now absent" if item["key"] not in now else (
                f"now {now[item['key']]}" if now[item["key"]] != item["version"] else "now installed elsewhere")
            outcome.missing.append(f"{item['name']}=={item['version']} ({state})")
    return outcome


def _refuse_other_python(env: TargetEnvironment, snap: Path, manifest: dict[str, Any]) -> None:
    """A venv re-created at the same path with another Python: the snapshot's files (cp311 extension modules,
    lib/python3.11/...) would be planted where nothing can use them."""
    then = (str(manifest.get("implementation", env.implementation)),
            ".".join(str(manifest.get("python_version", "")).split(".")[:2]))
    now = (env.implementation, env.python_tag)
    if then != now:
        raise ApplyError(
            f"snapshot {snap.name} was taken when {env.prefix} ran {then[0]} {then[1]}, but it runs {now[0]} "
            f"{now[1]} now (re-created?): its files cannot be restored there; nothing was changed "
            f"(the packages it had are listed in {snap / 'freeze.txt'})"
        )


def _verify_snapshot(snap: Path, manifest: dict[str, Any]) -> None:
    """Every copy is present with the size it had: a snapshot cut short (a crash before the disk had it, a
    hand-deleted file) must not be restored over a working environment."""
    identity: dict[str, list[int]] = manifest.get("identity", {})
    bad: list[str] = []
    for d in manifest["dists"]:
        for rel in d["files"]:
            try:
                st = os.lstat(os.path.join(snap, "files", *rel.split("/")))
            except OSError:
                bad.append(rel)
                continue
            if rel in identity and stat.S_ISREG(st.st_mode) and st.st_size != identity[rel][2]:
                bad.append(rel)
    if bad:
        raise ApplyError(
            f"snapshot {snap} is damaged ({len(bad)} files missing or cut short, e.g. {bad[0]}): cannot restore "
            "from it; the environment was not changed by this restore (remove that directory to go on)"
        )


def _describe(dist: dict[str, Any], outcome: _Outcome) -> str:
    now = outcome.replaced.get(dist["key"])
    text = f"{dist['name']}=={dist['version']}"
    if now is None:
        return f"{text} (was missing)"
    return text if now == dist["version"] else f"{text} (was {now})"


def _remove_file(path: str, dirs_to_tidy: set[str]) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        dirs_to_tidy.add(os.path.dirname(path))
        if path.endswith(".py"):
            _remove_bytecode(path)
            dirs_to_tidy.add(os.path.join(os.path.dirname(path), "__pycache__"))


def _only_bytecode(top: str) -> bool:
    """Whether a directory holds nothing but `__pycache__` directories and their `.pyc` files."""
    for root, dirs, names in os.walk(top):
        if names and (os.path.basename(root) != "__pycache__" or not all(n.endswith(".pyc") for n in names)):
            return False
        if any(os.path.islink(os.path.join(root, d)) for d in dirs):
            return False
    return True


def _remove_bytecode(source: str, spare: Callable[[str], bool] | None = None) -> None:
    """Delete `__pycache__/<stem>.<tag>[.opt-N].pyc` of a source file, except what `spare` says to keep."""
    cache = os.path.join(os.path.dirname(source), "__pycache__")
    stem = os.path.basename(source)[:-3] + "."
    try:
        names = os.listdir(cache)
    except OSError:
        return
    for n in names:
        if n.startswith(stem) and n.endswith(".pyc"):
            p = os.path.join(cache, n)
            if spare is None or not spare(p):
                with contextlib.suppress(OSError):
                    os.unlink(p)


def _remove_tree(path: str, prefix: str) -> None:
    if not _inside(_real(os.path.dirname(path)), prefix):
        return
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _same_bytes(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


# -- small helpers -----------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ApplyError(
            f"cannot create {path}: {exc.strerror}; set ABIGUARD_STATE_DIR to a writable directory"
        ) from None
    return path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_durable(path: Path, text: str) -> None:
    """Write-then-rename with fsync, so a crash leaves either the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_files(pairs: list[tuple[str, str]], *, replace: bool = False) -> None:
    """`copy2` each (source, destination) and fsync the copy; threads overlap the many small waits.

    With `replace`, an existing destination is unlinked first: it may be a hard link into uv's cache, and
    writing through it would change the cache (and every environment linked to it)."""

    def one(pair: tuple[str, str]) -> None:
        src, dst = pair
        if replace and os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        shutil.copy2(src, dst, follow_symlinks=False)
        if not os.path.islink(dst):
            with contextlib.suppress(OSError):  # durability is best effort: a mode without read access is legal
                fd = os.open(dst, os.O_RDWR if sys.platform == "win32" else os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    if not replace:
        for parent in sorted({os.path.dirname(dst) for _, dst in pairs}):
            os.makedirs(parent, exist_ok=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(one, pairs):
            pass


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(text: str) -> str:
    return _CREDENTIALS.sub("***@", text)


def _tail(output: str, lines: int = TAIL_LINES) -> str:
    kept = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    return _redact("\n".join(kept[-lines:]))


def _error_line(output: str) -> str:
    """The installer's last error line; for uv, with the innermost `cause:` that follows it (the real why)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if re.match(r"(error|ERROR)\b", ln)]
    if not errors:
        return _one_line(_redact(lines[-1] if lines else "no output"))
    chosen = lines[errors[-1]]
    causes = [ln for ln in lines[errors[-1] + 1:] if ln.startswith("cause:")]
    if causes:
        chosen += f" ({causes[-1][len('cause:'):].strip()})"
    return _one_line(_redact(chosen))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

