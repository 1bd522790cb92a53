"""The change feed's entries as typed events, and what a batch of them amounts to per project.

``changelog_since_serial`` returns ``(name, version, timestamp, action, serial)`` tuples whose action
is free text (shared/upstream-events.md lists them). ``parse`` validates each entry on the way in and
gives it a type; ``fold`` reduces a batch, in serial order, to the net change per project, so the
database layer can apply a whole batch in a few bulk statements and applying it twice changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.utils import InvalidName, NormalizedName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

Entry = tuple[str, str | None, int, str, int]  # name, version, timestamp, action, serial

# Events are treated as values but not frozen: a frozen dataclass's __init__ sets each field through
# object.__setattr__, five times the cost of a plain one, and a catch-up parses millions of events.


@dataclass(slots=True)
class Event:
    name: str  # the project's name as the feed spells it
    project: NormalizedName  # PEP 503 canonical form of ``name``
    timestamp: int  # Unix seconds; not always increasing with the serial
    serial: int


@dataclass(slots=True)
class Ignored(Event):
    """Ownership changes, actions the farm has no use for, and entries that fail validation."""

    action: str


@dataclass(slots=True)
class ProjectCreated(Event):
    pass


@dataclass(slots=True)
class ProjectRemoved(Event):
    pass


@dataclass(slots=True)
class ProjectQuarantine(Event):
    quarantined: bool  # False: the quarantine was cleared


@dataclass(slots=True)
class ReleaseEvent(Event):
    version: str  # upstream spelling, e.g. 1.0.0-beta
    canonical: str  # PEP 440 canonical form, e.g. 1.0b0


@dataclass(slots=True)
class ReleaseCreated(ReleaseEvent):
    pass


@dataclass(slots=True)
class ReleaseRemoved(ReleaseEvent):
    pass


@dataclass(slots=True)
class ReleaseYank(ReleaseEvent):
    yanked: bool  # False: unyanked


@dataclass(slots=True)
class ReleaseQuarantine(ReleaseEvent):
    quarantined: bool  # False: the quarantine was cleared


@dataclass(slots=True)
class FileAdded(ReleaseEvent):
    filename: str
    python_tag: str  # "source" for an sdist, else the tag the uploader gave (py3, cp311, ...)


@dataclass(slots=True)
class FileRemoved(ReleaseEvent):
    filename: str


_PROJECT_ACTIONS = {
    "create": (ProjectCreated, {}),
    "remove project": (ProjectRemoved, {}),
    "project quarantined": (ProjectQuarantine, {"quarantined": True}),
    "project quarantine cleared": (ProjectQuarantine, {"quarantined": False}),
}
_RELEASE_ACTIONS = {
    "new release": (ReleaseCreated, {}),
    "remove release": (ReleaseRemoved, {}),
    "yank release": (ReleaseYank, {"yanked": True}),
    "unyank release": (ReleaseYank, {"yanked": False}),
    "release quarantined": (ReleaseQuarantine, {"quarantined": True}),
    "release quarantine cleared": (ReleaseQuarantine, {"quarantined": False}),
}


def parse(entry: Entry) -> Event:
    """The typed event for one feed entry; anything unusable becomes ``Ignored``, never an error."""
    name, version, timestamp, action, serial = entry
    try:
        project = _canonical_name(name)
    except InvalidName:
        return Ignored(name, NormalizedName(""), timestamp, serial, action)
    if action in _PROJECT_ACTIONS:
        kind, extra = _PROJECT_ACTIONS[action]
        return kind(name, project, timestamp, serial, **extra)
    words = action.split(" ")
    is_file = (len(words) == 4 and words[0] == "add" and words[2] == "file") or (
        len(words) == 3 and words[:2] == ["remove", "file"]
    )
    if version is None or not (action in _RELEASE_ACTIONS or is_file):
        return Ignored(name, project, timestamp, serial, action)
    try:
        canonical = _canonical_version(version)
    except InvalidVersion:
        return Ignored(name, project, timestamp, serial, action)
    if action in _RELEASE_ACTIONS:
        kind, extra = _RELEASE_ACTIONS[action]
        return kind(name, project, timestamp, serial, version, canonical, **extra)
    filename = words[-1]
    if not _safe_filename(filename):
        return Ignored(name, project, timestamp, serial, action)
    if words[0] == "remove":
        return FileRemoved(name, project, timestamp, serial, version, canonical, filename)
    return FileAdded(name, project, timestamp, serial, version, canonical, filename, words[1])


# Names and versions repeat across a feed ("1.0" thousands of times); parsing them dominates
# parse() without a cache. Bounded, so memory does not grow with the feed.
@functools.lru_cache(maxsize=1 << 16)
def _canonical_name(name: str) -> NormalizedName:
    return canonicalize_name(name, validate=True)


@functools.lru_cache(maxsize=1 << 16)
def _canonical_version(spelling: str) -> str:
    """As ``catalog.canonical_version``: PEP 440 canonical form, raising for an invalid version."""
    return canonicalize_version(Version(spelling))


def _safe_filename(filename: str) -> bool:
    return 0 < len(filename) <= 300 and "/" not in filename and "\\" not in filename and filename[0] != "."


@dataclass
class ReleaseChange:
    """The net change to one release over a batch."""

    version: str  # upstream spelling, as first seen in the batch
    timestamp: int  # of its first event in the batch: when a new release was released
    exists: bool | None = None  # True: (re)created; False: removed; None: untouched
    wiped: bool = False  # removed at some point: its files, jobs and flags go; later events start afresh
    yanked: bool | None = None
    quarantined: bool | None = None
    refresh: bool = False  # its quarantine was cleared: fetch its files again
    added: dict[str, bool] = field(default_factory=dict)  # files added and not removed since -> is an sdist
    removed_files: set[str] = field(default_factory=set)  # files removed and not added since


@dataclass
class ProjectChange:
    """The net change to one project over a batch; ``releases`` is keyed by canonical version."""

    spelling: str = ""  # the latest spelling: the display name PyPI now uses
    spellings: set[str] = field(default_factory=set)
    last_serial: int = 0
    timestamp: int = 0  # of its latest event in the batch
    exists: bool | None = None
    wiped: bool = False  # removed at some point: every existing release goes with it
    quarantined: bool | None = None
    refresh: bool = False
    releases: dict[str, ReleaseChange] = field(default_factory=dict)

    @property
    def wants_details(self) -> bool:
        """Whether the feed left out something the JSON API holds besides new files' details: a yank's
        reason, or the files of a release whose quarantine was cleared."""
        return self.refresh or any(release.yanked or release.refresh for release in self.releases.values())

    def release(self, event: ReleaseEvent) -> ReleaseChange:
        found = self.releases.get(event.canonical)
        if found is None:
            found = self.releases[event.canonical] = ReleaseChange(event.version, event.timestamp)
        return found


def fold(events: Iterable[Event]) -> dict[NormalizedName, ProjectChange]:
    """The net change per project of ``events`` applied in serial order (their timestamps may not be)."""
    changes: dict[NormalizedName, ProjectChange] = {}
    for event in sorted(events, key=lambda each: each.serial):
        if isinstance(event, Ignored):
            continue
        project = changes.get(event.project)
        if project is None:
            project = changes[event.project] = ProjectChange()
        project.spelling = event.name
        project.spellings.add(event.name)
        project.last_serial = event.serial
        project.timestamp = max(project.timestamp, event.timestamp)
        _fold_one(project, event)
    return changes


def _fold_one(project: ProjectChange, event: Event) -> None:
    match event:
        case ProjectCreated():
            project.exists = True
        case ProjectRemoved():
            project.exists, project.wiped, project.refresh = False, True, False
            project.quarantined = None  # the wipe starts it afresh, as PyPI deletes the project
            project.releases.clear()
        case ProjectQuarantine(quarantined=quarantined):
            project.quarantined = quarantined
            project.refresh |= not quarantined
        case ReleaseCreated():
            project.exists = project.release(event).exists = True
        case FileAdded(filename=filename, python_tag=python_tag):
            release = project.release(event)
            project.exists = release.exists = True
            release.added[filename] = python_tag == "source"
            release.removed_files.discard(filename)
        case FileRemoved(filename=filename):
            release = project.release(event)
            release.added.pop(filename, None)
            release.removed_files.add(filename)
        case ReleaseRemoved():
            release = project.release(event)
            release.exists, release.wiped, release.refresh = False, True, False
            release.yanked = release.quarantined = None
            release.added.clear()
        case ReleaseYank(yanked=yanked):
            project.release(event).yanked = yanked
        case ReleaseQuarantine(quarantined=quarantined):
            release = project.release(event)
            release.quarantined = quarantined
            release.refresh |= not quarantined
