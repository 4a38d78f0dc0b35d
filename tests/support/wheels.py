"""Real wheels from the package index, downloaded once with pip and kept in the test cache."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

from tests.support.cache import cache_root


def fetch_wheel(requirement: str, platform: str, python_version: str = "3.11") -> Path:
    """The wheel pip picks for `requirement` on `platform` (a wheel platform tag), cached by arguments."""
    key = f"{requirement}-{platform}-py{python_version}".replace("=", "_").replace("/", "_")
    target = cache_root() / "wheels" / key
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(target.glob("*.whl"))
        if not found:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--platform", platform, "--python-version", python_version, "--dest", str(target),
                 requirement],
                check=True,
            )
            found = sorted(target.glob("*.whl"))
    assert len(found) == 1, found
    return found[0]
