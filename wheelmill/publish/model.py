"""What the publisher renders: plain, immutable records the database layer builds.

The publisher never queries the database; these records are the whole contract between the two,
so a full publish and a one-project rewrite render from exactly the same data.

Records a full publish makes by the million (files, cells, projects, logs) are NamedTuples: one
is built several times faster than a frozen dataclass, which sets each field through
``object.__setattr__``. The few per-site records stay dataclasses.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple


class IndexFile(NamedTuple):
    """One file on a /simple/NAME/ page (PEP 503/691 with 592, 658, 700, 714 data)."""

    filename: str
    url: str  # farm: path from the site root ("/files/NAME/FILE.whl"); upstream: absolute URL
    sha256: str
    size: int
    upload_time: datetime | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; "": yanked without a reason; else the reason
    core_metadata_sha256: str | None  # sha256 of FILE.metadata; None when there is none
    from_farm: bool


class ProjectIndex(NamedTuple):
    """Everything the simple index says about one project."""

    name: str  # PEP 503 canonical
    display_name: str
    versions: tuple[str, ...]  # PEP 700: every known version, even those with no files
    files: tuple[IndexFile, ...]
    last_serial: int  # meta._last-serial
    tracks: str | None  # PEP 708: the upstream project page this one tracks


class BuildCell(NamedTuple):
    """One version x target cell of a project's build matrix."""

    version: str
    target: str
    status: str  # built, failed, building, queued, skipped, covered, broken
    build_id: int | None
    reason: str | None


class FarmFile(NamedTuple):
    """A wheel the farm built or aliased, as listed on its project page."""

    filename: str
    url: str  # its path from the site root: "/files/NAME/FILE.whl"
    version: str
    target: str
    size: int
    sha256: str
    build_id: int | None
    apt_packages: tuple[str, ...]  # Debian packages providing the shared libraries it links
    alias_of: str | None = None  # the file it shares bytes with, when published under an alias platform


class ProjectPage(NamedTuple):
    """The human project page and its /project/NAME/json/ twin."""

    name: str
    display_name: str
    summary: str | None
    description: str | None  # shown as escaped text, never as HTML
    upstream_url: str | None
    versions: tuple[str, ...]  # newest first
    targets: tuple[str, ...]
    cells: tuple[BuildCell, ...]
    files: tuple[FarmFile, ...]
    apt_packages: tuple[str, ...]  # union over its wheels: the `sudo apt install` line
    downloads: int = 0


class BuildLogPage(NamedTuple):
    """One build attempt: who, when, how it ended, and its log."""

    build_id: int
    package: str
    version: str
    target: str
    builder: str | None
    status: str
    failure_reason: str | None
    failure_detail: str | None
    started_at: datetime | None
    duration_s: float | None
    environment: Mapping[str, str]
    log_text: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class BuilderRow:
    """One builder on the fleet page."""

    name: str
    target: str
    state: str
    current: str | None  # "pkg 1.0" while building
    last_seen: datetime | None
    os: str | None
    cpu: str | None
    builds_done: int


@dataclass(frozen=True)
class RecentBuild:
    """One line of the home page's recent builds."""

    build_id: int
    package: str
    version: str
    target: str
    status: str
    finished_at: datetime | None
    duration_s: float | None


@dataclass(frozen=True)
class SiteSummary:
    """The home page's figures."""

    packages: int
    versions: int
    wheels: int
    builds: int
    success_rate: float | None  # 0.0 to 1.0; None before the first build
    queue_by_target: Mapping[str, int]
    builders_online: int
    disk_used_bytes: int
    disk_free_bytes: int | None
    recent_builds: tuple[RecentBuild, ...]
    notice: str | None = None  # a banner, e.g. the disk guard's warning


@dataclass(frozen=True)
class Stats:
    """The statistics page's series; each becomes a server-rendered chart."""

    builds_per_day: tuple[tuple[date, int, int], ...]  # (day, succeeded, failed)
    builds_per_builder_per_day: Mapping[str, tuple[tuple[date, int], ...]]
    outcomes: Mapping[str, int]
    failure_reasons: Mapping[str, int]
    downloads_per_day: tuple[tuple[date, int], ...] = ()
    time_saved_s: float = 0.0
    remedies_rescued: Mapping[str, int] = field(default_factory=dict)  # remedy -> builds it rescued
    smoke_test_rejected: int = 0
    # Downloads in the window by who asked, from pip's and uv's user agents: most first.
    downloads_by_installer: Mapping[str, int] = field(default_factory=dict)  # "pip 24.0"
    downloads_by_python: Mapping[str, int] = field(default_factory=dict)  # "3.11"
    downloads_by_system: Mapping[str, int] = field(default_factory=dict)  # "Raspbian GNU/Linux 12"
    days: int | None = None  # the builds series cover this many days up to today; None: all time


class SearchEntry(NamedTuple):
    """One package in the client-side search index."""

    name: str
    summary: str | None
    versions: int
    wheels: int
