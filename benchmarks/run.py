"""Time `abiguard check` against its peers on one large real environment, in one run, and print ratios.

Measured on the ``large`` environment of ``benchmarks/build_env.py`` (built or reused first), every command
a fresh process, the commands alternated round-robin (the starting command rotates each round), one
warm-up round discarded, then the median of ``--repeats`` rounds (default 7, ``--quick``: 5):

==================  ===========================================================================
floor               ``ENVPY -I -c pass``: what starting the target interpreter costs
abiguard-start      ``abiguard --version``: abiguard's own start-up (informative, no target)
check-uncached      ``abiguard check --python ENVPY --no-cache`` (the page cache is warm)
check-cached        ``abiguard check --python ENVPY`` with a warm result cache (its own dir): nothing changed
                    since the last check, so its answer is recalled (``abiguard/recall.py``)
check-rebuilt       the same, its kept answer deleted before each run (its own cache dir): what a check
                    costs when something changed, rebuilt from the listing memo and the facts cache
check-unread        the same, also its listing memo and probe answer deleted (its own cache dir): every step
                    of check-uncached but reading the binaries, whose facts come from the warm facts cache.
                    Informative: it bounds how fast check-uncached could be with a scanner that cost nothing
python-floor        ``python -I benchmarks/floor.py run``: read the bytes check-uncached searches and every RECORD, in
                    forked workers, with ONE bytes.find pass and no decision. Informative: the least a CPython
                    scan of this environment can cost, so what bounds check-uncached (skipped, with a line
                    saying so, when the Python running this script cannot import abiguard)
pip-check           ``ENVPY -m pip check``
uv-pip-check        ``uv pip check --python ENVPY``
pipdeptree          ``pipdeptree --python ENVPY --warn fail`` (from a tool venv under the root)
==================  ===========================================================================

Plus, outside the rounds:

* one ``abiguard check --format json --no-cache`` for ``bytes_read`` / ``bytes_total`` and the counts, on the
  large and on the ``mixed`` environment (which must have findings);
* the brute-force alternative, importing every extension module of the environment, each in a fresh
  ``ENVPY -c "import MOD"``, 2 in parallel, 60 s timeout each. It takes ~30 minutes on 2 cores, so it runs
  ONCE over the full list and the result is stored in ``ROOT/large/import-all.json`` and reused while the
  environment is unchanged (``--redo-import-all`` measures again; ``--quick`` without a stored run imports
  every 10th module and extrapolates, marked so; ``--no-import-all`` skips it).

Peak memory is the child's ``ru_maxrss`` from ``os.wait4``, and CPU time its user plus system time from the
same call; both include the processes it waited for (abiguard's workers, the interpreters it started).
Results go to ``benchmarks/results/latest.json``. Not part of the test suite. Stdlib only.

Usage::

    python benchmarks/run.py [--quick] [--root DIR] [--repeats N] [--abiguard CMD]
                             [--no-import-all | --redo-import-all] [--strict]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_env  # a sibling script, not a package

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
FLOOR = Path(__file__).resolve().parent / "floor.py"

# (name, numerator, denominator, target, "<=" or ">=")
RATIOS: tuple[tuple[str, str, str, float, str], ...] = (
    ("check-uncached / pip-check", "check-uncached", "pip-check", 0.25, "<="),
    ("check-cached / floor", "check-cached", "floor", 3.0, "<="),
    ("import-all / check-uncached", "import-all", "check-uncached", 50.0, ">="),
)
# Informative ratios, without a target: (name, numerator, denominator).
BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("check-unread / pip-check", "check-unread", "pip-check"),
    ("python-floor / pip-check", "python-floor", "pip-check"),
    ("check-uncached / python-floor", "check-uncached", "python-floor"),
)
BYTES_TARGET = 0.35
PEAK_MB_TARGET = 200.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every measured process: as a user's, so without PYTHONDONTWRITEBYTECODE.

    With it set, every start recompiles whatever has no up-to-date .pyc (abiguard's sources, pip, pipdeptree),
    which would time the compiler rather than the tools. The warm-up round writes the caches.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


@dataclass
class Run:
    seconds: float
    returncode: int
    max_rss_kb: int
    cpu_seconds: float


@dataclass
class Command:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    fresh_cache: bool = False  # point ABIGUARD_CACHE_DIR at a new empty dir for each run
    ok_codes: tuple[int, ...] = (0,)
    before: Callable[[], None] | None = None  # run before each timed run, untimed
    runs: list[Run] = field(default_factory=list)


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[Run, str, str]:
    """Run `argv` once; wall time, exit code, and the peak RSS (KiB) and CPU time of it and the processes it
    waited for."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (Run(seconds, proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime),
                out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def drop_answers(cache_dir: str, *kinds: str) -> None:
    """Delete the answers `abiguard check` keeps for recall (and the other `kinds` of marshal files it keeps:
    "listing", "probe"), leaving its other caches warm."""
    for kind in ("answer", *kinds):
        for path in Path(cache_dir).glob(f"{kind}-*.marshal"):
            path.unlink()


def run_once(cmd: Command, scratch: Path) -> Run:
    env = dict(cmd.env or child_env())
    if cmd.fresh_cache:
        env["ABIGUARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="cache-", dir=scratch)
    if cmd.before is not None:
        cmd.before()
    run, _out, err = timed(cmd.argv, env, cwd=str(scratch))
    if run.returncode not in cmd.ok_codes:
        sys.exit(f"run.py: {cmd.name}: exit {run.returncode}: {shlex.join(cmd.argv)}\n{err[-3000:]}")
    if cmd.fresh_cache:
        shutil.rmtree(env["ABIGUARD_CACHE_DIR"], ignore_errors=True)
    return run


def measure(commands: list[Command], repeats: int, scratch: Path) -> None:
    """One warm-up round, then `repeats` rounds; each round runs every command once, rotating the order."""
    for rnd in range(repeats + 1):
        shift = rnd % len(commands)
        order = commands[shift:] + commands[:shift]
        for cmd in order:
            run = run_once(cmd, scratch)
            if rnd > 0:
                cmd.runs.append(run)
        label = "warm-up" if rnd == 0 else f"round {rnd}/{repeats}"
        print(f"  {label}: " + "  ".join(f"{c.name} {c.runs[-1].seconds:.3f}s" if c.runs else c.name
                                         for c in commands), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# tools


def floor_command(envpy: Path, scratch: Path) -> list[Command]:
    """The python-floor command, its byte ranges worked out first (untimed) by this Python's abiguard."""
    spec = scratch / "floor.json"
    done = subprocess.run([sys.executable, str(FLOOR), "ranges", str(envpy), str(spec)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"python-floor skipped: {sys.executable} cannot list the byte ranges ({last})", file=sys.stderr)
        return []
    print(done.stderr.strip(), file=sys.stderr)
    return [Command("python-floor", [sys.executable, "-I", str(FLOOR), "run", str(spec)])]


def abiguard_argv(given: str | None) -> list[str]:
    if given:
        return shlex.split(given)
    beside = Path(sys.executable).parent / "abiguard"
    found = str(beside) if beside.exists() else shutil.which("abiguard")
    if found is None:
        sys.exit("run.py: abiguard not found; pass --abiguard CMD (or run with the dev venv's python)")
    return [found]


def has_option(argv: list[str], option: str) -> bool:
    out = subprocess.run([*argv, "check", "--help"], capture_output=True, text=True)
    return option in out.stdout


def ensure_pip(python: Path, root: Path) -> None:
    if subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode != 0:
        subprocess.run([build_env.uv_binary(), "pip", "install", "--quiet", "--python", str(python), "pip"],
                       check=True, env=build_env.uv_env(root))


def ensure_pipdeptree(root: Path, base_python: str) -> Path:
    """pipdeptree in its own venv under the bench root (it inspects the target with --python)."""
    venv = root / "tools" / "venv"
    exe = venv / "bin" / "pipdeptree"
    if not exe.exists():
        uv, env = build_env.uv_binary(), build_env.uv_env(root)
        subprocess.run([uv, "venv", "--quiet", "--python", base_python, str(venv)], check=True, env=env)
        subprocess.run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
                        "pipdeptree"],
                       check=True, env=env)
    return exe


def source_fingerprint(abiguard: list[str]) -> str | None:
    """Hash of abiguard's installed Python sources, to notice when they change during a run."""
    script = Path(abiguard[0])
    try:
        first = script.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return None
    interpreter = first[2:].decode().strip().split()[0] if first.startswith(b"#!") else sys.executable
    out = subprocess.run([interpreter, "-c", "import abiguard, os; print(os.path.dirname(abiguard.__file__))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(out.stdout.strip()).rglob("*.py")):
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tool_version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


# ---------------------------------------------------------------------------------------------------------
# abiguard's JSON report


def check_json(abiguard: list[str], python: Path, scratch: Path, no_cache: bool) -> dict[str, Any]:
    env = child_env()
    argv = [*abiguard, "check", "--python", str(python), "--format", "json"]
    if no_cache:
        argv.append("--no-cache")
    else:
        env["ABIGUARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="cache-", dir=scratch)
    run, out, err = timed(argv, env, cwd=str(scratch))
    if run.returncode not in (0, 1):
        sys.exit(f"run.py: {shlex.join(argv)}: exit {run.returncode}\n{err[-3000:]}")
    try:
        doc: dict[str, Any] = json.loads(out)
    except ValueError:
        sys.exit(f"run.py: {shlex.join(argv)}: exit {run.returncode}, output is not JSON\n{out[:500]}{err[-3000:]}")
    summary = doc.get("summary", {})
    return {"seconds": round(run.seconds, 4), "exit": run.returncode, "peak_mb": round(run.max_rss_kb / 1024, 1),
            "summary": summary,
            "affected": sorted(f"{d['name']}=={d['version']} ({d['verdict']})" for d in doc.get("distributions", [])
                               if d.get("verdict") in ("broken", "at-risk"))}


def pip_check_flags(python: Path, affected: list[str]) -> dict[str, Any]:
    """Which of abiguard's affected distributions `pip check` names at all (it only sees declared bounds)."""
    out = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True,
                         env=child_env()).stdout
    flagged = {line.split()[0].lower().replace("_", "-") for line in out.splitlines() if line.strip()}
    names = [a.split("==")[0] for a in affected]
    return {"pip_check_lines": len(out.splitlines()),
            "affected_named_by_pip_check": sorted(n for n in names if n.lower().replace("_", "-") in flagged),
            "affected": len(names)}


# ---------------------------------------------------------------------------------------------------------
# brute force: import every extension module in its own interpreter

_PROBE = r"""
import importlib.machinery, json, sys, sysconfig
print(json.dumps({"site": sysconfig.get_paths()["purelib"], "platsite": sysconfig.get_paths()["platlib"],
                  "suffixes": importlib.machinery.EXTENSION_SUFFIXES}))
"""


def extension_modules(python: Path) -> list[str]:
    """Dotted names of every file with an extension-module suffix under site-packages, as a naive tool finds them.

    Directories whose names are not identifiers (``numpy.libs``, ``*.dist-info``) cannot hold importable
    modules and are skipped; plain libraries that happen to end in ``.so`` inside packages are kept (a
    brute-force importer cannot tell them apart without reading the binary).
    """
    info = json.loads(subprocess.run([str(python), "-I", "-c", _PROBE], check=True, capture_output=True,
                                     text=True).stdout)
    suffixes = sorted(info["suffixes"], key=len, reverse=True)
    names: set[str] = set()
    for site in {info["site"], info["platsite"]}:
        for dirpath, dirnames, filenames in os.walk(site):
            rel_dir = os.path.relpath(dirpath, site)
            parts = [] if rel_dir == "." else rel_dir.split(os.sep)
            dirnames[:] = [d for d in dirnames if d.isidentifier()]
            for fname in filenames:
                suffix = next((s for s in suffixes if fname.endswith(s)), None)
                if suffix is None:
                    continue
                stem = fname[: -len(suffix)]
                if stem.isidentifier() and all(p.isidentifier() for p in parts):
                    names.add(".".join([*parts, stem]))
    return sorted(names)


def import_one(python: Path, module: str, timeout: float, cwd: str) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([str(python), "-c", f"import {module}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, start_new_session=True,
                            env=child_env())
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        return "timeout", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return "ok", seconds
    if proc.returncode < 0:
        return "crashed", seconds
    text = err.decode(errors="replace")
    numpy_abi = ("compiled using NumPy 1.x" in text or "numpy.dtype size changed" in text
                 or "_ARRAY_API not found" in text or "multiarray failed to import" in text)
    return ("numpy-abi" if numpy_abi else "import-error"), seconds


def import_all(python: Path, modules: list[str], jobs: int, timeout: float, scratch: Path) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    failed: dict[str, str] = {}
    done = 0
    lock = threading.Lock()
    started = time.perf_counter()

    def work(mod: str) -> None:
        nonlocal done
        outcome, _s = import_one(python, mod, timeout, str(scratch))
        with lock:
            outcomes[outcome] += 1
            if outcome != "ok":
                failed[mod] = outcome
            done += 1
            if done % 100 == 0 or done == len(modules):
                print(f"  import-all: {done}/{len(modules)} in {time.perf_counter() - started:.0f}s "
                      f"{dict(outcomes)}", file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(work, modules))
    by_package = Counter(m.split(".")[0] for m in failed)
    return {"seconds": round(time.perf_counter() - started, 2), "modules": len(modules),
            "jobs": jobs, "timeout_s": timeout, "outcomes": dict(outcomes),
            "failed_by_top_level_package": dict(by_package.most_common()),
            "failed": dict(sorted(failed.items()))}


def import_all_cached(root: Path, python: Path, jobs: int, timeout: float, quick: bool, redo: bool,
                      scratch: Path) -> dict[str, Any]:
    """The brute-force baseline; a full run is stored under the root and reused while the env is unchanged.

    It takes half an hour on 2 cores, so one run per environment is what the ratio is based on; `--redo-import-all`
    measures again. A stored result says when it was measured (`measured_at`, `reused`).
    """
    stamp = (root / "large" / "stamp.json").read_text() + f"jobs={jobs} timeout={timeout}\n"
    store = root / "large" / "import-all.json"
    if not redo and store.exists():
        saved = json.loads(store.read_text())
        if saved.get("stamp") == stamp:
            print(f"\nimport-all: reusing the full run measured at {saved['result']['measured_at']} ({store}; "
                  "--redo-import-all measures again)", file=sys.stderr)
            return {**saved["result"], "reused": True}
    modules = extension_modules(python)
    sample = modules[::10] if quick else modules
    print(f"\nimport-all: {len(sample)} of {len(modules)} extension modules, {jobs} at a time, "
          f"{timeout:.0f}s timeout each", file=sys.stderr)
    result = import_all(python, sample, jobs, timeout, scratch)
    result["total_modules"] = len(modules)
    result["extrapolated"] = len(sample) != len(modules)
    result["estimated_seconds"] = round(result["seconds"] * len(modules) / max(len(sample), 1), 2)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["load_average_after"] = os.getloadavg()
    if not result["extrapolated"]:
        store.write_text(json.dumps({"stamp": stamp, "result": result}, indent=2) + "\n")
    return {**result, "reused": False}


# ---------------------------------------------------------------------------------------------------------
# report


def summarize(cmd: Command) -> dict[str, Any]:
    secs = [r.seconds for r in cmd.runs]
    return {"argv": cmd.argv, "runs": len(secs), "median_s": round(statistics.median(secs), 4),
            "min_s": round(min(secs), 4), "max_s": round(max(secs), 4),
            "all_s": [round(s, 4) for s in secs],
            "median_cpu_s": round(statistics.median(r.cpu_seconds for r in cmd.runs), 4),
            "peak_mb": round(max(r.max_rss_kb for r in cmd.runs) / 1024, 1),
            "exit_codes": sorted({r.returncode for r in cmd.runs})}


def verdict(value: float | None, target: float, op: str) -> str:
    if value is None:
        return "n/a"
    return "ok" if (value <= target if op == "<=" else value >= target) else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=build_env.DEFAULT_ROOT, help="bench root (see build_env.py)")
    parser.add_argument("--quick", action="store_true", help="5 rounds and import-all on every 10th module")
    parser.add_argument("--repeats", type=int, default=None, help="measured rounds (default 7, --quick 5)")
    parser.add_argument("--abiguard", default=None, help="command that runs abiguard (default: beside python)")
    parser.add_argument("--no-import-all", action="store_true", help="skip the brute-force import baseline")
    parser.add_argument("--redo-import-all", action="store_true",
                        help="measure the brute-force import again instead of reusing a stored full run")
    parser.add_argument("--import-jobs", type=int, default=2)
    parser.add_argument("--import-timeout", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 7)
    root = args.root.expanduser().resolve()

    print("environments:", file=sys.stderr)
    envs = build_env.ensure(root, ["large", "mixed"])
    build_env.print_summary(envs)
    large = next(e for e in envs if e.variant == "large")
    mixed = next(e for e in envs if e.variant == "mixed")
    envpy = Path(large.python)
    ensure_pip(envpy, root)
    pipdeptree = ensure_pipdeptree(root, build_env.default_python())
    abiguard = abiguard_argv(args.abiguard)
    uv = build_env.uv_binary()
    no_cache = has_option(abiguard, "--no-cache")

    fingerprint = source_fingerprint(abiguard)
    scratch = Path(tempfile.mkdtemp(prefix="abiguard-bench-"))
    try:
        warm_env = child_env(ABIGUARD_CACHE_DIR=str(scratch / "warm-cache"))
        check = [*abiguard, "check", "--python", str(envpy)]
        rebuilt_env = child_env(ABIGUARD_CACHE_DIR=str(scratch / "rebuilt-cache"))
        unread_env = child_env(ABIGUARD_CACHE_DIR=str(scratch / "unread-cache"))
        commands = [
            Command("floor", [str(envpy), "-I", "-c", "pass"]),
            Command("abiguard-start", [*abiguard, "--version"]),  # informative: abiguard's own start-up
            Command("check-uncached", [*check, "--no-cache"] if no_cache else check,
                    fresh_cache=not no_cache, ok_codes=(0, 1)),
            Command("check-cached", check, env=warm_env, ok_codes=(0, 1)),
            # Its kept answer removed before each run (a change would make it stale the same way, but would
            # also make check-cached's stale): the answer is rebuilt from the listing memo and the facts cache.
            Command("check-rebuilt", check, env=rebuilt_env, ok_codes=(0, 1),
                    before=lambda: drop_answers(rebuilt_env["ABIGUARD_CACHE_DIR"])),
            Command("check-unread", check, env=unread_env, ok_codes=(0, 1),
                    before=lambda: drop_answers(unread_env["ABIGUARD_CACHE_DIR"], "listing", "probe")),
            *floor_command(envpy, scratch),
            Command("pip-check", [str(envpy), "-m", "pip", "check"], ok_codes=(0, 1)),
            Command("uv-pip-check", [uv, "pip", "check", "--python", str(envpy)], ok_codes=(0, 1)),
            Command("pipdeptree", [str(pipdeptree), "--python", str(envpy), "--warn", "fail"], ok_codes=(0, 1)),
        ]
        print(f"\ntiming {len(commands)} commands, 1 warm-up + {repeats} rounds:", file=sys.stderr)
        measure(commands, repeats, scratch)

        print("\nabiguard JSON reports (uncached):", file=sys.stderr)
        report_large = check_json(abiguard, envpy, scratch, no_cache)
        report_mixed = check_json(abiguard, Path(mixed.python), scratch, no_cache)
        report_mixed["pip_check_flags"] = pip_check_flags(Path(mixed.python), report_mixed["affected"])
        load_average = os.getloadavg()
        source_changed = fingerprint is not None and source_fingerprint(abiguard) != fingerprint
        if source_changed:
            print("\nWARNING: abiguard's sources changed while it was measured; the figures mix versions. "
                  "Run again.", file=sys.stderr)

        imports: dict[str, Any] | None = None
        if not args.no_import_all:
            imports = import_all_cached(root, envpy, args.import_jobs, args.import_timeout, args.quick,
                                        args.redo_import_all, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    medians = {c.name: statistics.median(r.seconds for r in c.runs) for c in commands}
    if imports is not None:
        medians["import-all"] = imports["estimated_seconds"]

    def ratio(num: str, den: str) -> float | None:
        return medians[num] / medians[den] if num in medians and den in medians else None

    ratios: dict[str, Any] = {}
    for name, num, den, target, op in RATIOS:
        value = ratio(num, den)
        ratios[name] = {"value": None if value is None else round(value, 3), "target": f"{op} {target}",
                        "status": verdict(value, target, op)}
    for name, num, den in BOUNDS:
        value = ratio(num, den)
        ratios[name] = {"value": None if value is None else round(value, 3), "target": "-", "status": "info"}
    summary = report_large["summary"]
    bytes_ratio = (summary["bytes_read"] / summary["bytes_total"]
                   if summary.get("bytes_total") and "bytes_read" in summary else None)
    ratios["bytes read / bytes of shared objects"] = {
        "value": None if bytes_ratio is None else round(bytes_ratio, 4), "target": f"<= {BYTES_TARGET}",
        "status": verdict(bytes_ratio, BYTES_TARGET, "<=")}
    peak = max(max(r.max_rss_kb for r in c.runs) for c in commands if c.name.startswith("check")) / 1024
    peak = max(peak, report_large["peak_mb"], report_mixed["peak_mb"])
    ratios["abiguard peak MB"] = {"value": round(peak, 1), "target": f"< {PEAK_MB_TARGET:.0f}",
                                  "status": "ok" if peak < PEAK_MB_TARGET else "MISSED"}

    result = {
        "schema": 1,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_after_timing": [round(x, 2) for x in load_average]},
        "versions": {"abiguard": tool_version([*abiguard, "--version"]), "uv": tool_version([uv, "--version"]),
                     "pip": tool_version([str(envpy), "-m", "pip", "--version"]),
                     "pipdeptree": tool_version([str(pipdeptree), "--version"])},
        "environments": {e.variant: {k: v for k, v in vars(e).items() if k != "built_now"} for e in envs},
        "abiguard_source_sha256": fingerprint,
        "abiguard_source_changed_during_run": source_changed,
        "repeats": repeats,
        "bytecode_writing": "on (PYTHONDONTWRITEBYTECODE removed for measured processes)"
        if "PYTHONDONTWRITEBYTECODE" in os.environ else "on",
        "abiguard_no_cache_option": no_cache,
        "commands": {c.name: summarize(c) for c in commands},
        "check_json": {"large": report_large, "mixed": report_mixed},
        "import_all": imports,
        "ratios": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print_table(result, large)
    print(f"\nwritten: {args.output}", file=sys.stderr)
    missed = [k for k, v in ratios.items() if v["status"] == "MISSED"]
    return 1 if (args.strict and missed) else 0


def print_table(result: dict[str, Any], large: build_env.EnvSummary) -> None:
    load = result["machine"]["load_average_after_timing"]
    print(f"\nload average after the timing rounds: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {result['machine']['cores']} cores (other work on the machine skews the medians)")
    print(f"large env: {large.distributions} distributions, {large.shared_objects} shared objects, "
          f"{large.shared_object_bytes / 1e6:.0f} MB of them; {result['repeats']} rounds after a warm-up; "
          f"{result['machine']['cores']} cores")
    print(f"\n{'command':<16} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>7} {'peak MB':>8}  exit")
    for name, c in result["commands"].items():
        print(f"{name:<16} {c['median_s']:>9.3f} {c['min_s']:>8.3f} {c['max_s']:>8.3f} {c['median_cpu_s']:>7.3f} "
              f"{c['peak_mb']:>8.1f}  "
              f"{','.join(map(str, c['exit_codes']))}")
    imp = result["import_all"]
    if imp is not None:
        est = " (extrapolated)" if imp["extrapolated"] else ""
        est += f" (stored run of {imp['measured_at']})" if imp.get("reused") else ""
        print(f"{'import-all':<16} {imp['estimated_seconds']:>9.1f}  {imp['modules']} of {imp['total_modules']} "
              f"modules, run once{est}: {imp['outcomes']}")
    for variant, rep in result["check_json"].items():
        s = rep["summary"]
        print(f"check --format json ({variant}): {rep['seconds']:.3f}s, exit {rep['exit']}, "
              f"{s.get('binaries')} binaries, broken {s.get('broken')}, at-risk {s.get('at_risk')}, "
              f"unknown {s.get('unknown')}, declared {s.get('declared')}, "
              f"read {s.get('bytes_read', 0) / 1e6:.1f} of {s.get('bytes_total', 0) / 1e6:.1f} MB")
        pip = rep.get("pip_check_flags")
        if pip:
            named = pip["affected_named_by_pip_check"]
            print(f"  pip check on it names (for any reason) {len(named)} of the {pip['affected']} "
                  f"distributions abiguard flags: {', '.join(named) or 'none'}")
    print(f"\n{'ratio':<40} {'value':>9} {'target':>9}  status")
    for name, r in result["ratios"].items():
        value = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        print(f"{name:<40} {value:>9} {r['target']:>9}  {r['status']}")
    uncached = result["ratios"]["check-uncached / pip-check"]
    floor = result["ratios"]["python-floor / pip-check"]["value"]
    if uncached["status"] == "MISSED" and floor is not None:
        print(f"\nbound: reading the same bytes with one search pass and no decision (python-floor) already takes "
              f"{floor:.2f} x pip check; check-uncached takes {uncached['value']:.2f} x")
    if result["abiguard_source_changed_during_run"]:
        print("\nWARNING: abiguard's sources changed while it was measured; the figures mix versions.")


if __name__ == "__main__":
    raise SystemExit(main())
