"""Helpers that make the real things tests need: compiled extension modules, PyPI wheels, venvs."""
