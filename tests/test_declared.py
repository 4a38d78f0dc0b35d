"""The declared-requirement rule agrees with `packaging` on every marker shape, including the fast skip."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from abiguard.model import canonical_name
from abiguard.rules.declared import applicable

ENV = {
    "implementation_name": "cpython", "implementation_version": "3.11.7", "os_name": "posix",
    "platform_machine": "x86_64", "platform_release": "", "platform_system": "Linux", "platform_version": "",
    "python_full_version": "3.11.7", "platform_python_implementation": "CPython", "python_version": "3.11",
    "sys_platform": "linux",
}


def names(requires: list[str]) -> list[str]:
    return [r.name for r in applicable(requires, ENV)]


def test_extra_only_requirements_are_skipped_and_others_kept() -> None:
    requires = [
        "numpy>=1.21",
        'pytest; extra == "test"',
        'hypothesis; python_version >= "3.8" and extra == \'test\'',
        'scipy; extra != "minimal"',  # true when no extra is requested
        'tzdata; extra == "tz" or sys_platform == "linux"',  # the `or` makes it true here
        'pywin32; sys_platform == "win32"',
        "broken requirement ((",
    ]
    assert names(requires) == ["numpy", "scipy", "tzdata"]


def test_canonical_name_agrees_with_packaging() -> None:
    for name in ("Foo_Bar", "foo.bar", "FOO--bar__baz", "a-_.b", "zope.interface", "ruamel.yaml.clib", "NumPy"):
        assert canonical_name(name) == canonicalize_name(name)
