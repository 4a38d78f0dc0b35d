"""NumPy marker rules, on extension modules compiled in the session against real numpy headers.

Every expectation below was also checked at run time (importing the module under numpy 1.26.4, 2.0.2 and
2.4.6): a module whose `min_numpy` is above the running numpy fails with "module was compiled against NumPy
C-API version", a numpy1 module fails under numpy 2, and the rest import.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from packaging.version import Version

from abiguard.binary import inspect_bytes, inspect_path
from abiguard.binary.numpy import NumpyFacts, classify
from abiguard.model import BinaryFacts, BuiltFor, Producer, Verdict
from abiguard.rules.numpy import judge
from tests.conftest import NumpyModuleFactory
from tests.support.build import compile_extension, plain_extension, ufunc_extension

needs_headers = pytest.mark.network  # numpy headers come from numpy wheels (cached after the first run)


def markers(facts: BinaryFacts) -> set[str]:
    return {e.marker for e in facts.evidence}


# (numpy headers, NPY_TARGET_VERSION) -> (built_for, min_numpy). The floors follow numpyconfig.h: the
# default target is NPY_1_19 for headers 2.0, NPY_1_21 for 2.1-2.2 and NPY_1_23 for 2.3-2.4, and a target
# is reported as the first release of its C-API version (1.21 -> "1.20", 2.2 -> "2.1").
BUILDS = [
    ("1.26.4", None, BuiltFor.NUMPY1, None),
    ("2.0.2", None, BuiltFor.NUMPY2, "1.16"),
    ("2.0.2", "NPY_1_21_API_VERSION", BuiltFor.NUMPY2, "1.20"),
    ("2.0.2", "NPY_2_0_API_VERSION", BuiltFor.NUMPY2, "2.0"),
    ("2.2.6", None, BuiltFor.NUMPY2, "1.20"),
    ("2.2.6", "NPY_1_22_API_VERSION", BuiltFor.NUMPY2, "1.22"),
    ("2.2.6", "NPY_2_0_API_VERSION", BuiltFor.NUMPY2, "2.0"),
    ("2.3.5", None, BuiltFor.NUMPY2, "1.23"),
    ("2.4.6", None, BuiltFor.NUMPY2, "1.23"),
    ("2.4.6", "NPY_1_25_API_VERSION", BuiltFor.NUMPY2, "1.25"),
    ("2.4.6", "NPY_2_2_API_VERSION", BuiltFor.NUMPY2, "2.1"),
    ("2.4.6", "NPY_2_4_API_VERSION", BuiltFor.NUMPY2, "2.4"),
]


@needs_headers
@pytest.mark.parametrize(("numpy", "target", "built_for", "min_numpy"), BUILDS)
def test_compiled_extension(
    numpy_module: NumpyModuleFactory, numpy: str, target: str | None, built_for: BuiltFor, min_numpy: str | None
) -> None:
    facts = inspect_path(numpy_module(numpy, target))
    assert facts.format == "elf"
    assert (facts.built_for, facts.min_numpy, facts.producer) == (built_for, min_numpy, Producer.C_API)
    assert facts.reason is None
    if built_for is BuiltFor.NUMPY1:
        assert {"R4", "R4a"} <= markers(facts) and "R1" not in markers(facts)
    else:
        assert {"R1", "R2"} <= markers(facts)
        r2 = next(e for e in facts.evidence if e.marker == "R2")
        assert r2.text.endswith(f"(NumPy {min_numpy})")
    # Evidence offsets point at the matched bytes in the file.
    data = Path(numpy_module(numpy, target)).read_bytes()
    for e in facts.evidence:
        assert data[e.offset : e.offset + len(e.text)].decode("latin-1") == e.text
    # Only headers and read-only data were read, not the whole file.
    assert 0 < facts.bytes_read < facts.size * 0.4


@needs_headers
def test_plain_module_is_none(plain_module: Path) -> None:
    facts = inspect_path(plain_module)
    assert (facts.format, facts.built_for, facts.producer, facts.evidence) == ("elf", BuiltFor.NONE, None, ())


@needs_headers
@pytest.mark.parametrize(("numpy", "built_for", "min_numpy"), [
    ("1.26.4", BuiltFor.NUMPY1, None), ("2.0.2", BuiltFor.NUMPY2, "1.16"), ("2.2.6", BuiltFor.NUMPY2, "1.20"),
])
def test_shared_library_classified_like_an_extension(
    numpy_module: NumpyModuleFactory, numpy_shared_library: NumpyModuleFactory, numpy: str,
    built_for: BuiltFor, min_numpy: str | None,
) -> None:
    lib = inspect_path(numpy_shared_library(numpy))
    ext = inspect_path(numpy_module(numpy))
    assert (lib.built_for, lib.min_numpy, lib.producer) == (built_for, min_numpy, Producer.C_API)
    assert (lib.built_for, lib.min_numpy) == (ext.built_for, ext.min_numpy)


MARKER_LITERALS = ('__attribute__((used)) const char np_markers[] = "numpy._core._multiarray_umath\\0_ARRAY_API\\0'
                   'module was compiled against NumPy C-API version 0x%x (NumPy 1.23)";')


def test_r13_library_that_never_calls_python(built_dir: Path) -> None:
    """NumPy's text in a library that uses no Python symbol (like LLVM's or GDAL's) decides nothing (R13).

    Compiled twice from the same literals: as a plain C library, and as a Python module. Only the module is
    judged by its markers, and the library costs its symbol names, not its data.
    """
    library = inspect_path(compile_extension("nopy", MARKER_LITERALS + "\nint nopy(void) { return 1; }\n",
                                             built_dir, filename="libnopy.so"))
    assert (library.built_for, library.evidence) == (BuiltFor.NONE, ())
    assert "R13" in (library.reason or "")
    module = inspect_path(plain_extension("withpy", built_dir, body=MARKER_LITERALS))
    assert (module.built_for, module.min_numpy) == (BuiltFor.NUMPY2, "1.23")
    assert library.bytes_read < module.bytes_read


def test_python_symbol_names_are_told_apart_from_names_that_merely_hold_py() -> None:
    """R13's test of a symbol-name table: a name starting "Py", "_Py" (Mach-O) or "__Py", nothing else."""
    from abiguard.binary.numpy import uses_python

    for names in (b"\0PyFloat_Type\0", b"\0malloc\0_PyObject_New\0", b"\0__PyArg_Parse\0", b"x\0Py"):
        assert uses_python(names), names
    for names in (b"\0___Py_x\0", b"\0copy_Py\0", b"\0numpyPy\0", b"\0yP\0", b"", b"\0_Z3fooPyv\0"):
        assert not uses_python(names), names


@needs_headers
@pytest.mark.parametrize(("numpy", "built_for"), [("1.26.4", BuiltFor.NUMPY1), ("2.2.6", BuiltFor.NUMPY2)])
def test_ufunc_only_module(built_dir: Path, numpy: str, built_for: BuiltFor) -> None:
    """import_umath() alone: no array-API version check (no R2/R4a), but R1/R4 with `_UFUNC_API` decide.

    Checked at run time: the 1.26.4 build fails under numpy 2 ("numpy.core.umath failed to import"), the
    2.2.6 build imports under 1.26.4, hence no floor.
    """
    facts = inspect_path(ufunc_extension("uf_" + numpy.replace(".", "_"), numpy, built_dir))
    assert (facts.built_for, facts.min_numpy, facts.producer) == (built_for, None, Producer.C_API)


@needs_headers
@pytest.mark.skipif(shutil.which("strip") is None, reason="binutils strip not installed")
def test_stripped_module_keeps_its_markers(numpy_module: NumpyModuleFactory, tmp_path: Path) -> None:
    """strip removes symbols, not .rodata (research note, Pitfalls)."""
    stripped = tmp_path / "stripped.so"
    shutil.copy(numpy_module("2.2.6"), stripped)
    subprocess.run(["strip", "--strip-all", str(stripped)], check=True)
    facts = inspect_path(stripped)
    assert (facts.built_for, facts.min_numpy) == (BuiltFor.NUMPY2, "1.20")


@needs_headers
def test_module_without_section_table_falls_back_to_segments(numpy_module: NumpyModuleFactory) -> None:
    """sstrip-style files have no section headers; the read-only PT_LOAD segments still hold .rodata."""
    data = bytearray(numpy_module("1.26.4").read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    facts = inspect_bytes(bytes(data))
    assert (facts.built_for, facts.producer) == (BuiltFor.NUMPY1, Producer.C_API)
    assert facts.bytes_read < len(data)


# ------------------------------------------------------------------------------------------------------------
# The decision order, on literal bytes as compilers lay them out (NUL-terminated C strings).

C2 = b"\0numpy._core._multiarray_umath\0numpy.core._multiarray_umath\0_ARRAY_API\0"
C2_R2 = b"module was compiled against NumPy C-API version 0x%x (NumPy 1.20) but the running NumPy\0"
C1 = b"\0numpy.core._multiarray_umath\0_ARRAY_API\0"
C1_R4A = b"module compiled against API version 0x%x but this version of numpy is 0x%x\0"
PYBIND_INTERNALS = b"__pybind11_internals_v4_gcc_libstdcpp_cxxabi1014__\0"
PYBIND = PYBIND_INTERNALS + b"pybind11 numpy support requires numpy >= 1.7.0\0"


def decide(*parts: bytes) -> tuple[BuiltFor, str | None, Producer | None]:
    facts = classify([(0x1000, b"".join(parts))])
    return facts.built_for, facts.min_numpy, facts.producer


def test_c_level_markers_decide_before_run_time_pickers() -> None:
    # pybind11 >= 2.12 would be fine with both, but a C-level import from 1.x headers fails under NumPy 2.
    r3 = b"FAILURE obtaining numpy _ARRAY_API pointer.\0"
    assert decide(PYBIND, r3, C1, C1_R4A) == (BuiltFor.NUMPY1, None, Producer.PYBIND11_NEW)
    assert decide(PYBIND, r3, C2, C2_R2) == (BuiltFor.NUMPY2, "1.20", Producer.PYBIND11_NEW)
    assert decide(PYBIND, r3, b"\0_ARRAY_API\0numpy._core\0numpy.core\0") == (
        BuiltFor.NUMPY2, None, Producer.PYBIND11_NEW)


def test_pybind11_before_2_12() -> None:
    old = b"\0numpy.core.multiarray\0_ARRAY_API\0"
    assert decide(PYBIND, old) == (BuiltFor.NUMPY1, None, Producer.PYBIND11_OLD)
    # The module name must be a whole C string: a longer literal is something else.
    assert decide(PYBIND, b"\0numpy.core.multiarray_tests\0_ARRAY_API\0")[0] is BuiltFor.UNKNOWN
    # pybind11 without its numpy.h, next to numpy's own C-API: the C-API decides the producer.
    assert decide(PYBIND_INTERNALS, C2, C2_R2) == (BuiltFor.NUMPY2, "1.20", Producer.C_API)
    assert decide(PYBIND_INTERNALS) == (BuiltFor.NONE, None, None)


def test_pybind11_before_2_12_with_numpys_own_import_fails_instead_of_misbehaving() -> None:
    """pybind11 < 2.12 alone imports under NumPy 2 (at-risk); next to a C-level `import_array()` from 1.x
    headers the import itself fails (scipy 1.11's `_distance_pybind` does this), so the verdict is broken."""
    alone = classify([(0x1000, PYBIND + b"\0numpy.core.multiarray\0_ARRAY_API\0")])
    both = classify([(0x1000, PYBIND + b"\0numpy.core.multiarray\0" + C1 + C1_R4A)])
    assert alone.producer is both.producer is Producer.PYBIND11_OLD
    numpy2 = Version("2.0.2")
    assert judge(as_facts(alone), numpy2)[0] is Verdict.AT_RISK
    assert judge(as_facts(both), numpy2)[0] is Verdict.BROKEN
    assert judge(as_facts(both), Version("1.26.4"))[0] is Verdict.OK


def as_facts(found: NumpyFacts) -> BinaryFacts:
    return BinaryFacts("elf", found.built_for, found.min_numpy, found.producer, found.evidence, found.reason)


def test_module_names_without_the_c_api_are_python_level_imports() -> None:
    """`numpy.core._multiarray_umath` alone is also the 2.x fallback name and a plain Python import."""
    assert decide(b"\0numpy.core._multiarray_umath\0") == (BuiltFor.NONE, None, None)
    assert decide(b"\0numpy._core._multiarray_umath\0") == (BuiltFor.NONE, None, None)
    assert decide(b"\0numpy._core._multiarray_umath\0_UFUNC_API\0")[0] is BuiltFor.NUMPY2
    assert decide(b"\0numpy.core._multiarray_umath\0_UFUNC_API\0")[0] is BuiltFor.NUMPY1


def test_r4a_and_r4b_alone_mean_numpy1_headers() -> None:
    assert decide(b"\0", C1_R4A)[0] is BuiltFor.NUMPY1
    assert decide(b"\0_ARRAY_API not found\0")[0] is BuiltFor.NUMPY1


def test_mixed_headers_keep_numpy2_with_a_note() -> None:
    facts = classify([(0, C2 + C2_R2 + C1_R4A)])
    assert (facts.built_for, facts.min_numpy) == (BuiltFor.NUMPY2, "1.20")
    assert facts.reason is not None and "NumPy 1.x header" in facts.reason


def test_cython_python_level_markers() -> None:
    r6 = b"\0numpy.core.multiarray failed to import\0numpy.core.umath failed to import\0cython_runtime\0"
    assert decide(r6) == (BuiltFor.NUMPY1, None, Producer.CYTHON)
    r7 = b"\0numpy._core.multiarray failed to import\0_cython_3_0_11\0"
    assert decide(r7) == (BuiltFor.NUMPY2, None, Producer.CYTHON)
    assert decide(r6, r7)[0] is BuiltFor.NUMPY2
    # Cython 3's auto-generated import messages appear in both kinds of build and decide nothing.
    auto = (b"numpy.core.multiarray failed to import (auto-generated because you didn't call "
            b"'numpy.import_array()' after cimporting numpy\0numpy.core.umath failed to import "
            b"(auto-generated by @cython.ufunc)\0")
    assert decide(auto)[0] is BuiltFor.NONE
    assert decide(auto, C2, C2_R2) == (BuiltFor.NUMPY2, "1.20", Producer.C_API)


def test_markers_back_to_back_without_nul() -> None:
    """Cython 3 string tables and Rust put literals side by side (pyarrow 14: `dateutil.relativnumpy.core...`)."""
    assert decide(b"dateutil.relativnumpy._core._multiarray_umath_ARRAY_API")[0] is BuiltFor.NUMPY2
    assert decide(b"dateutil.relativnumpy.core._multiarray_umath_ARRAY_API")[0] is BuiltFor.NUMPY1


def test_highest_r2_target_wins() -> None:
    """One binary can link objects built with different targets; the highest floor applies."""
    low = b"module was compiled against NumPy C-API version 0x%x (NumPy 1.16) but\0"
    high = b"module was compiled against NumPy C-API version 0x%x (NumPy 2.0) but\0"
    facts = classify([(0, C2 + low), (0x9000, high + low)])
    assert facts.min_numpy == "2.0"
    r2 = next(e for e in facts.evidence if e.marker == "R2")
    assert r2.offset == 0x9000 and "(NumPy 2.0)" in r2.text


def test_f2py_producer() -> None:
    f2py = b"This module 'm' is auto-generated with f2py (version:1.26.0).\0"
    assert decide(C1, C1_R4A, f2py) == (BuiltFor.NUMPY1, None, Producer.F2PY)


def test_rust_numpy() -> None:
    """rust-numpy >= 0.22 picks numpy._core/numpy.core at run time; older ones hard-code numpy.core."""
    common = b"_ARRAY_APIFailed to access NumPy array API capsule_RUST_NUMPY_BORROW_CHECKING_API"
    new = classify([(0, common + b"numpy.libNumpyVersionmajornumpy.corenumpy._core.multiarray")])
    assert (new.built_for, new.min_numpy) == (BuiltFor.NUMPY2, None)
    old = classify([(0, common + b"numpy.core.multiarraynumpy.core.umath")])
    assert old.built_for is BuiltFor.NUMPY1 and old.reason is not None and "rust-numpy" in old.reason
    assert (new.producer, old.producer) == (Producer.RUST_NUMPY_NEW, Producer.RUST_NUMPY_OLD)


def test_old_bindings_under_numpy2_are_at_risk_not_broken() -> None:
    """They import under NumPy 2 and then read 1.x structures: wrong results, not an import error."""
    from packaging.version import Version

    from abiguard.model import BinaryFacts, Verdict
    from abiguard.rules.numpy import judge

    for producer in (Producer.PYBIND11_OLD, Producer.RUST_NUMPY_OLD):
        facts = BinaryFacts("elf", BuiltFor.NUMPY1, None, producer)
        assert judge(facts, Version("2.0.2"))[0] is Verdict.AT_RISK
        assert judge(facts, Version("1.26.4"))[0] is Verdict.OK
    assert judge(BinaryFacts("elf", BuiltFor.NUMPY1, None, Producer.CYTHON), Version("2.0.2"))[0] is Verdict.BROKEN


@needs_headers
@pytest.mark.parametrize("numpy", ["2.0.0rc1", "2.0.0b1", "2.0.0.dev0", "2.0.0rc2"])
def test_a_numpy_pre_release_has_the_abi_of_its_release(numpy_module: NumpyModuleFactory, numpy: str) -> None:
    """numpy 2.0.0rc1 already has NumPy 2's C-API, though it sorts before 2: a NumPy-1.x build breaks under it,
    and a build that needs NumPy >= 2.0 works with it."""
    from packaging.version import Version

    from abiguard.model import Verdict
    from abiguard.rules.numpy import judge

    old = inspect_path(numpy_module("1.26.4", None))
    floor = inspect_path(numpy_module("2.0.2", "NPY_2_0_API_VERSION"))
    assert judge(old, Version(numpy))[0] is Verdict.BROKEN
    assert judge(floor, Version(numpy)) == (Verdict.OK, None)
    assert judge(old, Version("1.26.4"))[0] is Verdict.OK and judge(floor, Version("1.26.4"))[0] is Verdict.BROKEN


def test_c_api_name_without_a_version_marker_is_unknown() -> None:
    facts = classify([(0, b"\0_ARRAY_API\0")])
    assert facts.built_for is BuiltFor.UNKNOWN and facts.reason and "no marker" in facts.reason


def test_numpy_itself() -> None:
    facts = classify([(0, C2 + C2_R2)], numpy_itself=True)
    assert (facts.built_for, facts.reason) == (BuiltFor.NONE, "part of numpy itself (R0)")


def test_prefilter_admits_every_marker() -> None:
    """The cheap per-chunk test must not hide a marker that sits in a chunk of its own, and every marker that
    is looked for at its anchor's occurrences must have one."""
    from abiguard.binary import numpy as fam

    literals = [needle for _m, needle in fam._FIXED] + [fam.RUST_NUMPY_SWITCH, fam.RUST_NUMPY_OLD_MODULE]
    literals += [b"module was compiled against NumPy C-API version 0x%x (NumPy 2.0)",
                 b"numpy.core.umath failed to import", b"numpy._core.umath failed to import",
                 b"is auto-generated with f2py (version:2.1.3)"]
    for literal in literals:
        assert any(token in literal for token in fam._GATE) or literal.startswith(fam._PREFIXES[fam.R8]), literal
    assert all(fam._anchor(needle)[0] is not None for _m, needle in fam._FIXED_ANCHORED)
    assert [p for p, prefix in fam._PREFIXES.items() if fam._ANCHOR_OF[prefix][0] is None] == [fam.R8]
    assert fam._ANCHOR_OF[fam._PREFIXES[fam.R9]] == (fam._CYTHON, 1)
    assert fam._ANCHOR_OF[fam.CYTHON_RUNTIME] == (fam._CYTHON, 0)


@pytest.mark.parametrize("copies", [1, 5000])
def test_markers_found_at_anchors_as_by_a_full_search(copies: int) -> None:
    """Anchored tests find the same first offsets as a pass per marker, also past the anchor cap, and never a
    marker that starts at or after `stop` (the next chunk's)."""
    from abiguard.binary import numpy as fam

    noise = b"numpy.thing\0_API_x\0NumPy\0cython_x\0" * copies
    data = noise + b"numpy._core._multiarray_umath\0_ARRAY_API\0module was compiled against NumPy C-API version " \
        b"0x%x (NumPy 1.23)\0_cython_3_0_11\0cython_runtime\0" + noise + b"numpy.core.multiarray failed to import\0"
    stop = data.rindex(b"numpy.core.multiarray failed")
    hits = fam.Hits()
    assert fam.search(hits, 100, data, stop)
    assert {m: e.offset for m, e in hits.found.items()} == {
        "R1": 100 + data.index(b"numpy._core._multiarray_umath"), "api": 100 + data.index(b"_ARRAY_API"),
        "R2": 100 + data.index(b"module was compiled"), "R9": 100 + data.index(b"_cython_3_0_11"),
        "cython": 100 + data.index(b"cython_runtime"),
    }
    assert hits.min_numpy == (1, 23)
    whole = fam.Hits()
    fam.search(whole, 100, data)
    assert "R6" in whole


@needs_headers
def test_many_files_are_inspected_in_worker_processes_with_the_same_answers(
    numpy_module: NumpyModuleFactory, plain_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An uncached scan of many files uses a process pool on multi-core Linux; the facts must not change."""
    from abiguard import scan

    sources = [numpy_module("1.26.4"), numpy_module("2.0.2"), numpy_module("2.4.6", "NPY_2_0_API_VERSION"),
               plain_module]
    paths = []
    for i in range(40):
        copy = tmp_path / f"m{i}.so"
        copy.write_bytes(sources[i % len(sources)].read_bytes())
        paths.append(str(copy))
    seen: list[tuple[int, int]] = []
    serial = scan.inspect_all(paths, set(), use_cache=False)
    monkeypatch.setattr(scan, "POOL_MIN_FILES", 8)
    monkeypatch.setattr(scan, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(scan, "LOOKUP_STEP", 10)
    pooling = scan.Scanner(use_cache=False, progress=lambda d, t: seen.append((d, t)))
    pooling.add(paths[:6])
    assert pooling._pool is None  # not even looked up yet: too few
    pooling.add(paths[6:12])
    assert pooling._pool is not None  # the workers read while the caller goes on finding files
    for start in range(12, 40, 7):
        pooling.add(paths[start : start + 7])
    assert pooling.finish() == serial
    # An error (or Ctrl-C) between adding and finishing stops the workers instead of leaving them reading.
    with pytest.raises(KeyboardInterrupt), scan.Scanner(use_cache=False) as interrupted:
        interrupted.add(paths)
        started = interrupted._pool
        assert started is not None
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError, match="shutdown"):
        started.submit(int)
    assert [serial[p].built_for for p in paths[:4]] == [BuiltFor.NUMPY1, BuiltFor.NUMPY2, BuiltFor.NUMPY2,
                                                          BuiltFor.NONE]
    assert seen[-1] == (40, 40)
    # fork copies one thread: a caller with threads of its own gets the answers from this process instead.
    release = threading.Event()
    waiting = threading.Thread(target=release.wait)
    waiting.start()
    try:
        scanner = scan.Scanner(use_cache=False)
        scanner.add(paths)
        assert scanner._pool is None and scanner.finish() == serial
    finally:
        release.set()
        waiting.join()


@needs_headers
def test_facts_of_a_file_changed_moments_ago_are_used_but_not_remembered(
    numpy_module: NumpyModuleFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second rewrite within one tick of the file system's clock can keep size, mtime and inode: facts
    keyed by them are stored only once the file has been left alone for `stamps.RACY_NS`."""
    import time

    from abiguard import scan, stamps
    from abiguard.cache import Cache, FileKey

    monkeypatch.setenv("ABIGUARD_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "m.so"
    path.write_bytes(numpy_module("1.26.4").read_bytes())

    def remembered() -> bool:
        cache = Cache.open()
        try:
            return bool(cache.lookup_files([FileKey.from_path(path)]))
        finally:
            cache.close()

    assert scan.inspect_all([str(path)], set())[str(path)].built_for is BuiltFor.NUMPY1
    assert not remembered()
    monkeypatch.setattr(stamps, "RACY_NS", 50_000_000)
    time.sleep(0.1)
    assert scan.inspect_all([str(path)], set())[str(path)].built_for is BuiltFor.NUMPY1
    assert remembered()
