"""Recall: give `abiguard check` its last answer again while nothing that answer rested on has changed.

A check run with the result cache on records the stamp of every path it stat'ed (see `stamps`). When it
ends cleanly (exit 0 or 1, nothing on stderr but progress), what it printed and its exit code are kept with
those stamps and with the stamps of abiguard's own code, under a key made of everything else the output
depends on: the arguments, the working directory, the interpreter abiguard runs in, the kernel, and how the
output is shown (a terminal or not, its size, its encoding, the environment variables the renderers read).

The next identical check stats those paths and, when every stamp is unchanged, prints the kept answer
before importing argparse, packaging, SQLite or rich: a cached check of a large environment then costs its
stats, not a rebuild of the report. Any change (an install, a rewritten file, a directory gaining a
library, an edit of abiguard) makes it a normal check, which records anew. `--no-cache` and `--verify`
never recall nor record.
"""

from __future__ import annotations

import marshal
import os
import sys
import time
import zlib

from abiguard import stamps
from abiguard.paths import cache_dir

TYPE_CHECKING = False  # typing itself costs a recalled check a sixth of its time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType
    from typing import Any, TextIO

FORMAT = 4  # 3: stamps grouped as Recording.kept gives them, paths under site-packages relative to it; 4: user site
KEEP = 16  # answers kept per cache directory, the most recently written
# What the output depends on besides the stamps: the default interpreter, and what rich's Console and
# argparse's formatter read to choose colours and width.
_ENV = ("VIRTUAL_ENV", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM",
        "COLORTERM", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def main() -> int:
    """The `abiguard` command: a recalled answer when there is one, else the full command line."""
    argv = sys.argv[1:]
    if sys.stderr is None:  # started with stderr closed (`2>&-`): what would go there goes nowhere
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stdout is None:  # `>&-`: no report can be given, and silence must not pass for "no conflicts"
        sys.stderr.write("abiguard: error: standard output is closed: nowhere to write the report\n")
        return 2
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is shown escaped, not a crash
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = answer(argv) if argv[:1] == ["check"] else None  # only writing can raise: a failed read is None
        if code is None:
            from abiguard.cli import main as run

            code = run(argv)
    except SystemExit as exc:  # argparse: --help and --version (0), a usage error (2)
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except OSError as exc:  # an error message that standard error could not take, for one
        from abiguard import ui

        if not ui.lost_write(exc):
            raise
        code = ui.output_lost(exc)
    try:  # what is still buffered may not fit either; `ui` (imports a recalled answer need not make) sees to it
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        from abiguard import ui

        code = ui.finish(code)
    return code


def answer(argv: Sequence[str]) -> int | None:
    """Print the kept answer to this very check and return its exit code; None when there is none, or
    something it rested on changed."""
    key = _key(argv)
    if key is None:
        return None
    try:
        with open(_path(key), "rb") as fh:
            kept = marshal.loads(fh.read())
        stored_key, noted, text, code = kept
        if stored_key != key or not isinstance(text, str) or not isinstance(code, int) or not stamps.unchanged(noted):
            return None
    except (OSError, ValueError, EOFError, TypeError):
        return None  # none kept, or a damaged file: the full check will replace it
    sys.stdout.write(text)
    sys.stdout.flush()
    return code


class Recorder:
    """Around one check: turns the stamp recording on and keeps a copy of what is written, so that `keep`
    can store the answer."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._key = _key(argv)  # before the streams are wrapped: the key describes the real ones
        self._recording: stamps.Recording | None = None
        self._out: _Tee | None = None
        self._err: _Tee | None = None
        self._started = 0

    def __enter__(self) -> Recorder:
        self._started = time.time_ns()
        self._recording = stamps.start()
        self._out, self._err = _Tee(sys.stdout), _Tee(sys.stderr)
        sys.stdout, sys.stderr = self._out, self._err
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._out is not None and self._err is not None:
            sys.stdout, sys.stderr = self._out.stream, self._err.stream
        stamps.stop()

    def keep(self, code: int) -> None:
        """Store the answer, if it is one to give again: a clean exit, no warning or error printed (a
        progress line starts with a carriage return), nothing seen that a stat cannot vouch for, and no path
        changed too recently for its stamp to be trusted."""
        recording, out, err = self._recording, self._out, self._err
        if self._key is None or recording is None or out is None or err is None or code not in (0, 1):
            return
        if not recording.complete or any(not part.startswith("\r") for part in err.parts):
            return
        for path in _code_files():
            try:
                stamps.stat(path)  # noted: the recording is still on
            except OSError:
                return
        if recording.changed_since(self._started - stamps.RACY_NS):
            return
        _write(_path(self._key), marshal.dumps([self._key, recording.kept(), "".join(out.parts), code]))


class _Tee:
    """A text stream that passes every write on and keeps a copy; anything else goes to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _key(argv: Sequence[str]) -> list[Any] | None:
    out = sys.stdout
    if out is None:
        return None
    try:
        tty = out.isatty()
        size = list(os.get_terminal_size(out.fileno())) if tty else None
        cwd = os.getcwd()
    except (OSError, ValueError, AttributeError):
        return None
    kernel = list(os.uname()) if hasattr(os, "uname") else []
    return [FORMAT, list(argv), cwd, sys.executable, sys.version, os.path.dirname(os.path.abspath(__file__)), kernel,
            tty, size, getattr(out, "encoding", None), getattr(out, "errors", None), [os.environ.get(k) for k in _ENV],
            stamps.user_site_inputs()]


def _path(key: list[Any]) -> str:
    return os.path.join(cache_dir(), f"answer-{zlib.crc32(repr(key).encode()):08x}.marshal")


def _code_files() -> list[str]:
    """The files of every module loaded that is not the standard library's: abiguard's own, packaging, rich.
    An upgrade or an edit of any of them can change the answer."""
    stdlib = os.path.dirname(os.__file__)
    files = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and (not path.startswith(stdlib) or "-packages" in path):
            files.append(path)
    return files


def _write(path: str, data: bytes) -> None:
    """Write atomically, and drop the oldest answers beyond `KEEP`; a failure only costs the next check's speed."""
    folder = os.path.dirname(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        answers = [os.path.join(folder, n) for n in os.listdir(folder)
                   if n.startswith("answer-") and n.endswith(".marshal")]
        answers.sort(key=os.path.getmtime, reverse=True)
        for old in answers[KEEP:]:
            os.unlink(old)
    except OSError:
        import contextlib  # here only: importing it costs a recalled check a tenth of its time

        with contextlib.suppress(OSError):
            os.unlink(tmp)
