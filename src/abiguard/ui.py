"""Terminal niceties that must stay out of pipes, CI logs and JSON mode."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing itself costs a recalled check (which imports this module) a sixth of its time
if TYPE_CHECKING:
    from typing import TextIO


def interactive() -> bool:
    """Progress is shown only to a person: stderr is a terminal and this is not CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(label: str, enabled: bool) -> Callable[[int, int], None] | None:
    """A throttled one-line counter on stderr, or None when nobody is watching."""
    if not enabled:
        return None
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.1:
            return
        last[0] = now
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label} {done}/{total}{end}")
        sys.stderr.flush()

    return update


def error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"abiguard: error: {message}\n")
    if hint:
        sys.stderr.write(f"  hint: {hint}\n")


WRITE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def lost_write(exc: OSError) -> bool:
    """Whether `exc` is a write to standard output or error that failed: a closed pipe or a full disk, not a
    file of the environment (those carry their name)."""
    return isinstance(exc, BrokenPipeError) or (exc.filename is None and exc.errno in WRITE_ERRORS)


def output_lost(exc: OSError) -> int:
    """The exit code when the report could not be written (a closed pipe, a full disk): 2, never 0, which
    would pass for "no conflicts" under `set -o pipefail`."""
    _to_devnull(sys.stdout)
    if not isinstance(exc, BrokenPipeError):  # the reader left on purpose (`| head`): nothing to say
        with contextlib.suppress(OSError):  # standard error may be the full disk itself
            error(f"cannot write the output: {exc.strerror or exc}")
    return 2


def finish(code: int) -> int:
    """The exit code once what is still buffered for standard output and error is written: a report that does
    not fit is `output_lost` (even --help's), and Python would otherwise make any failed flush at exit 120.
    Lost diagnostics keep the code they came with."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        code = output_lost(exc)
    try:
        sys.stderr.flush()
    except OSError:
        _to_devnull(sys.stderr)
    return code


def _to_devnull(stream: TextIO) -> None:
    """Point `stream`'s descriptor at /dev/null, so that the flush at exit fails no more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def status(message: str) -> None:
    """One line of what long work is doing now, overwritten by the next."""
    sys.stderr.write(f"\r\033[K{message}…")
    sys.stderr.flush()
