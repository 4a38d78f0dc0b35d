"""Where abiguard keeps its files, picked as platformdirs would without importing it: a recalled `check` must
answer before anything heavy is imported, and a dependency for two paths is not worth its weight."""

from __future__ import annotations

import os
import sys


def _user_dir(xdg_variable: str, xdg_default: str, macos: str, windows: str) -> str:
    """The per-user directory of one kind: XDG on Linux and BSD, ~/Library on macOS, %LOCALAPPDATA% on Windows."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(local, "abiguard", "abiguard", windows) if windows else os.path.join(
            local, "abiguard", "abiguard")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", macos, "abiguard")
    xdg = os.environ.get(xdg_variable, "")
    return os.path.join(xdg if os.path.isabs(xdg) else os.path.join(home, xdg_default), "abiguard")


def cache_dir() -> str:
    """`$ABIGUARD_CACHE_DIR`, else the user cache directory (`~/.cache/abiguard` on Linux)."""
    return os.environ.get("ABIGUARD_CACHE_DIR") or _user_dir("XDG_CACHE_HOME", ".cache", "Caches", "Cache")


def state_dir() -> str:
    """`$ABIGUARD_STATE_DIR`, else the user state directory (`~/.local/state/abiguard` on Linux): snapshots
    must outlive a cleaned cache, so they do not live in it."""
    return os.environ.get("ABIGUARD_STATE_DIR") or _user_dir(
        "XDG_STATE_HOME", os.path.join(".local", "state"), "Application Support", "")
