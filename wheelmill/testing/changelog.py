"""PyPI's journal: the change feed the XML-RPC mirroring calls page through."""

from __future__ import annotations

from array import array
from collections.abc import Iterable

ChangelogEntry = tuple[str, str | None, int, str, int]  # name, version, timestamp, action, serial


class Changelog:
    """Entries numbered by serial from 1, one after another.

    Stored in columns, names and versions interned, because feed benchmarks hold over a million
    entries: a tuple per entry would cost several times the memory.
    """

    def __init__(self) -> None:
        self._strings: list[str | None] = [None]  # id 0 is "no version"
        self._string_ids: dict[str | None, int] = {None: 0}
        self._names = array("L")
        self._versions = array("L")
        self._timestamps = array("q")
        self._actions: list[str] = []

    @property
    def last_serial(self) -> int:
        return len(self._actions)

    def append(self, name: str, version: str | None, timestamp: int, action: str) -> int:
        """Record one entry and return its serial."""
        self._names.append(self._intern(name))
        self._versions.append(self._intern(version))
        self._timestamps.append(timestamp)
        self._actions.append(action)
        return len(self._actions)

    def extend(self, entries: Iterable[tuple[str, str | None, int, str]]) -> int:
        """Record many entries and return the last serial."""
        for name, version, timestamp, action in entries:
            self.append(name, version, timestamp, action)
        return self.last_serial

    def since(self, serial: int, limit: int) -> list[ChangelogEntry]:
        """At most ``limit`` entries with a serial above ``serial``, in serial order."""
        start = max(serial, 0)
        stop = min(start + limit, len(self._actions))
        strings = self._strings
        return [
            (
                strings[self._names[index]] or "",
                strings[self._versions[index]],
                self._timestamps[index],
                self._actions[index],
                index + 1,
            )
            for index in range(start, stop)
        ]

    def _intern(self, value: str | None) -> int:
        found = self._string_ids.get(value)
        if found is None:
            found = self._string_ids[value] = len(self._strings)
            self._strings.append(value)
        return found
