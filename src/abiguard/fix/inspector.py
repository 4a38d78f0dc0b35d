"""The planner's view of the index: facts of a release's wheel for the target, and the search for the first (or
the newest) compatible release."""

from __future__ import annotations

from packaging.version import Version

from abiguard.fix.planner import ReleaseFacts
from abiguard.inspect import ErrorItem, InspectOptions, Item, SearchItem, WheelItem, inspect_targets
from abiguard.model import BuiltFor, TargetEnvironment
from abiguard.sources.environment import platform_tag
from abiguard.sources.index import IndexUnreachable, load_index_config


class IndexInspector:
    """Answers for one target environment, memoised for the life of one command. Raises IndexUnreachable
    when the index cannot be read: "no release found" would be a false answer, and a plan built on it wrong."""

    def __init__(self, env: TargetEnvironment, *, use_cache: bool = True, index_url: str | None = None) -> None:
        self._base = InspectOptions(
            python_version=env.python_tag, platform=platform_tag(env), use_cache=use_cache, index_url=index_url
        )
        self._releases: dict[tuple[str, str], ReleaseFacts] = {}
        self._found: dict[tuple[str, str, bool], str | None] = {}
        self.notes: list[str] = []

    def _options(self, **changes: object) -> InspectOptions:
        from dataclasses import replace

        return replace(self._base, **changes)  # type: ignore[arg-type]

    def release(self, name: str, version: str) -> ReleaseFacts:
        key = (name, version)
        if key not in self._releases:
            report = inspect_targets([f"{name}=={version}"], self._options(sample=0))
            self.notes.extend(n for n in report.notes if n not in self.notes)
            item = _answered(report.items[0] if report.items else None, self._base.index_url)
            if isinstance(item, WheelItem):
                out = item.report.outcome
                self._releases[key] = ReleaseFacts(out.built_for, out.min_numpy, item.report.wheel_size)
            else:
                why = item.message if isinstance(item, ErrorItem) else "no answer from the index"
                self._releases[key] = ReleaseFacts(BuiltFor.UNKNOWN, None, None, why)
        return self._releases[key]

    def first_compatible(self, requirement: str, numpy: Version) -> str | None:
        return self._search(requirement, numpy, newest=False)

    def last_compatible(self, requirement: str, numpy: Version) -> str | None:
        return self._search(requirement, numpy, newest=True)

    def _search(self, requirement: str, numpy: Version, newest: bool) -> str | None:
        key = (requirement, str(numpy), newest)
        if key not in self._found:
            mode = {"last_compatible": True} if newest else {"first_compatible": True}
            report = inspect_targets([requirement], self._options(numpy=str(numpy), **mode))
            self.notes.extend(n for n in report.notes if n not in self.notes)
            item = _answered(report.items[0] if report.items else None, self._base.index_url)
            self._found[key] = item.found if isinstance(item, SearchItem) else None
        return self._found[key]


def _answered(item: Item | None, index_url: str | None) -> Item | None:
    """The item when it is the index's answer about one project (no such release, no wheel for the target);
    raises when the index could not be asked at all: unreachable, or none configured that abiguard can use."""
    if isinstance(item, ErrorItem):
        if item.unreachable:
            raise IndexUnreachable(item.message)
        load_index_config(index_url)  # raises PackageIndexError for the configuration, as the inspection did
    return item
