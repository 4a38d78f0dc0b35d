"""Where reports are printed: rich on a terminal, plain text everywhere else.

The reports are written in rich's console markup (`[bold]...[/]`, `\\[` for a literal bracket). A pipe, a
file or a CI log gets the same text with the markup removed, without importing rich: importing it costs
more than a cached `check` does.
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any, Protocol

# A markup tag, as rich reads one: "[" then a letter, "#", "/" or "@", then anything up to "]" without "[";
# the backslashes before it decide whether it is a tag (an even number) or literal text (odd).
_TAG = re.compile(r"(\\*)\[([a-z#/@][^\[\]]*)\]")


class Out(Protocol):
    def print(self, *objects: Any) -> None: ...


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """"1 change", "2 changes": a count as a reader says it (`plural` where adding "s" is wrong)."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def listed(items: list[str], most: int) -> str:
    """"a, b, c (+2 more)": the first `most` items, and how many were left out."""
    return ", ".join(items[:most]) + (f" (+{len(items) - most} more)" if len(items) > most else "")


def escape(text: str) -> str:
    """`text` as literal characters inside markup: whatever looks like a tag gets one more backslash."""
    text = _TAG.sub(lambda m: f"{m.group(1) * 2}\\[{m.group(2)}]", text)
    if text.endswith("\\") and not text.endswith("\\\\"):
        text += "\\"
    return text


def plain(markup: str) -> str:
    """The text `markup` shows: tags removed, escapes resolved (a backslash before any "[" escapes it)."""
    out = []
    pos = 0
    for m in _TAG.finditer(markup):
        out.append(markup[pos : m.start()].replace("\\[", "["))
        slashes = len(m.group(1))
        out.append("\\" * (slashes // 2))
        if slashes % 2:
            out.append(f"[{m.group(2)}]")
        pos = m.end()
    out.append(markup[pos:].replace("\\[", "["))
    return "".join(out)


class PlainOut:
    """Writes markup as plain lines; anything else (a rich Table) is rendered by rich, imported only then."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def print(self, *objects: Any) -> None:
        stream = self.stream or sys.stdout
        if all(isinstance(o, str) for o in objects):
            stream.write(" ".join(plain(o) for o in objects) + "\n")
            return
        from rich.console import Console

        Console(file=stream, highlight=False, soft_wrap=True, color_system=None).print(*objects)


def console(stream: IO[str] | None = None) -> Out:
    """rich's Console when the output is a terminal (colours, wrapping), else `PlainOut`."""
    target = stream or sys.stdout
    isatty = getattr(target, "isatty", None)
    if isatty is not None and isatty():
        from rich.console import Console

        return Console(file=stream, highlight=False, soft_wrap=True)
    return PlainOut(stream)
