"""Read-only figures about the queue, builds, builders and follower, for /metrics and ``status``.

Metrics are scraped every few seconds by every Prometheus: each query here reads a partial index
(open jobs by state) or a time window of an index (builds by ``finished_at``), never a whole table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, select, text, union_all
from sqlalchemy.orm import Session

from wheelmill.db.feed import SERIAL_KEY, UPSTREAM_SERIAL_KEY
from wheelmill.db.tables import (
    Build,
    Builder,
    BuildStatus,
    Job,
    Package,
    TargetRow,
    UpstreamState,
    Version,
    Watch,
    utcnow,
)

DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


def open_jobs(session: Session) -> dict[tuple[str, str], int]:
    """(target, state) -> count of queued, waiting and leased jobs, each counted from its partial index."""
    parts = [
        select(Job.target_id, literal(state).label("state"), func.count().label("n"))
        .where(text(f"jobs.status = '{state}'"))  # a literal: the planner proves the partial index matches
        .group_by(Job.target_id)
        for state in ("queued", "waiting", "leased")
    ]
    counts = union_all(*parts).subquery()
    rows = session.execute(
        select(TargetRow.tag, counts.c.state, counts.c.n).join(counts, counts.c.target_id == TargetRow.id)
    ).all()
    found = {(tag, state): n for tag, state, n in rows}
    for tag in session.scalars(select(TargetRow.tag)):
        for state in ("queued", "waiting", "leased"):
            found.setdefault((tag, state), 0)
    return found


def recent_builds(session: Session, window: timedelta) -> dict[tuple[str, str], int]:
    """(status, failure reason or "") -> builds finished within ``window``."""
    rows = session.execute(
        select(Build.status, func.coalesce(Build.failure_reason, ""), func.count())
        .where(Build.finished_at >= utcnow() - window)
        .group_by(Build.status, Build.failure_reason)
    ).all()
    return {(str(status), reason): n for status, reason, n in rows}


@dataclass(frozen=True)
class Durations:
    """Cumulative counts of build durations per upper bound, as Prometheus histograms want them."""

    buckets: tuple[tuple[float, int], ...]  # (upper bound in seconds, builds at most that long)
    count: int
    total_seconds: float


def build_durations(session: Session, window: timedelta) -> Durations:
    """Bucket counts of successful and failed builds finished within ``window``, computed by SQL."""
    columns = [func.sum(case((Build.duration_s <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(Build.duration_s), 0.0), *columns).where(
            Build.finished_at >= utcnow() - window, Build.duration_s.is_not(None)
        )
    ).one()
    count, total, *cumulative = row
    return Durations(
        tuple(zip(DURATION_BUCKETS, (n or 0 for n in cumulative), strict=True)), count, float(total)
    )


def builders_by_state(session: Session, online_within: timedelta) -> dict[tuple[str, bool], int]:
    """(state, seen within ``online_within``) -> builders."""
    online = func.coalesce(Builder.last_seen >= utcnow() - online_within, False)
    rows = session.execute(select(Builder.state, online, func.count()).group_by(Builder.state, online)).all()
    return {(str(state), bool(is_online)): n for state, is_online, n in rows}


@dataclass(frozen=True)
class FollowerProgress:
    serial: int | None  # applied serial in whole-index mode
    upstream_serial: int | None  # upstream's newest, as the whole-index follower last learned it
    watched: int  # packages on the watch list
    oldest_check: datetime | None  # the watched package checked longest ago


def follower_progress(session: Session) -> FollowerProgress:
    values = dict(
        session.execute(
            select(UpstreamState.key, UpstreamState.value).where(
                UpstreamState.key.in_((SERIAL_KEY, UPSTREAM_SERIAL_KEY))
            )
        ).all()
    )
    watched, oldest = session.execute(select(func.count(), func.min(Watch.checked_at))).one()
    return FollowerProgress(
        serial=int(values[SERIAL_KEY]) if SERIAL_KEY in values else None,
        upstream_serial=int(values[UPSTREAM_SERIAL_KEY]) if UPSTREAM_SERIAL_KEY in values else None,
        watched=watched,
        oldest_check=oldest,
    )


@dataclass(frozen=True)
class BuilderRow:
    name: str
    state: str
    target: str | None
    phase: str | None
    last_seen: datetime | None
    disk_free_bytes: int | None
    job: str | None  # "package version" of the job it holds


def builder_rows(session: Session) -> list[BuilderRow]:
    """Every builder (revoked ones too: the operator sees them) with the job it holds now."""
    rows = session.execute(
        select(
            Builder.name,
            Builder.state,
            Builder.target,
            Builder.phase,
            Builder.last_seen,
            Builder.disk_free_bytes,
            Package.name,
            Version.version,
        )
        .outerjoin(Job, (Job.builder_id == Builder.id) & text("jobs.status = 'leased'"))
        .outerjoin(Version, Version.id == Job.version_id)
        .outerjoin(Package, Package.id == Version.package_id)
        .order_by(Builder.name)
    ).all()
    return [
        BuilderRow(name, str(state), target, phase, seen, disk, f"{package} {version}" if package else None)
        for name, state, target, phase, seen, disk, package, version in rows
    ]


@dataclass(frozen=True)
class FailureRow:
    build_id: int
    finished_at: datetime
    package: str
    version: str
    target: str
    reason: str


def recent_failures(session: Session, limit: int = 15) -> Sequence[FailureRow]:
    """The newest failed builds, read backwards along the ``finished_at`` index."""
    rows = session.execute(
        select(
            Build.id, Build.finished_at, Package.name, Version.version, TargetRow.tag, Build.failure_reason
        )
        .join(Job, Job.id == Build.job_id)
        .join(Version, Version.id == Job.version_id)
        .join(Package, Package.id == Version.package_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .where(Build.status == BuildStatus.failed, Build.finished_at.is_not(None))
        .order_by(Build.finished_at.desc())
        .limit(limit)
    ).all()
    return [FailureRow(b, at, pkg, ver, tag, reason or "unknown") for b, at, pkg, ver, tag, reason in rows]
