"""Compile real extension modules in the test session, against real NumPy 1.x and 2.x headers."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.support.cache import cache_root
from tests.support.wheels import fetch_wheel

# Accepts every manylinux wheel up to glibc 2.28 (numpy >= 2.3 ships only manylinux_2_28 for x86_64).
LINUX = "manylinux_2_28_x86_64"


def numpy_include(version: str) -> Path:
    """numpy's C include directory, unpacked from the real numpy wheel of that version.

    The headers are the same in every CPython build of a release, so when this interpreter has no wheel of
    that numpy (numpy 1.26 has none for 3.13) we take the one for a Python that has.
    """
    target = cache_root() / "numpy-headers" / version
    marker = target / ".done"
    if not marker.exists():
        wheel = None
        errors = []
        for python in dict.fromkeys([f"{sys.version_info[0]}.{sys.version_info[1]}", "3.12", "3.11", "3.10"]):
            try:
                wheel = fetch_wheel(f"numpy=={version}", LINUX, python)
                break
            except subprocess.CalledProcessError as exc:
                errors.append(f"{python}: {exc}")
        if wheel is None:
            raise FileNotFoundError(f"no numpy {version} wheel for {LINUX}: {errors}")
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if "/include/numpy/" in name:
                    zf.extract(name, target)
        marker.touch()
    for sub in ("numpy/_core/include", "numpy/core/include"):
        if (target / sub / "numpy").is_dir():
            return target / sub
    raise FileNotFoundError(f"no include directory in numpy {version}")


def compile_extension(
    name: str, source: str, out_dir: Path, include_dirs: tuple[Path, ...] = (), defines: tuple[str, ...] = (),
    filename: str | None = None,
) -> Path:
    """Build `name` (a top-level module) from C `source` with gcc; cached by the inputs' hash.

    `filename` overrides the output name (default: `name` + this interpreter's EXT_SUFFIX), e.g. to build a
    plain shared library `libx.so`.
    """
    filename = filename or f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    key = hashlib.sha256(
        "\0".join([filename, source, *map(str, include_dirs), *defines, sys.version]).encode()
    ).hexdigest()[:16]
    built = cache_root() / "extensions" / key / filename
    built.parent.mkdir(parents=True, exist_ok=True)
    with open(built.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            src = built.parent / f"{name}.c"
            src.write_text(source)
            cmd = ["gcc", "-shared", "-fPIC", "-O1", f"-I{sysconfig.get_paths()['include']}"]
            cmd += [f"-I{d}" for d in include_dirs] + [f"-D{d}" for d in defines]
            cmd += [str(src), "-o", str(built) + ".tmp"]
            subprocess.run(cmd, check=True)
            Path(str(built) + ".tmp").rename(built)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / built.name
    dest.write_bytes(built.read_bytes())
    return dest


NUMPY_MODULE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

static PyObject *zeros(PyObject *self, PyObject *args) {
    npy_intp dims[1] = {3};
    return PyArray_ZEROS(1, dims, NPY_DOUBLE, 0);
}
static PyMethodDef methods[] = {{"zeros", zeros, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "@NAME@", NULL, -1, methods};
PyMODINIT_FUNC PyInit_@NAME@(void) {
    import_array();
    return PyModule_Create(&moddef);
}
"""

PLAIN_MODULE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
@BODY@
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "@NAME@", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_@NAME@(void) {
    @INIT@
    return PyModule_Create(&moddef);
}
"""


def numpy_extension(name: str, numpy_version: str, out_dir: Path, target: str | None = None) -> Path:
    """A 20-line module that calls import_array(), built against numpy `numpy_version`'s headers.

    `target` is an NPY_TARGET_VERSION macro value such as "NPY_2_0_API_VERSION" (numpy >= 2 headers only).
    """
    defines = (f"NPY_TARGET_VERSION={target}",) if target else ()
    return compile_extension(
        name, NUMPY_MODULE.replace("@NAME@", name), out_dir, (numpy_include(numpy_version),), defines
    )


def plain_extension(name: str, out_dir: Path, init: str = "", body: str = "") -> Path:
    """A module that does not use NumPy; `init` is C code run first in its PyInit function."""
    return compile_extension(
        name, PLAIN_MODULE.replace("@NAME@", name).replace("@INIT@", init).replace("@BODY@", body), out_dir
    )


NUMPY_LIBRARY = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

/* Not an extension module: a helper library whose host module calls npuser_init() once. */
int npuser_init(void) {
    if (PyArray_API == NULL) {
        import_array1(-1);
    }
    return 0;
}
PyObject *npuser_zeros(npy_intp n) { return PyArray_ZEROS(1, &n, NPY_DOUBLE, 0); }
"""

UFUNC_MODULE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/ndarraytypes.h>
#include <numpy/ufuncobject.h>

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "@NAME@", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_@NAME@(void) {
    import_umath();
    return PyModule_Create(&moddef);
}
"""


def numpy_library(name: str, numpy_version: str, out_dir: Path, target: str | None = None) -> Path:
    """`lib{name}.so`: a shared library (no PyInit) that imports NumPy's C-API, like pyarrow's libarrow_python."""
    defines = (f"NPY_TARGET_VERSION={target}",) if target else ()
    return compile_extension(
        name, NUMPY_LIBRARY, out_dir, (numpy_include(numpy_version),), defines, filename=f"lib{name}.so"
    )


def ufunc_extension(name: str, numpy_version: str, out_dir: Path) -> Path:
    """A module that imports only NumPy's ufunc C-API (import_umath), not the array API."""
    return compile_extension(name, UFUNC_MODULE.replace("@NAME@", name), out_dir, (numpy_include(numpy_version),))
