"""Command line: options, output formats and exit codes. The work happens in the modules it calls.

Exit codes: 0 clean / done, 1 conflicts found (or no safe plan, or install refused), 2 error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from abiguard import __version__, ui

EXIT_OK, EXIT_CONFLICT, EXIT_ERROR = 0, 1, 2

_EPILOG = "exit codes: 0 no conflicts, 1 conflicts found, 2 error (bad arguments, unusable interpreter)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        ui.error(message, f"see `{self.prog} --help`")
        raise SystemExit(EXIT_ERROR)


def _add_format(p: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")) -> None:
    p.add_argument("--format", choices=choices, default="text", help="output format (default: text)")


def _add_python(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--python", metavar="PY",
        help="target interpreter or venv directory (default: $VIRTUAL_ENV, else the interpreter running abiguard)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="abiguard",
        description="Find and fix the binary (ABI) conflicts that `pip check` cannot see, such as NumPy 2 "
        "installed next to extension modules built for NumPy 1.x.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"abiguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser(
        "check",
        help="scan an environment's compiled binaries and report NumPy ABI conflicts",
        description="Read every shared object of the target environment (no import, no code run), learn which "
        "NumPy C-ABI it was built for, and report the distributions that break with the installed numpy; "
        "also reports unsatisfied declared requirements, like `pip check`.",
        epilog=_EPILOG,
    )
    _add_python(check)
    check.add_argument("--numpy", metavar="VER", help="judge against this numpy version instead of the installed one")
    check.add_argument(
        "--verify", nargs="?", const="affected", choices=("affected", "all"),
        help="also import modules in isolated subprocesses of the target: the affected ones, or all",
    )
    check.add_argument("--verify-timeout", type=float, default=30.0, metavar="S", help="seconds per import (30)")
    check.add_argument("--jobs", type=int, default=None, metavar="N", help="parallel imports (default: cores)")
    check.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    check.add_argument("-v", "--verbose", action="store_true", help="list every distribution and module")
    _add_format(check, ("text", "json"))
    check.set_defaults(func=_check)

    cons = sub.add_parser(
        "constraints",
        help="print a constraints file with the hidden ABI bounds of an environment",
        description="Print a constraints file (for `pip install -c` / `uv pip install -c`) that encodes the "
        "bounds the installed binaries put on numpy: `numpy<2` while a binary built for NumPy 1.x is "
        "installed, `numpy>=X.Y` for the highest floor of the binaries built for NumPy 2.",
        epilog="exit codes: 0 printed, 2 error",
    )
    _add_python(cons)
    cons.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    cons.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    cons.set_defaults(func=_constraints)
    return parser


def _constraints(args: argparse.Namespace) -> int:
    from abiguard.check import CheckError, check
    from abiguard.prevent.constraints import render

    try:
        report = check(args.python, use_cache=not args.no_cache)
    except CheckError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    text = render(report)
    if args.output:
        try:
            with open(args.output, "w") as fh:
                fh.write(text)
        except OSError as exc:
            ui.error(f"cannot write {args.output}: {exc.strerror}")
            return EXIT_ERROR
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from abiguard.check import CheckError, check

    show = args.format == "text" and ui.interactive()
    try:
        report = check(args.python, args.numpy, use_cache=not args.no_cache,
                       progress=ui.progress("scanning shared objects", show))
    except CheckError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    if args.verify:
        from abiguard.check import verify_findings
        from abiguard.verify import VerifyError

        try:
            report = verify_findings(report, everything=args.verify == "all", timeout=args.verify_timeout,
                                     jobs=args.jobs, progress=ui.progress("importing modules", show))
        except VerifyError as exc:
            ui.error(str(exc))
            return EXIT_ERROR
    if args.format == "json":
        from abiguard.report.json import check_document, dumps

        print(dumps(check_document(report)))
    else:
        from abiguard.report.text import console, render_check

        render_check(report, console(), verbose=args.verbose)
    return EXIT_CONFLICT if report.has_conflicts else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
