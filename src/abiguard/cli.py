"""Command line: options, output formats and exit codes. The work happens in the modules it calls.

Exit codes: 0 clean / done, 1 conflicts found (or no safe plan, or install refused), 2 error (for `check` and
`lock-check` also what could not be checked, when nothing conflicts).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from abiguard import __version__, ui

if TYPE_CHECKING:
    from abiguard.fix.apply import ApplyResult
    from abiguard.fix.planner import Plan
    from abiguard.fix.resolver import Change
    from abiguard.model import CheckReport, TargetEnvironment
    from abiguard.report.markup import Out

EXIT_OK, EXIT_CONFLICT, EXIT_ERROR = 0, 1, 2

_EPILOG = ("exit codes: 0 no conflicts, 1 conflicts found (even with errors beside them), 2 error (bad arguments, "
           "unusable interpreter, a damaged install or a distribution that could not be read, output that could "
           "not be written), 130 interrupted")


def _seconds(text: str) -> float:
    """A timeout: a finite number above zero (`inf` would overflow the clock, `0` would time out at once)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0, e.g. 30")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least {minimum}")
        return value

    return whole


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width once: by default every argument added asks shutil for the
    terminal's, and importing shutil is a fifth of a cached check's start-up. A description or epilog keeps its
    line breaks (install's example, then its exit codes), each line wrapped on its own."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(super(_Formatter, self)._fill_text(line, width, indent) for line in text.splitlines())


@functools.cache
def _width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.stdout.fileno()).columns
    except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
        columns = 80
    return max(columns - 2, 20)


class _Writable(Protocol):
    def write(self, text: str, /) -> object: ...


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        ui.error(message, f"see `{self.prog} --help`")
        raise SystemExit(EXIT_ERROR)

    def _print_message(self, message: str, file: _Writable | None = None) -> None:
        """As argparse's, but a help text that could not be written is not swallowed: it is never exit 0."""
        if message:
            (file or sys.stderr).write(message)


_REPORT_FORMATS = ("text", "json", "sarif", "markdown")


def _add_format(p: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")) -> None:
    extra = (" (sarif: SARIF 2.1.0 for code scanning; markdown: for a CI job summary or a pull request comment)"
             if "sarif" in choices else "")
    p.add_argument("--format", choices=choices, default="text", help=f"output format (default: text){extra}")


def _add_python(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--python", metavar="PY",
        help="target interpreter or venv directory (default: $VIRTUAL_ENV, else the interpreter running abiguard)",
    )


def _add_no_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")


def _add_installer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--installer", choices=("uv", "pip"), default=None,
                   help="resolver and installer (default: uv when available, else pip)")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--python-version", metavar="X.Y", help="target Python (default: the one running abiguard)")
    p.add_argument("--platform", metavar="TAG", help="target wheel platform tag, e.g. manylinux_2_28_x86_64, "
                   "win_amd64, macosx_11_0_arm64 (default: this machine)")


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
        description="Read the shared objects of the target environment (no import, no code run): every one a "
        "RECORD lists, and unowned ones wherever something other than an installer puts them. Learn which NumPy "
        "C-ABI each was built for, and report the distributions that break with the installed numpy; also "
        "reports unsatisfied declared requirements, like `pip check`.",
        epilog=_EPILOG,
    )
    _add_python(check)
    check.add_argument("--numpy", metavar="VER", help="judge against this numpy version instead of the installed one")
    check.add_argument(
        "--verify", nargs="?", const="affected", choices=("affected", "all"),
        help="also import modules in isolated subprocesses of the target: the affected ones, or all",
    )
    check.add_argument("--verify-timeout", type=_seconds, default=30.0, metavar="S", help="seconds per import (30)")
    check.add_argument("--jobs", type=_at_least(1), default=None, metavar="N", help="parallel imports (default: cores)")
    check.add_argument(
        "--thorough", action="store_true",
        help="look for unowned shared objects in every directory of site-packages, also the ones installers made "
        "for headers, data and tests (slower on a large environment)",
    )
    _add_no_cache(check)
    check.add_argument("-v", "--verbose", action="store_true", help="list every distribution and module")
    _add_format(check, _REPORT_FORMATS)
    check.set_defaults(func=_check)

    insp = sub.add_parser(
        "inspect",
        help="NumPy ABI facts for wheels, shared objects, directories or releases on the index",
        description="Facts (built_for, min_numpy, producer, evidence) for local wheels, .so/.pyd/.dylib files, "
        "directories (recursively), or requirements on the index (`name==version`), read remotely with HTTP "
        "range requests instead of downloading whole wheels.",
        epilog="exit codes: 0 answered, 2 an error for at least one target (the others are still reported)",
    )
    insp.add_argument("targets", nargs="+", metavar="TARGET",
                      help="wheel, shared object, directory, or name[==version]")
    _add_target(insp)
    mode = insp.add_mutually_exclusive_group()
    mode.add_argument("--all-releases", action="store_true", help="one line per release of a project")
    mode.add_argument("--first-compatible", action="store_true",
                      help="find the lowest release whose wheel is compatible with --numpy (default 2)")
    mode.add_argument("--last-compatible", action="store_true",
                      help="find the newest release whose wheel is compatible with --numpy (required), e.g. "
                      "to go back to when a release needs a newer numpy than yours")
    insp.add_argument("--numpy", metavar="VER", help="judge the wheels against this numpy version")
    insp.add_argument("--sample", type=_at_least(0), metavar="K",
                      help="stop after K shared objects agree (faster; the output says it sampled); 0 reads all")
    insp.add_argument("--index-url", metavar="URL", help="package index (default: your pip/uv configuration)")
    insp.add_argument("--extra-index-url", action="append", default=[], metavar="URL", help="additional index")
    _add_no_cache(insp)
    insp.add_argument("-v", "--verbose", action="store_true", help="list every shared object")
    _add_format(insp)
    insp.set_defaults(func=_inspect)

    fix = sub.add_parser(
        "fix",
        help="plan (and with --apply, perform) the smallest repair of the ABI conflicts",
        description="Compute repair plans: downgrade numpy below the smallest ABI boundary that breaks nothing "
        "else, or upgrade each culprit to its first release built for the installed numpy that the installed "
        "packages depending on it accept (found by inspecting the index's wheels). Each plan is resolved by uv (or "
        "pip) over the whole environment and checked statically before it is offered. Without --apply nothing is "
        "changed.",
        epilog="exit codes: 0 fixed or nothing to do, 1 no safe plan (or the fix was rolled back), 2 error",
    )
    _add_python(fix)
    fix.add_argument("--strategy", choices=("auto", "downgrade", "upgrade", "mixed"), default="auto",
                     help="which repairs to consider (default: auto, all of them ranked): downgrade changes "
                     "numpy (below 2 for NumPy-1.x builds, up to the floor of a build that needs a newer one), "
                     "upgrade changes the broken distributions and holds numpy (to their first release built for "
                     "it, or back to their newest one when their build needs a newer numpy), mixed does both")
    _add_installer(fix)
    fix.add_argument("--apply", action="store_true", help="perform the best plan: snapshot, install, re-check, "
                     "and roll back on any failure")
    fix.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    fix.add_argument("--no-verify", action="store_true", help="after --apply, re-check statically but do not import")
    fix.add_argument("--index-url", metavar="URL", help="package index (default: your pip/uv configuration)")
    _add_no_cache(fix)
    _add_format(fix)
    fix.set_defaults(func=_fix)

    rb = sub.add_parser(
        "rollback",
        help="restore the environment from the last snapshot abiguard took",
        description="Restore the distributions the last `fix --apply` or guarded `install` changed, exactly as "
        "they were (file by file, offline), also after abiguard itself was killed mid-apply.",
        epilog="exit codes: 0 restored (or nothing to restore), 2 error",
    )
    _add_python(rb)
    _add_format(rb)
    rb.set_defaults(func=_rollback)

    inst = sub.add_parser(
        "install",
        help="guarded install: refuse an install that would create an ABI conflict",
        description="Resolve what `uv pip install ARGS` (or pip) would do over the whole environment, read the "
        "wheels that would land remotely, and judge them together with what stays installed. A clean result "
        "is installed (with a snapshot, re-checked, rolled back on failure); a conflict is refused with the "
        "distributions that would break and a safe alternative.",
        epilog="example: abiguard install -- \"numpy>=2\"\n"
        "exit codes: 0 installed (or nothing to do), 1 refused or rolled back, 2 error",
    )
    _add_python(inst)
    _add_installer(inst)
    inst.add_argument("--force", action="store_true", help="install even if it creates a conflict (warns first)")
    inst.add_argument("--dry-run", action="store_true", help="judge the install but do not perform it")
    _add_no_cache(inst)
    _add_format(inst)
    inst.add_argument("install_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                      help="requirements and options for the installer, after --")
    inst.set_defaults(func=_install)

    lock = sub.add_parser(
        "lock-check",
        help="check a lockfile or pinned requirements for ABI conflicts, without installing",
        description="Pick the wheel each entry of a pylock.toml, uv.lock or pinned requirements file would "
        "install on the target (by tags), read it remotely, and report conflicts exactly as `check` does. "
        "No environment is created and nothing is installed.",
        epilog="exit codes: 0 no conflicts, 1 conflicts found (also when some entries could not be checked), 2 "
        "error (bad arguments, unreadable lockfile, an entry that could not be checked, no network); notes (what is "
        "built at install) do not change it",
    )
    lock.add_argument("file", metavar="FILE", help="pylock.toml, pylock.NAME.toml, uv.lock or requirements.txt")
    _add_target(lock)
    lock.add_argument("--index-url", metavar="URL", help="index for entries that name no wheel (requirements)")
    _add_no_cache(lock)
    lock.add_argument("-v", "--verbose", action="store_true", help="list every distribution and module")
    _add_format(lock, _REPORT_FORMATS)
    lock.set_defaults(func=_lock_check)

    cons = sub.add_parser(
        "constraints",
        help="print a constraints file with the hidden ABI bounds of an environment",
        description="Print a constraints file (for `pip install -c` / `uv pip install -c`) that encodes the "
        "bounds the installed binaries put on numpy: `numpy<2` while a binary built for NumPy 1.x is "
        "installed, `numpy>=X.Y` for the highest floor of the binaries built for NumPy 2.",
        epilog="exit codes: 0 printed, 2 error (an unusable interpreter, bounds that no numpy satisfies, "
               "an unwritable FILE)",
    )
    _add_python(cons)
    cons.add_argument("-o", "--output", metavar="FILE",
                      help="write to FILE (replaced if it exists; nothing is written on error) instead of stdout")
    _add_no_cache(cons)
    _add_format(cons, ("text", "json"))
    cons.set_defaults(func=_constraints)
    for command in sub.choices.values():  # each command's own errors name its --help
        command.set_defaults(command_parser=command)
    return parser


def _inspect(args: argparse.Namespace) -> int:
    from abiguard.inspect import InspectError, InspectOptions, inspect_targets

    numpy = args.numpy if args.numpy or not args.first_compatible else "2"
    opts = InspectOptions(
        python_version=args.python_version, platform=args.platform, all_releases=args.all_releases,
        first_compatible=args.first_compatible, last_compatible=args.last_compatible, numpy=numpy,
        use_cache=not args.no_cache,
        index_url=args.index_url, extra_index_urls=tuple(args.extra_index_url), sample=args.sample,
    )
    show = args.format == "text" and ui.interactive()
    try:
        report = inspect_targets(args.targets, opts, progress=ui.progress("inspecting", show))
    except InspectError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    if args.format == "json":
        from abiguard.report.json import dumps, envelope

        print(dumps(envelope(**report.to_json())))
    else:
        from abiguard.report.inspect_text import render_inspect
        from abiguard.report.markup import console

        render_inspect(report, console(), verbose=args.verbose)
    return EXIT_ERROR if report.has_errors else EXIT_OK


def _probe(python: str | None) -> TargetEnvironment | None:
    from abiguard.sources.environment import EnvironmentError_, probe

    try:
        return probe(python)
    except EnvironmentError_ as exc:
        ui.error(str(exc))
        return None


def _fix(args: argparse.Namespace) -> int:
    from abiguard.fix import repair
    from abiguard.fix.resolver import ResolveError, choose_installer
    from abiguard.report.fix_text import render_plans
    from abiguard.report.markup import console
    from abiguard.sources.index import PackageIndexError

    env = _probe(args.python)
    if env is None:
        return EXIT_ERROR
    text = args.format == "text"
    log = ui.status if text and ui.interactive() else None
    try:
        current = repair.scan(env, use_cache=not args.no_cache)
        installer = choose_installer(args.installer, env)
        fixplan = repair.plan(current, strategy=args.strategy, installer=installer, use_cache=not args.no_cache,
                              index_url=args.index_url, log=log)
    except ResolveError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    except PackageIndexError as exc:  # no answer is not "no release": no plan can be trusted
        ui.error(f"the package index cannot answer: {exc}")
        return EXIT_ERROR
    out = console()
    applied = None
    if fixplan.nothing_to_do:
        code = EXIT_OK
        if text:
            out.print("No NumPy ABI conflicts: nothing to fix.")
    elif not fixplan.plans:
        code = EXIT_CONFLICT
        if text:
            render_plans(fixplan, out)
    else:
        if text:
            render_plans(fixplan, out)
        code = EXIT_OK
        if args.apply:
            applied, code = _apply(args, env, fixplan.plans[0], installer, out if text else None,
                                   repair.affected_names(fixplan.report))
    if not text:
        from abiguard.report.json import dumps, fix_document

        print(dumps(fix_document(fixplan, installer, applied)))
    return code


def _apply(args: argparse.Namespace, env: TargetEnvironment, chosen: Plan, installer: str,
           out: Out | None, affected: set[str]) -> tuple[ApplyResult | None, int]:
    from abiguard.fix import repair
    from abiguard.fix.apply import ApplyError, apply_changes
    from abiguard.report.markup import escape

    if not args.yes:
        if not sys.stdin.isatty():
            ui.error("--apply changes the environment and there is no terminal to confirm it",
                     "pass --yes to apply without asking")
            return None, EXIT_ERROR
        # the question goes to stderr: stdout is the report, a JSON document with --format json
        sys.stderr.write(f"Apply plan 1 ({chosen.strategy}) to {env.prefix}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:  # Ctrl-D: no answer is no
            sys.stderr.write("\n")
        answer = answer.strip().lower()
        if answer not in ("y", "yes"):
            ui.error("not applied")
            return None, EXIT_CONFLICT
    touched = repair.touched_names(chosen)
    index = ["--index-url", args.index_url] if args.index_url else []  # install from where the plan was made
    try:
        result = apply_changes(
            env, [*index, *chosen.pins()], touched=touched, installer=installer,
            # the imports that prove the fix: what changed, and what was broken before (after a numpy
            # downgrade, the culprit's modules rather than numpy's)
            after=lambda: repair.recheck(env, touched | affected, verify=not args.no_verify),
        )
    except ApplyError as exc:
        ui.error(str(exc))
        return None, EXIT_ERROR
    if out is not None:
        style = "green" if result.ok else "bold red"
        out.print(f"[{style}]{escape(result.message)}[/]")
        if result.output_tail and not result.ok:
            out.print(escape(result.output_tail))
    return result, (EXIT_OK if result.ok else EXIT_CONFLICT)


def _rollback(args: argparse.Namespace) -> int:
    from abiguard.fix.apply import ApplyError, rollback

    env = _probe(args.python)
    if env is None:
        return EXIT_ERROR
    try:
        result = rollback(env)
    except ApplyError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    if args.format == "json":
        from abiguard.report.json import dumps, envelope

        print(dumps(envelope(
            environment={"python": env.python_version, "executable": env.executable},
            ok=result.ok, restored=result.restored, message=result.message,
            snapshot=str(result.snapshot) if result.snapshot else None, notes=list(result.notes))))
    else:
        print(result.message)
        for note in result.notes:
            print(f"  note: {note}")
    return EXIT_OK if result.ok else EXIT_ERROR


def _install(args: argparse.Namespace) -> int:
    import shlex

    from abiguard.fix import repair
    from abiguard.fix.apply import ApplyError, apply_changes
    from abiguard.fix.inspector import IndexInspector
    from abiguard.fix.resolver import ResolveError, choose_installer
    from abiguard.model import Verdict
    from abiguard.prevent.install import (
        abiguard_command,
        alternatives,
        index_url,
        judge_install,
        recheck_new,
        resolve_failure,
        unmodelled_option,
    )
    from abiguard.report.explain import headline
    from abiguard.report.markup import console, escape
    from abiguard.sources.index import PackageIndexError, load_index_config

    pip_args = [a for a in args.install_args if a != "--"] if args.install_args[:1] == ["--"] else args.install_args
    if not pip_args:
        ui.error("nothing to install", 'put the requirements after --, e.g. abiguard install -- "numpy>=2"')
        return EXIT_ERROR
    refused_option = unmodelled_option(pip_args)
    if refused_option is not None:
        ui.error(refused_option)
        return EXIT_ERROR
    env = _probe(args.python)
    if env is None:
        return EXIT_ERROR
    text = args.format == "text"
    log = ui.status if text and ui.interactive() else None
    try:
        # the installer is told the indexes abiguard reads: one abiguard cannot read is the error to report,
        # before the installer fails on it in its own words
        load_index_config(index_url(pip_args))
        current = repair.scan(env, use_cache=not args.no_cache)
        installer = choose_installer(args.installer, env)
        inspector = IndexInspector(env, use_cache=not args.no_cache, index_url=index_url(pip_args))
        verdict = judge_install(current, pip_args, inspector, installer, log)
        safe = [] if verdict.safe else alternatives(current, verdict, inspector, installer, log)
    except ResolveError as exc:
        message, hint = resolve_failure(str(exc))
        ui.error(f"the installer cannot resolve this install: {message}", hint)
        return EXIT_ERROR
    except PackageIndexError as exc:
        ui.error(f"the package index cannot answer: {exc}",
                 "install reads the index given to the installer: abiguard install -- --index-url URL ARGS")
        return EXIT_ERROR
    out = console()
    chosen = ["--installer", args.installer] if args.installer else []  # so that the pasted command uses it too
    commands = [[*abiguard_command(), "install", "--python", env.executable, *chosen, "--", *a.args] for a in safe]
    ways = [{"args": list(a.args), "changes": [c.to_json() for c in a.changes], "command": command}
            for a, command in zip(safe, commands, strict=True)]
    doc: dict[str, object] = {
        "environment": {"python": env.python_version, "executable": env.executable},
        "installer": installer, "args": pip_args,
        "changes": [c.to_json() for c in verdict.changes], "problems": verdict.problems,
        "notes": list(verdict.notes),
        "alternative": ways[0] if ways else None, "alternatives": ways,
    }
    already = [f"{d.name} {d.version} ({d.verdict.value})" for d in current.report.distributions
               if d.verdict in (Verdict.BROKEN, Verdict.AT_RISK)]
    if text:
        out.print(escape(headline(current.report)))
        for c in verdict.changes:
            out.print(_change_line(c))
        for note in verdict.notes:
            out.print(f"  note: {escape(note)}")
        if already:
            out.print(f"  note: the environment already has ABI conflicts, which this install leaves as they are: "
                      f"{escape(', '.join(already))}; `abiguard fix` plans their repair")
    refused = not verdict.safe and (not args.force or args.dry_run)  # a dry run has nothing to force
    if not verdict.safe and text:
        out.print()
        out.print("[bold red]This install would break the environment:[/]")
        for name, why in verdict.problems.items():
            out.print(f"  {escape(name)}: {escape(why)}")
        for n, (alternative, command) in enumerate(zip(safe, commands, strict=True)):
            lead = "Safe alternative:" if n == 0 else "or:"
            out.print(f"{lead} [cyan]{escape(shlex.join(command))}[/]")
            for c in alternative.changes:
                out.print(_change_line(c))
        if not safe:
            out.print("No safe alternative found (tried moving what it breaks to releases built for that numpy, "
                      "and keeping numpy where those builds work).")
        if args.force and not args.dry_run:
            out.print("[bold yellow]--force: installing anyway.[/]")
    if not verdict.safe and args.force and not args.dry_run and not text:
        sys.stderr.write(f"abiguard: warning: --force: installing although it breaks {', '.join(verdict.problems)}\n")
    code = EXIT_CONFLICT if refused else EXIT_OK
    action = "refused" if refused else ("nothing-to-do" if not verdict.changes else
                                        ("dry-run" if args.dry_run else "installed"))
    if not refused and verdict.changes and not args.dry_run:
        touched = {c.name for c in verdict.changes}
        # only conflicts the install creates undo it; ones the environment already had are not its doing
        after = None if args.force else (lambda: recheck_new(current, use_cache=not args.no_cache))
        try:
            result = apply_changes(env, pip_args, touched=touched, installer=installer, after=after)
        except ApplyError as exc:
            ui.error(str(exc))
            return EXIT_ERROR
        doc["applied"] = {"ok": result.ok, "message": result.message, "restored": result.restored}
        if text:
            out.print(result.message)
        code = EXIT_OK if result.ok else EXIT_CONFLICT
        action = "installed" if result.ok else ("rolled-back" if result.restored else "failed")
    elif text and not verdict.changes:
        out.print("Nothing to install: the requirements are already satisfied.")
    elif text and args.dry_run:
        safe_words = "breaks nothing more" if already else "is safe"
        out.print("Dry run: nothing was installed." if refused or not verdict.safe
                  else f"Dry run: this install {safe_words}; nothing was installed.")
    doc["action"] = action
    if not text:
        from abiguard.report.json import dumps, envelope

        print(dumps(envelope(**doc)))
    return code


def _change_line(c: Change) -> str:
    from abiguard.report.markup import escape

    arrow = " -> " if c.old and c.new else ""
    words = [c.name, f"{c.old or ''}{arrow}{c.new or ''}", "(built at install)" if c.built else ""]
    return escape(f"  {c.kind:9} " + " ".join(w for w in words if w))


def _lock_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from abiguard.prevent.lockcheck import LockCheckError, lock_check

    path = Path(args.file)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        ui.error(f"no lockfile at {path}: it {what}")
        return EXIT_ERROR
    show = args.format == "text" and ui.interactive()
    try:
        report = lock_check(path, python_version=args.python_version, platform=args.platform,
                            use_cache=not args.no_cache, index_url=args.index_url,
                            progress=ui.progress("reading wheels", show))
    except LockCheckError as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    lines = None
    if args.format == "sarif":
        from abiguard.sources.lockfile import entry_lines

        lines = entry_lines(path)
    _render_check(report, args.format, args.verbose, lines)
    return _check_code(report)


def _check_code(report: CheckReport) -> int:
    """Conflicts (1) win; else anything that could not be checked, or a damaged install, is not a pass (2)."""
    if report.has_conflicts:
        return EXIT_CONFLICT
    return EXIT_ERROR if report.errors else EXIT_OK


def _render_check(report: CheckReport, fmt: str, verbose: bool, lines: dict[str, int] | None = None) -> None:
    """`lines`: for a lockfile, where each distribution is pinned (SARIF points there)."""
    if fmt == "json":
        from abiguard.report.json import check_document, dumps

        print(dumps(check_document(report)))
    elif fmt == "sarif":
        from abiguard.report.json import dumps
        from abiguard.report.sarif import sarif_document

        print(dumps(sarif_document(report, lines)))
    elif fmt == "markdown":
        from abiguard.report.markdown import render_markdown

        sys.stdout.write(render_markdown(report))
    else:
        from abiguard.report.markup import console
        from abiguard.report.text import render_check

        render_check(report, console(), verbose=verbose)


def _constraints(args: argparse.Namespace) -> int:
    from abiguard.check import CheckError, check
    from abiguard.prevent.constraints import ConstraintsError, constraints, render

    try:
        report = check(args.python, use_cache=not args.no_cache)
        if args.format == "json":
            from abiguard.report.json import dumps, envelope

            env = report.environment
            text = dumps(envelope(
                environment={"python": env.python_version, "executable": env.executable,
                             "numpy_installed": report.numpy_installed},
                **constraints(report).to_json())) + "\n"
        else:
            text = render(report)
    except (CheckError, ConstraintsError) as exc:
        ui.error(str(exc))
        return EXIT_ERROR
    if args.output and args.output != "-":
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
    if args.verify or args.no_cache:
        return _run_check(args)
    from abiguard.recall import Recorder

    with Recorder(args.argv) as recorder:
        code = _run_check(args)
        recorder.keep(code)
    return code


def _run_check(args: argparse.Namespace) -> int:
    from abiguard.check import CheckError, check

    show = args.format == "text" and ui.interactive()
    try:
        report = check(args.python, args.numpy, use_cache=not args.no_cache,
                       progress=ui.progress("scanning shared objects", show), thorough=args.thorough)
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
    _render_check(report, args.format, args.verbose)
    return _check_code(report)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so that the hint names its --help
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        hint = " (installer options go after --)" if args.command == "install" else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    args.argv = argv  # what `recall` keys a check's answer on
    if not getattr(args, "func", None):  # no command: a usage error, said where errors go
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:
        ui.error(f"interrupted: {exc}" if str(exc) else "interrupted")
        return 128 + int(getattr(exc, "signum", 2))  # 130 for Ctrl-C, 143 for SIGTERM (fix.apply.Interrupted)
    except OSError as exc:
        if not ui.lost_write(exc):
            raise
        return ui.output_lost(exc)
