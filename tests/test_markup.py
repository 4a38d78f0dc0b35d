"""Plain output for pipes must show exactly what rich shows, without importing rich on the way."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from abiguard.report.markup import PlainOut, console, counted, escape, plain


def rich_plain(markup: str) -> str:
    buffer = io.StringIO()
    Console(file=buffer, highlight=False, soft_wrap=True, color_system=None, emoji=False).print(markup)
    return buffer.getvalue()


def texts() -> list[str]:
    """Paths, requirements and messages with brackets and backslashes, plus random ones."""
    fixed = ["pandas/_libs/lib.so", "numpy<2 [extra]", "arr[0]", "C:\\dir\\", "x \\[bold] y", "\\\\[bold]",
             "a\\", "[/]", "[#fff]", "[link=https://x]", "requires numpy>=1.21,<2; extra == 'x'"]
    rng = random.Random(7)
    pieces = ["[", "]", "\\", "a", "/", "#", "@", " ", "bold", "[/]", "[bold]", "=", "red"]
    return fixed + ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14))) for _ in range(3000)]


def test_escape_and_plain_agree_with_rich() -> None:
    for text in texts():
        assert escape(text) == rich_escape(text), text
        for markup in (f"[bold]{escape(text)}[/] and {escape(text)}", f"[cyan]{escape(text)}[/]"):
            assert plain(markup) + "\n" == rich_plain(markup), markup


def test_pipes_get_plain_text_terminals_get_rich() -> None:
    buffer = io.StringIO()
    out = console(buffer)
    assert isinstance(out, PlainOut)
    out.print(f"[bold red]broken[/]  {escape('x[1]')}")
    table = Table(title="t")
    table.add_column("a")
    table.add_row("[1]")
    out.print(table)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "broken  x[1]"
    assert "\x1b" not in buffer.getvalue() and any("[1]" in line for line in lines[1:])
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert isinstance(console(tty), Console)
    finally:
        os.close(master)
        os.close(slave)


def test_check_into_a_pipe_never_imports_rich(tmp_path: object) -> None:
    """Importing rich costs more than a cached check; a pipe (CI, `| grep`) must not pay for it."""
    code = ("import sys; from abiguard.cli import main; main(['check', '--python', sys.executable]);"
            "print('rich' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
    assert "distributions with compiled code" in proc.stdout


def test_counts_read_as_a_person_would_write_them() -> None:
    assert [counted(n, "change") for n in (0, 1, 2)] == ["0 changes", "1 change", "2 changes"]
    assert counted(1, "distribution needs", "distributions need") == "1 distribution needs"
    assert counted(3, "distribution needs", "distributions need") == "3 distributions need"
