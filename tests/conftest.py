"""Session fixtures shared by test modules: real extension modules compiled once per session.

Builds are cached on disk by `tests.support.build` (keyed by source, headers and defines), so a warm run
only copies files; the first run downloads numpy wheels for their headers.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.build import numpy_extension, numpy_library, plain_extension

NumpyModuleFactory = Callable[..., Path]
# The environments the suite builds pin real releases of the NumPy 1.x era: pandas 2.0.3 has wheels up to
# CPython 3.11, numpy 2.0.2 up to 3.12. On a newer Python uv would try to build them from source.
SUITE_PYTHONS = ((3, 10), (3, 11))


def pytest_configure(config: pytest.Config) -> None:
    if sys.version_info[:2] not in SUITE_PYTHONS:
        versions = " or ".join(f"{major}.{minor}" for major, minor in SUITE_PYTHONS)
        pytest.exit(
            f"the test suite needs CPython {versions} (it installs real wheels of pandas 2.0.3, which exist for "
            f"no newer Python), not {platform.python_version()}: make the venv with e.g. "
            f"`python3.11 -m venv .venv`",
            returncode=4,
        )


@pytest.fixture(scope="session")
def built_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every module built in this session (module names are unique per build)."""
    return tmp_path_factory.mktemp("built")


@pytest.fixture(scope="session")
def numpy_module(built_dir: Path) -> NumpyModuleFactory:
    """`numpy_module("2.2.6", target="NPY_2_0_API_VERSION")`: a tiny extension calling import_array().

    The module's import name is derived from the arguments (`np_2_2_6_npy_2_0`), so several builds can sit
    in one directory and be imported side by side.
    """
    made: dict[tuple[str, str | None], Path] = {}

    def build(numpy_version: str, target: str | None = None) -> Path:
        key = (numpy_version, target)
        if key not in made:
            name = "np_" + numpy_version.replace(".", "_")
            if target:
                name += "_" + target.removesuffix("_API_VERSION").lower()
            made[key] = numpy_extension(name, numpy_version, built_dir, target)
        return made[key]

    return build


@pytest.fixture(scope="session")
def numpy_shared_library(built_dir: Path) -> NumpyModuleFactory:
    """`numpy_shared_library("1.26.4")`: `libnpuser_1_26_4.so`, a non-extension library using the C-API."""

    def build(numpy_version: str, target: str | None = None) -> Path:
        return numpy_library("npuser_" + numpy_version.replace(".", "_"), numpy_version, built_dir, target)

    return build


@pytest.fixture(scope="session")
def plain_module(built_dir: Path) -> Path:
    """An extension module that does not use NumPy at all."""
    return plain_extension("plain_no_numpy", built_dir)
