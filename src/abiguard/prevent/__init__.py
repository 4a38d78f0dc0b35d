"""Prevention: keep installs from creating ABI conflicts (constraints, guarded install, lockfile check)."""
