"""Where abiguard keeps its files: one cache directory, picked as platformdirs would (without importing it:
a recalled `check` must answer before anything heavy is imported)."""

from __future__ import annotations

import os
import sys


def cache_dir() -> str:
    """`$ABIGUARD_CACHE_DIR`, else the platform's user cache directory: XDG on Linux and BSD,
    ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows."""
    base = os.environ.get("ABIGUARD_CACHE_DIR")
    if base:
        return base
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        return os.path.join(os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local"),
                            "abiguard", "Cache")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "abiguard")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return os.path.join(xdg if os.path.isabs(xdg) else os.path.join(home, ".cache"), "abiguard")
