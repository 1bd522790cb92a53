"""Running totals for the site-wide pages, kept between passes of the publisher loop.

The search index, the root index and the home page's figures cover every project and every
build. Counted afresh, they cost seconds of queries at a big farm (3 s of CPU at 100,000
projects and a million versions) and grow with it. Kept here, a pass re-reads only the projects
marked since the last one and the builds that finished since, so it costs what changed. They
are read whole again every ``RENEW_SECONDS``: a change no mark told this process of (a master
that ran the publisher meanwhile, a row edited by hand) is then out of date for an hour at most.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from wheelmill.db import views
from wheelmill.db.jobs import queue_depth
from wheelmill.publish.model import SearchEntry

# A build's finish is stamped before its transaction commits, on the clock of whichever master
# process served it. Builds that finished this recently are counted afresh on every pass, so one
# committed late, or stamped by a clock a little behind, is never missed for good.
SETTLE = timedelta(minutes=2)
RENEW_SECONDS = 3600.0
# The queue's depth has no cheaper reading than a count of every queued job: 0.2 s of a core at a
# million jobs, while the builders' calls wait for the CPU. It is counted again once the last
# count is older than its cost over this share: within a second on a small farm, every 90 s or
# so at a million jobs, where the home page's figure may lag that much.
QUEUE_SHARE = 0.002


@dataclass
class ProjectRows:
    """Every published project's search row; the root index lists their names."""

    rows: dict[str, SearchEntry] | None = None  # None until the first read, which reads them all
    changed: set[str] = field(default_factory=set)  # projects whose rows are to be read again

    def mark(self, names: Iterable[str]) -> None:
        """Projects whose pages a pass rewrote: their versions, wheels or summary may have changed."""
        self.changed.update(names)

    def read(self, session: Session) -> list[SearchEntry]:
        """The rows, in name order, after reading those of the projects marked since the last read."""
        if self.rows is None:
            self.rows = {entry.name: entry for entry in views.search_entries(session)}
        elif self.changed:
            fresh = {entry.name: entry for entry in views.search_entries(session, self.changed)}
            for name in self.changed:  # a project no longer published has no fresh row
                if name in fresh:
                    self.rows[name] = fresh[name]
                else:
                    self.rows.pop(name, None)
        self.changed.clear()
        return [self.rows[name] for name in sorted(self.rows)]


@dataclass
class BuildTally:
    """Every build by status: a finished build's status never changes, so the builds that
    finished before ``settled_until`` are counted once and kept."""

    settled: Counter[str] = field(default_factory=Counter)
    settled_until: datetime | None = None

    def read(self, session: Session, now: datetime) -> Counter[str]:
        cut = now - SETTLE
        if self.settled_until is None or cut > self.settled_until:
            self.settled += views.finished_builds_by_status(session, self.settled_until, cut)
            self.settled_until = cut
        recent = views.finished_builds_by_status(session, since=self.settled_until)
        return self.settled + recent + views.unfinished_builds_by_status(session)


@dataclass
class QueueDepth:
    """Queued jobs per target, counted again when the last count is old for what it cost."""

    by_target: dict[str, int] | None = None
    counted_at: float = float("-inf")
    took: float = 0.0

    def read(self, session: Session) -> dict[str, int]:
        started = time.monotonic()
        if self.by_target is None or started - self.counted_at >= self.took / QUEUE_SHARE:
            self.by_target = queue_depth(session)
            self.counted_at, self.took = started, time.monotonic() - started
        return self.by_target


@dataclass
class SiteTotals:
    """What the site pages total up, read at the cost of what changed since the last pass."""

    projects: ProjectRows = field(default_factory=ProjectRows)
    builds: BuildTally = field(default_factory=BuildTally)
    queue: QueueDepth = field(default_factory=QueueDepth)
    started: float = field(default_factory=time.monotonic)

    def due_for_renewal(self) -> bool:
        return time.monotonic() - self.started >= RENEW_SECONDS
