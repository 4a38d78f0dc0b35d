"""Where abiguard keeps its files, and that an installed abiguard can import everything it uses."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from abiguard import paths
from abiguard.fix.apply import resolve_state_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# The module each declared distribution provides, where the two names differ.
IMPORT_NAME = {"uv": "uv"}


def _declared_modules() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {Requirement(r).name.lower().replace("-", "_") for r in project["dependencies"]}
    return {IMPORT_NAME.get(n, n) for n in names}


def _required_imports(tree: ast.AST) -> set[str]:
    """Top-level names imported outside a `try:` body (an import in one is optional: its failure is handled)."""
    found: set[str] = set()
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for b in t.body for n in ast.walk(b)}
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_import_is_stdlib_abiguard_or_a_declared_dependency() -> None:
    # A module imported lazily (inside a function) is missed by every test whose environment happens to have
    # it, and then fails on a user's fresh install: `fix --apply` once died on `import platformdirs`.
    allowed = set(sys.stdlib_module_names) | {"abiguard"} | _declared_modules()
    strays: dict[str, set[str]] = {}
    for source in (ROOT / "src" / "abiguard").rglob("*.py"):
        for name in _required_imports(ast.parse(source.read_text(), str(source))) - allowed:
            strays.setdefault(name, set()).add(str(source.relative_to(ROOT)))
    assert strays == {}


def test_state_dir_follows_override_then_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform in ("win32", "darwin"):
        pytest.skip("XDG directories are the Linux and BSD convention")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ABIGUARD_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert resolve_state_dir() == tmp_path / "home" / ".local" / "state" / "abiguard"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")  # the XDG spec: relative paths are invalid
    assert resolve_state_dir() == tmp_path / "home" / ".local" / "state" / "abiguard"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir() == tmp_path / "xdg" / "abiguard"
    monkeypatch.setenv("ABIGUARD_STATE_DIR", str(tmp_path / "mine"))
    assert resolve_state_dir() == tmp_path / "mine"
    assert resolve_state_dir(tmp_path / "given") == tmp_path / "given"


def test_state_and_cache_are_separate_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Clearing a cache (rm -r ~/.cache/abiguard) must never take the snapshots that `rollback` needs.
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("ABIGUARD_STATE_DIR", "ABIGUARD_CACHE_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    state, cache = Path(paths.state_dir()), Path(paths.cache_dir())
    assert state != cache and not state.is_relative_to(cache) and not cache.is_relative_to(state)
