"""abiguard: find and fix the binary (ABI) conflicts that `pip check` cannot see."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check", "inspect"]


def __getattr__(name: str) -> object:
    # Public API, imported lazily so `python -m abiguard` starts fast.
    if name == "check":
        from abiguard.check import check

        return check
    if name == "inspect":
        from abiguard.binary import inspect_path

        return inspect_path
    raise AttributeError(name)
