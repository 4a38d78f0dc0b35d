"""Import modules in fresh subprocesses of the target interpreter and say what happened.

Static findings predict; this module observes. Each module is imported in its own process so that one
module's segfault, hang, `exit()` or flood of output cannot disturb the verification of any other, and
so that nothing imported earlier (numpy, a parent package) hides or causes a failure. The process is
the target interpreter itself, run from outside: abiguard never imports anything from the target.

The price of isolation is one interpreter start per module, so the child is a few lines of plain
Python 3 (it must run on any target down to 3.6) that imports no more than `os` and `sys`: it does not
even import `json` (8 ms of `re` per module on 3.11); its one report line is an `ascii()` tuple that
the parent reads back with `ast.literal_eval`.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from enum import Enum
from typing import IO, Any

from abiguard.model import Verification

OK = "ok"
NUMPY_ABI = "numpy-abi"
IMPORT_ERROR = "import-error"
CRASHED = "crashed"
TIMEOUT = "timeout"
PARENT_FAILED = "parent-failed"
OUTCOMES = (OK, NUMPY_ABI, IMPORT_ERROR, CRASHED, TIMEOUT, PARENT_FAILED)

# What the parent keeps of each child stream: the start (where NumPy's banner is) and the end (where
# the report and a crash's last words are). A module that prints gigabytes costs 256 KiB per job.
_HEAD_BYTES = 64 * 1024
_TAIL_BYTES = 64 * 1024
_DETAIL_CHARS = 2000

# Run by the target interpreter as `python -E -B -X faulthandler -c _CHILD TOKEN MODULE DUMP_AFTER BYTECODE`.
# Python 3.6 syntax; fd 1 is re-pointed at stderr so that whatever the module prints (from Python or
# C) goes there, and only the reports reach the original stdout. `os._exit` right after the last report
# skips interpreter shutdown: faster, and a crash in some library's finalizer is not the import's.
#
# The parents are imported first, as Python would. When one fails (as a package whose __init__ imports
# the broken module does), the child reports that ("parent" line), puts a stand-in in its place (an
# empty package whose __path__ the import system's finders gave without running any package code) and
# goes on: deeper parents still run their __init__, stand-ins replace those that fail too, and the
# module's siblings resolve through the stand-ins. Just before the module's own import it writes TOKEN
# + "direct" to stderr so that the parent can tell the output of the two apart.
# BYTECODE (3.8+) is a directory outside the environment where the imports of one run share compiled
# bytecode (`-B` still holds on older Pythons): a package installed without .pyc files (uv's default) is
# then compiled once per run instead of once per module.
_CHILD = r"""
import os, sys
def main():
    token, name, dump_after, bytecode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    write, leave = os.write, os._exit
    report = os.dup(1)
    os.dup2(2, 1)
    if bytecode and hasattr(sys, 'pycache_prefix'):
        sys.pycache_prefix = bytecode
        sys.dont_write_bytecode = False
    if dump_after > 0:
        import faulthandler
        faulthandler.dump_traceback_later(dump_after)
    def line(error):
        try:
            text = str(error)
        except BaseException:
            text = ''
        first = ''
        for part in text.splitlines():
            if part.strip():
                first = part.strip()
                break
        kind = type(error).__name__
        return (kind + ': ' + first if first else kind)[:1000]
    def via(error):
        # the innermost Python source on the failure's way out that is neither numpy's nor the module's
        # own: a module that this one imports failed first (its own import_array() passes through
        # numpy's files only)
        numpy = getattr(sys.modules.get('numpy'), '__path__', None) or []
        own = os.sep + name.replace('.', os.sep)
        inner = None
        tb = error.__traceback__
        while tb is not None:
            path = tb.tb_frame.f_code.co_filename
            mine = path == own + '.py' or path.endswith((own + '.py', own + os.sep + '__init__.py'))
            if path.endswith('.py') and not mine and not any(path.startswith(p + os.sep) for p in numpy):
                inner = path
            tb = tb.tb_next
        if inner is None:
            return ''
        for entry in sys.path:  # its dotted name (a failed import is gone from sys.modules)
            if entry and inner.startswith(entry.rstrip(os.sep) + os.sep):
                rel = inner[len(entry.rstrip(os.sep)) + 1:-3].split(os.sep)
                return '.'.join(rel[:-1] if rel[-1] == '__init__' else rel)
        return inner
    def chain(error):
        found = []
        while error is not None and len(found) < 5:
            found.append(line(error))
            error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        return found
    def send(fields, final=True):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        write(report, ('\n' + token + ascii(fields) + '\n').encode('ascii'))
        if final:
            leave(0)
    parts = name.split('.') if name else []
    first = None
    for i in range(len(parts)):
        current = '.'.join(parts[:i + 1])
        if current == name and first is not None:
            write(2, ('\n' + token + 'direct\n').encode('ascii'))
        try:
            __import__(current)
            continue
        except BaseException as error:
            failed = chain(error)
            through = via(error) if current == name else ''
        if current == name:
            send(('failed', name, failed, through))
        if first is None:
            first = (current, failed)
            send(('parent',) + first, False)
        above = sys.modules.get('.'.join(parts[:i])) if i else None
        path = getattr(above, '__path__', None)
        spec = None
        for finder in sys.meta_path if path is not None or not i else ():
            try:
                spec = finder.find_spec(current, path)
            except Exception:
                spec = None
            if spec is not None:
                break
        if spec is None or not spec.submodule_search_locations:
            send(('failed',) + first)
        module = type(sys)(current)
        module.__path__ = list(spec.submodule_search_locations)
        module.__package__ = current
        module.__spec__ = spec
        if spec.has_location:
            module.__file__ = spec.origin
        sys.modules[current] = module
        if above is not None:
            setattr(above, parts[i], module)
    send(('ok',))
main()
"""

# NumPy's own words when a module meets a NumPy whose C-ABI it was not built for (see
# shared/research/numpy-abi.md, "What happens at run time"). Searched in the exception chain always and
# in stderr (where `import_array()`'s PyErr_Print puts the root cause) only when the import failed.
_NUMPY_ABI = re.compile(
    "|".join(
        (
            r"compiled using NumPy 1\.x cannot be run",
            r"numpy\._?core\.(?:_multiarray_umath|multiarray|umath) failed to import",
            r"\b_multiarray_umath failed to import",
            r"\b_(?:ARRAY|UFUNC)_API not found",
            r"numpy _ARRAY_API pointer",
            r"\bnumpy\.\w+ size changed, may indicate binary incompatibility",
            r"compiled against NumPy C-API version",
            r"module compiled against (?:ABI|API) version 0x",
        )
    )
)
_NUMPY_MISSING = re.compile(r"^ModuleNotFoundError: No module named 'numpy(?:\.[\w.]+)?'$")
_BANNER_START = "A module that was compiled using NumPy 1.x"
_TRACEBACK = "Traceback (most recent call last):"


class VerifyError(Exception):
    """The target interpreter cannot run the import check at all (not a verdict about any module)."""


@dataclass(frozen=True)
class ImportOutcome:
    """What importing one module in a fresh process of the target interpreter showed.

    `message` is the exception's first line as "Type: message", a signal name such as "SIGSEGV", or
    "timed out after 30 s". `detail` holds NumPy's "A module that was compiled using NumPy 1.x ..."
    banner when it was printed, else the NumPy message that caused the final exception, else (crash,
    timeout) the end of stderr.

    When a parent package failed to import, `parent` names it, `parent_outcome` says whether it failed
    on the NumPy ABI (`numpy-abi`) or otherwise (`import-error`) and `parent_message` is its exception;
    the outcome, message and detail are then those of the module imported with stand-ins for its
    parents (see `_CHILD`), so they speak about the module itself. Only when that could not be done (a
    parent package cannot be found on the path at all) is the outcome `parent-failed`, with the first
    failed parent's exception as its message.
    """

    outcome: str
    message: str | None
    detail: str | None = None
    seconds: float = 0.0
    parent: str | None = None
    parent_outcome: str | None = None
    parent_message: str | None = None
    via: str | None = None  # the module it imports whose own import failed first (its code was on the way)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "parent": self.parent,
            "parent_outcome": self.parent_outcome,
            "parent_message": self.parent_message,
            "via": self.via,
        }


def confirms(static_verdict: str, outcome: ImportOutcome) -> bool | None:
    """Does what the import showed agree with the static verdict? None when the import cannot tell.

    `broken` predicts a NumPy-ABI import failure; `ok` ("none" is accepted for binaries that do not use
    NumPy's C-API) and `at-risk` predict a successful import (at-risk modules import and then compute
    wrong results, which an import cannot see). Only `ok` and `numpy-abi` outcomes speak to the
    prediction: a crash, a timeout, a non-NumPy ImportError (a missing shared library, a missing
    dependency) or a parent package that could not be stood in for (`parent-failed`) all end the import
    before NumPy's ABI check decides anything about this module, so they neither confirm nor refute.
    `unknown` predicts nothing. A parent that failed but could be stood in for does not count: the
    outcome is then the module's own (see `ImportOutcome`). A failure of another module it imports
    (`via`) is that module's, not its own: it neither confirms nor refutes.
    """
    verdict = static_verdict.value if isinstance(static_verdict, Enum) else str(static_verdict)
    if verdict == "none":
        verdict = "ok"
    if verdict not in ("ok", "at-risk", "broken"):
        return None
    if outcome.outcome == OK:
        return verdict != "broken"
    if outcome.outcome == NUMPY_ABI and outcome.via is None:
        return verdict == "broken"
    if outcome.outcome == IMPORT_ERROR and _NUMPY_MISSING.search(outcome.message or "") and verdict == "broken":
        return True  # broken for want of numpy, as predicted when numpy is not installed
    return None


def to_verification(static_verdict: str, outcome: ImportOutcome, *, comparable: bool = True) -> Verification:
    """The report's view of an import outcome: a parent's failure is prefixed with the parent's name.

    `comparable=False` when the static verdict was not reached against the numpy the imports ran with
    (`check --numpy VER`): the outcome is still recorded, but it confirms or refutes nothing.
    """
    message = outcome.message
    if outcome.outcome == PARENT_FAILED and outcome.parent:
        message = f"{outcome.parent}: {message}"
    return Verification(
        outcome=outcome.outcome,
        message=message,
        confirms=confirms(static_verdict, outcome) if comparable else None,
        detail=outcome.detail,
        parent=outcome.parent,
        via=outcome.via,
    )


def verify_modules(
    python: str,
    modules: Sequence[str],
    *,
    jobs: int | None = None,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
    isolated: bool = True,
) -> dict[str, ImportOutcome]:
    """Import each dotted module name in its own fresh process of `python`; results in input order.

    `python` is the target interpreter as given (a venv's `bin/python`: do not resolve the symlink, or
    the venv is lost). Runs `jobs` imports at once (default: CPU count), each limited to `timeout`
    seconds including interpreter start. `isolated` runs the child with `-E`, which drops PYTHON*
    variables (PYTHONPATH) but keeps the site-packages directories a scan reads, the user's included.
    `progress(done, total)` is called from the calling thread, first with done=0.

    Raises VerifyError when the interpreter cannot run the check at all (missing, not Python 3).
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    names = list(dict.fromkeys(modules))
    if not names:
        return {}
    workers = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    with tempfile.TemporaryDirectory(prefix="abiguard-verify-", ignore_cleanup_errors=True) as scratch:
        cwd, bytecode = os.path.join(scratch, "cwd"), os.path.join(scratch, "bytecode")
        os.mkdir(cwd)
        runner = _Runner(python, timeout, cwd, isolated, bytecode)
        runner.preflight()
        results: dict[str, ImportOutcome] = {}
        if progress:
            progress(0, len(names))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="abiguard-verify") as pool:
            futures = {pool.submit(runner.run, name): name for name in names}
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    results[futures[future]] = future.result()
                    if progress:
                        progress(done, len(names))
            except BaseException:
                # Ctrl-C or an error: the children run in their own sessions and would not see the
                # signal, so end them here rather than wait for each to time out.
                runner.abort()
                for future in futures:
                    future.cancel()
                raise
    return {name: results[name] for name in names}


class _Aborted(Exception):
    pass


class _Capture(threading.Thread):
    """Drains one pipe, keeping its first and last bytes; `ready` is set at EOF (or, with a `token`,
    once the child's report line is complete, in case a forked grandchild keeps the pipe open)."""

    def __init__(self, stream: IO[bytes], token: bytes | None = None) -> None:
        super().__init__(daemon=True)
        self._fd = stream.fileno()
        self._stream = stream
        self._token = token
        self._lock = threading.Lock()
        self._head = bytearray()
        self._tail = bytearray()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            while chunk := os.read(self._fd, 65536):
                with self._lock:
                    room = _HEAD_BYTES - len(self._head)
                    if room > 0:
                        self._head += chunk[:room]
                        chunk = chunk[room:]
                    self._tail += chunk
                    if len(self._tail) > _TAIL_BYTES:
                        del self._tail[: len(self._tail) - _TAIL_BYTES]
                    if self._token is not None and self._has_report():
                        self.ready.set()
        except OSError:
            pass
        finally:
            self._stream.close()
            self.ready.set()

    def _has_report(self) -> bool:
        # stdout carries nothing but the reports (the child points fd 1 at stderr), so a short window
        # at the end suffices. A "parent" report is followed by the module's own: not the last one.
        data = bytes(self._head[-4096:] + self._tail[-(64 * 1024 - 4096) :])
        token = self._token or b"\0"
        at = data.rfind(token)
        return at >= 0 and data.endswith(b"\n") and not data.startswith(b"('parent'", at + len(token))

    def data(self) -> bytes:
        """The first and the last bytes read (what lay between them was dropped)."""
        with self._lock:
            return bytes(self._head + self._tail)

    def text(self) -> tuple[str, str]:
        with self._lock:
            head = self._head.decode("utf-8", "replace")
            tail = self._tail.decode("utf-8", "replace")
        return head, tail


class _Runner:
    """Starts, watches and classifies the child processes of one `verify_modules` call."""

    def __init__(self, python: str, timeout: float, cwd: str, isolated: bool, bytecode: str = "") -> None:
        self.timeout = timeout
        self.cwd = cwd
        self.bytecode = bytecode
        self.token = "abiguard-verify-" + secrets.token_hex(8) + ":"
        # -E, not -I: the user's site-packages stays on the path where `check` looks for it too (it reads
        # PYTHONUSERBASE itself); PYTHONNOUSERSITE, which -E would ignore, becomes -s. The current directory
        # the child starts in is empty.
        flags = ["-E", *(["-s"] if os.environ.get("PYTHONNOUSERSITE") else [])] if isolated else []
        # -B: no bytecode in the target's site-packages; faulthandler: a crash leaves a Python traceback.
        self.argv = [python, *flags, "-B", "-X", "faulthandler", "-c", _CHILD, self.token]
        dump_after = timeout - min(1.0, timeout / 5)  # where a hang is, just before it is killed
        self.dump_after = f"{dump_after:.3f}" if dump_after >= 0.5 else "0"
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # also for Python processes the module itself starts
        env.pop("__PYVENV_LAUNCHER__", None)  # macOS: would make the target think it is our venv
        self.env = env
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self._aborted = False

    def preflight(self) -> None:
        """Import nothing once, so a wrong interpreter is one clear error rather than N crashes."""
        outcome = self.run("")
        if outcome.outcome != OK:
            why = "; ".join(x for x in (outcome.message, outcome.detail) if x)
            raise VerifyError(f"{self.argv[0]} cannot run the import check: {why}")

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            for proc in self._live:
                _kill_group(proc)

    def run(self, module: str) -> ImportOutcome:
        started = time.monotonic()
        deadline = started + self.timeout
        with self._lock:
            if self._aborted:
                raise _Aborted
            try:
                proc = subprocess.Popen(
                    [*self.argv, module, self.dump_after, self.bytecode],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self.cwd,
                    env=self.env,
                    start_new_session=os.name == "posix",
                    creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
                )
            except OSError as error:
                raise VerifyError(f"cannot run {self.argv[0]}: {error}") from error
            self._live.add(proc)
        assert proc.stdout is not None and proc.stderr is not None
        out = _Capture(proc.stdout, self.token.encode("ascii"))
        err = _Capture(proc.stderr)
        out.start()
        err.start()
        exited = out.ready.wait(max(0.0, deadline - time.monotonic())) and _await_exit(proc, deadline)
        with self._lock:
            # Still unreaped, so its pid (the group id) cannot have been reused: safe to kill the group,
            # which also ends whatever the import started in the background.
            _kill_group(proc)
            self._live.discard(proc)
        returncode = proc.wait()
        seconds = time.monotonic() - started
        out.join(1.0)
        err.join(1.0)  # a daemon that left the group may hold stderr open: take what we have
        reports = _read_reports(out.data(), self.token)
        final = reports[-1] if reports and reports[-1][0] != "parent" else None
        parent = next((r for r in reports if r[0] == "parent"), None)
        head, tail = err.text()
        parent_stderr = ""
        if parent is not None:
            reached = final is not None and (final[0] == "ok" or final[1] == module)  # the marker was written
            parent_stderr, head, tail = _split_stderr(head, tail, self.token + "direct\n", reached)
        timed_out = self.timeout if not exited and final is None else None
        return _classify(module, final, returncode, head, tail, seconds, parent, parent_stderr, timed_out)


def _await_exit(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait for the child to exit without reaping it; False at the deadline."""
    if not hasattr(os, "waitid"):  # Windows
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True
    delay = 0.0002
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass


def _read_reports(data: bytes, token: str) -> list[tuple[Any, ...]]:
    """The well-formed report lines, in order: at most one ("parent", name, chain), then at most one
    ("ok",) or ("failed", name, chain[, via])."""
    text = data.decode("ascii", "replace")
    found: list[tuple[Any, ...]] = []
    for piece in text.split(token)[1:]:
        try:
            fields = ast.literal_eval(piece.split("\n", 1)[0])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if fields == ("ok",):
            found.append(("ok",))
        elif (
            isinstance(fields, tuple)
            and (len(fields) == 3 or (len(fields) == 4 and fields[0] == "failed" and isinstance(fields[3], str)))
            and fields[0] in ("failed", "parent")
            and isinstance(fields[1], str)
            and isinstance(fields[2], list)
            and fields[2]
            and all(isinstance(x, str) for x in fields[2])
        ):
            found.append(fields)
    return found


def _split_stderr(head: str, tail: str, marker: str, reached: bool) -> tuple[str, str, str]:
    """(before, head, tail): the stderr of the parents' attempt, then that of the module's own attempt.

    A marker that was written (`reached`: the child went on to import the module) but is not in the
    capture fell in the dropped middle: the kept head is all before it and the kept tail all after it.
    Without a marker (the child never got to the module, or died on the way) all of it is the parents'
    and, for want of better, also the module's.
    """
    text = head + tail
    at = text.find(marker)
    if at >= 0:
        return text[:at], text[at + len(marker) :], ""
    if reached:
        return head, "", tail
    return text, head, tail


def _classify(
    module: str,
    report: tuple[Any, ...] | None,
    returncode: int,
    head: str,
    tail: str,
    seconds: float,
    parent: tuple[Any, ...] | None = None,
    parent_stderr: str = "",
    timed_out: float | None = None,
) -> ImportOutcome:
    """`report` is the child's last report (None: it never sent one), `parent` its ("parent", ...) report
    if a parent failed, with `parent_stderr` what was printed before the module's own attempt."""
    about_parent: dict[str, Any] = {}
    if parent is not None:
        _, name, chain = parent
        kind = NUMPY_ABI if _is_numpy_abi(chain, parent_stderr) else IMPORT_ERROR
        about_parent = {"parent": name, "parent_outcome": kind, "parent_message": chain[0]}
    stderr = head + tail
    banner = _banner(stderr)
    if timed_out is not None:
        return ImportOutcome(TIMEOUT, f"timed out after {timed_out:g} s", _last(head, tail), seconds, **about_parent)
    if report is None:
        if returncode < 0:
            try:
                message = signal.Signals(-returncode).name
            except ValueError:
                message = f"signal {-returncode}"
        else:
            message = f"exited with status {returncode}" + (" during import" if module else "")
        return ImportOutcome(CRASHED, message, banner or _last(head, tail), seconds, **about_parent)
    if report[0] == "ok":
        return ImportOutcome(OK, None, banner, seconds, **about_parent)
    _, failed, chain, *rest = report
    message = chain[0]
    abi = _is_numpy_abi(chain, stderr)
    detail = banner
    if abi and detail is None:
        cause = [x for x in chain[1:] if _NUMPY_ABI.search(x)]
        cause += [x for x in stderr.splitlines() if _NUMPY_ABI.search(x) and x.strip() not in message]
        detail = cause[0].strip()[:_DETAIL_CHARS] if cause else None
    kind = NUMPY_ABI if abi else IMPORT_ERROR
    if failed != module:
        return ImportOutcome(
            PARENT_FAILED, message, detail, seconds, parent=failed, parent_outcome=kind, parent_message=message
        )
    return ImportOutcome(kind, message, detail, seconds, **about_parent, via=rest[0] if rest and rest[0] else None)


def _is_numpy_abi(chain: Sequence[str], stderr: str) -> bool:
    return any(_NUMPY_ABI.search(line) for line in chain) or bool(_NUMPY_ABI.search(stderr))


def _banner(stderr: str) -> str | None:
    start = stderr.find(_BANNER_START)
    if start < 0:
        return None
    end = stderr.find(_TRACEBACK, start)
    text = stderr[start : end if end >= 0 else None].strip()
    return text[:_DETAIL_CHARS]


def _last(head: str, tail: str) -> str | None:
    text = (head + tail).strip()
    return text[-_DETAIL_CHARS:] or None


__all__ = [
    "OUTCOMES",
    "ImportOutcome",
    "VerifyError",
    "confirms",
    "to_verification",
    "verify_modules",
]
