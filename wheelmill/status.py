"""``wheelmill status``: the farm at a glance, as rich tables. ``wheelmill monitor`` redraws them live.

One snapshot is read in one short transaction, then rendered: the same queries /metrics uses, so
the terminal and the dashboards never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from wheelmill.config import Settings
from wheelmill.db import fleet
from wheelmill.db.engine import Database
from wheelmill.master.disk import DiskState, disk_state

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Snapshot:
    jobs: dict[tuple[str, str], int]
    builds: dict[tuple[str, str], int]
    builders: list[fleet.BuilderRow]
    failures: Sequence[fleet.FailureRow]
    follower: fleet.FollowerProgress
    disk: DiskState
    taken_at: datetime


def take_snapshot(db: Database, settings: Settings) -> Snapshot:
    with db.read() as session:
        return Snapshot(
            jobs=fleet.open_jobs(session),
            builds=fleet.recent_builds(session, WINDOW),
            builders=fleet.builder_rows(session),
            failures=fleet.recent_failures(session),
            follower=fleet.follower_progress(session),
            disk=disk_state(settings),
            taken_at=datetime.now(UTC),
        )


def render_status(settings: Settings) -> RenderableType:
    db = Database(settings.resolved_database_url)
    try:
        return render(take_snapshot(db, settings))
    finally:
        db.dispose()


def render(snapshot: Snapshot, selected: str | None = None) -> RenderableType:
    """All tables; ``selected`` names the builder the monitor's keys act on."""
    return Group(
        _queue(snapshot),
        _builders(snapshot, selected),
        _failures(snapshot),
        _farm(snapshot),
    )


def _queue(snapshot: Snapshot) -> Table:
    table = Table("target", "queued", "waiting", "building", title="Queue", title_justify="left")
    for target in sorted({target for target, _ in snapshot.jobs}):
        table.add_row(
            target, *(str(snapshot.jobs.get((target, s), 0)) for s in ("queued", "waiting", "leased"))
        )
    return table


def _builders(snapshot: Snapshot, selected: str | None) -> Table:
    table = Table(
        "", "builder", "state", "target", "phase", "job", "last seen", "disk free", title="Builders"
    )
    table.title_justify = "left"
    for row in snapshot.builders:
        mark = ">" if row.name == selected else ""
        style = "reverse" if row.name == selected else None
        table.add_row(
            mark,
            row.name,
            Text(row.state, style=_STATE_STYLE.get(row.state, "")),
            row.target or "",
            row.phase or "",
            row.job or "",
            _ago(row.last_seen, snapshot.taken_at),
            _size(row.disk_free_bytes),
            style=style,
        )
    return table


def _failures(snapshot: Snapshot) -> Table:
    table = Table("build", "finished", "package", "version", "target", "reason", title="Recent failures")
    table.title_justify = "left"
    for row in snapshot.failures:
        table.add_row(
            str(row.build_id),
            _ago(row.finished_at, snapshot.taken_at),
            row.package,
            row.version,
            row.target,
            row.reason,
        )
    return table


def _farm(snapshot: Snapshot) -> Table:
    table = Table("", "", title="Farm", title_justify="left", show_header=False)
    done = {status: 0 for status in ("success", "failed", "lost", "aborted")}
    for (status, _), n in snapshot.builds.items():
        done[status] = done.get(status, 0) + n
    table.add_row("builds, last 24 h", ", ".join(f"{n} {status}" for status, n in done.items()))
    table.add_row("upstream lag", _lag(snapshot.follower, snapshot.taken_at))
    disk = snapshot.disk
    table.add_row("disk free", f"{_size(disk.free_bytes)} (guard at {_size(disk.min_free_bytes)})")
    if disk.low:
        table.add_row("disk guard", Text("uploads refused, builders paused", style="bold red"))
    return table


def _lag(progress: fleet.FollowerProgress, now: datetime) -> str:
    if progress.serial is not None and progress.upstream_serial is not None:
        return f"{max(0, progress.upstream_serial - progress.serial)} serials behind (at {progress.serial})"
    if progress.serial is not None:
        return f"at serial {progress.serial} (upstream's newest not recorded)"
    if progress.watched:
        return f"{progress.watched} watched packages; oldest check {_ago(progress.oldest_check, now)}"
    return "nothing followed yet"


_STATE_STYLE = {"active": "green", "paused": "yellow", "draining": "cyan", "killed": "red", "revoked": "dim"}


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    if when.tzinfo is None:  # SQLite hands back naive UTC
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _size(size: int | None) -> str:
    if size is None:
        return ""
    return f"{size / 2**30:.1f} GiB"
