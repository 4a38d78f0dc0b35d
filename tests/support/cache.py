"""One directory, created by the tests, that keeps downloads between runs (wheels, numpy headers, venvs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("ABIGUARD_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "abiguard-tests"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path
