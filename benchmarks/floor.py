"""The least a scan like abiguard's can cost in CPython: read the same bytes, search them once, decide nothing.

``benchmarks/run.py`` times it as ``python-floor`` beside ``check-uncached``, to say what bounds the uncached
check. Two steps:

``floor.py ranges ENVPY OUT``
    (untimed, imports abiguard) writes OUT: every RECORD of ENVPY's site-packages, and for every shared object
    below it the byte ranges abiguard searches in full (its read-only data, or only its symbol names when
    those show it uses no Python: R13).
``floor.py run OUT``
    (timed, stdlib only, a fresh interpreter each round) reads every RECORD, then the ranges, with ``pread`` in
    1 MiB pieces like abiguard, in forked workers (one per core, largest files dealt first), and makes ONE
    ``bytes.find`` pass over them. abiguard does strictly more: it probes the target interpreter, parses every
    header, makes two gate passes and more where NumPy is named, judges, and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PIECE = 1 << 20
SITE_DIRS = "import site, sys; print('\\n'.join([*site.getsitepackages(), site.getusersitepackages()]))"


def ranges(envpy: str, out: str) -> None:
    from abiguard.binary import _without_python, is_shared_object_name
    from abiguard.binary.formats import FileReader, FormatError, _merge, layout

    listed = subprocess.run([envpy, "-I", "-c", SITE_DIRS], capture_output=True, text=True, check=True).stdout
    sites = [s for s in listed.splitlines() if os.path.isdir(s)]
    records: list[str] = []
    files: list[tuple[str, list[tuple[int, int]]]] = []
    for site in sites:
        records += [os.path.join(site, e, "RECORD") for e in sorted(os.listdir(site)) if e.endswith(".dist-info")]
        for folder, _dirs, names in os.walk(site):
            for name in names:
                path = os.path.join(folder, name)
                if not is_shared_object_name(name) or os.path.islink(path):
                    continue
                try:
                    with FileReader(path) as reader:
                        lay = layout(reader)
                        searched = lay.symbols if _without_python(reader, lay) else lay.regions
                except (OSError, FormatError):
                    continue
                files.append((path, [(start, stop - start) for start, stop in _merge(searched)]))
    with open(out, "w") as fh:
        json.dump({"records": records, "files": files}, fh)
    total = sum(size for _path, spans in files for _start, size in spans)
    print(f"floor: {len(files)} shared objects, {total / 1e6:.1f} MB searched, {len(records)} RECORDs",
          file=sys.stderr)


def _search(files: list[tuple[str, list[tuple[int, int]]]]) -> int:
    found = 0
    for path, spans in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            for start, size in spans:
                pos, end = start, start + size
                while pos < end:
                    data = os.pread(fd, min(PIECE, end - pos), pos)
                    if not data:
                        break
                    found += data.find(b"umpy") >= 0
                    pos += len(data)
        finally:
            os.close(fd)
    return found


def run(spec_path: str) -> None:
    with open(spec_path) as fh:
        spec = json.load(fh)
    files = sorted(spec["files"], key=lambda f: -sum(size for _start, size in f[1]))
    jobs = os.cpu_count() or 1
    batches = [files[i :: jobs * 4] for i in range(jobs * 4)]
    if jobs > 1 and sys.platform.startswith("linux"):
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            pending = pool.map_async(_search, batches)
            _read_records(spec["records"])
            pending.get()
    else:
        _read_records(spec["records"])
        for batch in batches:
            _search(batch)


def _read_records(records: list[str]) -> None:
    for path in records:
        try:
            with open(path, encoding="utf-8") as fh:
                fh.read().split("\n")
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "ranges":
        ranges(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "run":
        run(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
