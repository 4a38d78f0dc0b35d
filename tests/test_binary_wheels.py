"""Binary inspection of real wheels from the package index (downloaded once, then cached).

Members are read from the wheel into memory one at a time and passed to `inspect_bytes`. The expected
verdicts were confirmed at run time where it matters: pandas 2.0.3's `tslibs/ccalendar` (R6 only) fails under
numpy 2 with "numpy.dtype size changed".
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from abiguard.binary import inspect_bytes
from abiguard.model import BinaryFacts, BuiltFor, Producer
from tests.support.wheels import fetch_wheel, shared_objects

pytestmark = pytest.mark.network

LINUX, WINDOWS, MACOS = "manylinux2014_x86_64", "win_amd64", "macosx_11_0_arm64"
_EXT = re.compile(r"\.(?:cpython-[^./]+|cp\d+-[^./]+)\.(?:so|pyd)$")


def module(name: str) -> str | None:
    """`pandas/_libs/lib` for any platform's file name of that extension module; None for other libraries."""
    stem = _EXT.sub("", name)
    return stem if stem != name else None


def inspect_wheel(requirement: str, platform: str) -> dict[str, BinaryFacts]:
    wheel = fetch_wheel(requirement, platform, "3.11")
    return {name: inspect_bytes(data) for name, data in shared_objects(wheel)}


def markers(facts: BinaryFacts) -> frozenset[str]:
    return frozenset(e.marker for e in facts.evidence)


@pytest.fixture(scope="module")
def pandas() -> dict[tuple[str, str], dict[str, BinaryFacts]]:
    return {(v, p): inspect_wheel(f"pandas=={v}", p) for v in ("2.0.3", "2.2.3") for p in (LINUX, WINDOWS, MACOS)}


def modules(facts: dict[str, BinaryFacts]) -> dict[str, BinaryFacts]:
    return {m: f for name, f in facts.items() if (m := module(name))}


@pytest.mark.parametrize("platform", [LINUX, WINDOWS, MACOS])
def test_pandas_2_0_3_is_built_for_numpy1(pandas: dict[tuple[str, str], dict[str, BinaryFacts]],
                                          platform: str) -> None:
    facts = pandas[("2.0.3", platform)]
    assert {f.format for f in facts.values()} == {{LINUX: "elf", WINDOWS: "pe", MACOS: "macho"}[platform]}
    mods = modules(facts)
    verdicts = Counter(f.built_for for f in mods.values())
    assert verdicts == {BuiltFor.NUMPY1: 37, BuiltFor.NONE: 6}
    # The Windows wheel also ships the MSVC runtime: plain DLLs, ABI-neutral.
    assert all(f.built_for is BuiltFor.NONE for name, f in facts.items() if not module(name))
    for name, f in mods.items():
        if f.built_for is BuiltFor.NUMPY1:
            assert f.min_numpy is None
            assert f.producer is (Producer.C_API if name == "pandas/_libs/json" else Producer.CYTHON), name
    # Two Cython modules cimport numpy without a C-level import: only the Python-level R6 marker shows it.
    only_r6 = {m for m, f in mods.items() if f.built_for is BuiltFor.NUMPY1 and "R4" not in markers(f)}
    assert only_r6 == {"pandas/_libs/tslibs/ccalendar", "pandas/_libs/window/indexers", "pandas/_libs/writers",
                       "pandas/_libs/tslibs/dtypes"}
    assert all("R6" in markers(mods[m]) for m in only_r6)


@pytest.mark.parametrize("platform", [LINUX, WINDOWS, MACOS])
def test_pandas_2_2_3_is_built_for_numpy2_from_1_20(pandas: dict[tuple[str, str], dict[str, BinaryFacts]],
                                                    platform: str) -> None:
    mods = modules(pandas[("2.2.3", platform)])
    assert Counter(f.built_for for f in mods.values()) == {BuiltFor.NUMPY2: 37, BuiltFor.NONE: 7}
    floors = {m: f.min_numpy for m, f in mods.items() if f.built_for is BuiltFor.NUMPY2}
    # Every module that calls import_array() carries R2 "(NumPy 1.20)"; tslibs/dtypes only cimports numpy's
    # 2.x .pxd (Python-level R7), so it states no floor.
    assert {m for m, v in floors.items() if v != "1.20"} == {"pandas/_libs/tslibs/dtypes"}
    assert floors["pandas/_libs/tslibs/dtypes"] is None
    assert markers(mods["pandas/_libs/tslibs/dtypes"]) & {"R1", "R2", "R4"} == set()


@pytest.mark.parametrize("version", ["2.0.3", "2.2.3"])
def test_pandas_platforms_agree(pandas: dict[tuple[str, str], dict[str, BinaryFacts]], version: str) -> None:
    """ELF, PE and Mach-O builds of one release: same modules, same verdicts, same markers."""
    per_platform = [modules(pandas[(version, p)]) for p in (LINUX, WINDOWS, MACOS)]
    assert per_platform[0].keys() == per_platform[1].keys() == per_platform[2].keys()
    for name in per_platform[0]:
        seen = {(f.built_for, f.min_numpy, f.producer, markers(f)) for f in (p[name] for p in per_platform)}
        assert len(seen) == 1, (name, seen)


@pytest.mark.parametrize("platform", [LINUX, WINDOWS, MACOS])
def test_pandas_bytes_read(pandas: dict[tuple[str, str], dict[str, BinaryFacts]], platform: str) -> None:
    """Only headers and read-only data are read: a few percent of ELF/Mach-O, ~12% of PE (.rdata is larger)."""
    for version in ("2.0.3", "2.2.3"):
        facts = pandas[(version, platform)].values()
        ratio = sum(f.bytes_read for f in facts) / sum(f.size for f in facts)
        assert 0 < ratio < {LINUX: 0.1, WINDOWS: 0.16, MACOS: 0.1}[platform], (version, ratio)


def test_pandas_inspection_is_fast() -> None:
    wheel = fetch_wheel("pandas==2.2.3", LINUX, "3.11")
    members = list(shared_objects(wheel))
    start = time.perf_counter()
    for _name, data in members:
        inspect_bytes(data)
    per_file = (time.perf_counter() - start) / len(members)
    assert per_file < 0.02, per_file  # measured ~0.3 ms; generous for slow CI machines


def test_contourpy_pybind11_before_and_after_2_12() -> None:
    (old,) = inspect_wheel("contourpy==1.2.0", LINUX).values()
    assert (old.built_for, old.min_numpy, old.producer) == (BuiltFor.NUMPY1, None, Producer.PYBIND11_OLD)
    assert {"R5", "pybind11"} <= markers(old)
    (new,) = inspect_wheel("contourpy==1.2.1", LINUX).values()
    assert (new.built_for, new.min_numpy, new.producer) == (BuiltFor.NUMPY2, None, Producer.PYBIND11_NEW)
    assert {"R3", "pybind11"} <= markers(new)


def test_scipy_1_11_pybind11_module_that_also_imports_numpys_c_api_is_broken_not_at_risk() -> None:
    """Confirmed at run time under numpy 2.0.2: `scipy.spatial._distance_pybind` fails with "ImportError:
    initialization failed" after NumPy's 1.x banner, while contourpy 1.2.0 (pybind11 alone) imports."""
    from packaging.version import Version

    from abiguard.model import Verdict
    from abiguard.rules.numpy import judge

    facts = inspect_wheel("scipy==1.11.4", LINUX)
    (distance,) = [f for name, f in facts.items() if "spatial/_distance_pybind" in name]
    assert (distance.built_for, distance.producer) == (BuiltFor.NUMPY1, Producer.PYBIND11_OLD)
    assert {"R5", "pybind11"} <= markers(distance) and markers(distance) & {"R4a", "R4b"}
    assert judge(distance, Version("2.0.2"))[0] is Verdict.BROKEN
    (contourpy,) = inspect_wheel("contourpy==1.2.0", LINUX).values()
    assert judge(contourpy, Version("2.0.2"))[0] is Verdict.AT_RISK


def test_contourpy_universal2_fat_binary() -> None:
    """A universal2 wheel: both architectures of the fat Mach-O are read and agree."""
    (fat,) = inspect_wheel("contourpy==1.0.7", "macosx_10_9_universal2").values()
    assert (fat.format, fat.built_for, fat.producer) == ("macho-fat", BuiltFor.NUMPY1, Producer.PYBIND11_OLD)
    assert fat.bytes_read < fat.size * 0.1


@pytest.mark.parametrize(("version", "built_for", "min_numpy", "f2py"), [
    ("0.8.0", BuiltFor.NUMPY1, None, "1.26.0"), ("0.10.0", BuiltFor.NUMPY2, "1.20", "2.1.3"),
])
def test_pymsis_f2py(version: str, built_for: BuiltFor, min_numpy: str | None, f2py: str) -> None:
    facts = inspect_wheel(f"pymsis=={version}", LINUX)
    wrappers = {n: f for n, f in facts.items() if module(n)}
    assert len(wrappers) == 3
    for f in wrappers.values():
        assert (f.built_for, f.min_numpy, f.producer) == (built_for, min_numpy, Producer.F2PY)
        r8 = next(e for e in f.evidence if e.marker == "R8")
        assert r8.text.endswith(f"(version:{f2py})")
    # The vendored Fortran runtime does not use NumPy.
    assert all(f.built_for is BuiltFor.NONE for n, f in facts.items() if n.startswith("pymsis.libs/"))


def test_abi_neutral_packages() -> None:
    """numcodecs 0.12.1: Cython without `cimport numpy`; lightgbm: ctypes. Neither uses NumPy's C-API."""
    numcodecs = inspect_wheel("numcodecs==0.12.1", LINUX)
    assert len(numcodecs) == 8
    assert all(f.built_for is BuiltFor.NONE and f.producer is None for f in numcodecs.values())
    (lightgbm,) = inspect_wheel("lightgbm==4.3.0", "manylinux_2_28_x86_64").values()
    assert (lightgbm.built_for, lightgbm.evidence) == (BuiltFor.NONE, ())


def test_fuzz_real_pe_and_macho_members() -> None:
    """Corrupted copies of real PE and Mach-O members never raise (ELF is fuzzed in test_binary_formats)."""
    from tests.test_binary_formats import fuzz

    seeds = {}
    for platform, member in ((WINDOWS, "pandas/_libs/tslibs/ccalendar.cp311-win_amd64.pyd"),
                             (MACOS, "pandas/_libs/tslibs/ccalendar.cpython-311-darwin.so")):
        for name, data in shared_objects(fetch_wheel("pandas==2.0.3", platform, "3.11")):
            if name == member:
                seeds[platform] = data
    seeds["fat"] = next(d for _n, d in shared_objects(fetch_wheel("contourpy==1.0.7", "macosx_10_9_universal2")))
    assert len(seeds) == 3
    fuzz(seeds, 1500, seed=11)
