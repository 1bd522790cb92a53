"""The SQL of offline bundles: the wheels the farm knows for a version, and the jobs a bundle waits on.

A bundle never changes a job's status (``wheelmill.db.jobs`` owns that); it only raises the
priority of open jobs so that the claim hands them out first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from wheelmill.db.catalog import canonical_version
from wheelmill.db.tables import (
    OPEN_JOB_STATES,
    Build,
    File,
    Job,
    JobStatus,
    Package,
    UpstreamWheel,
    Version,
    utcnow,
)


@dataclass(frozen=True)
class KnownWheel:
    """A wheel of a version: built or imported by the farm, or listed upstream."""

    filename: str
    sha256: str
    size: int
    upstream_url: str | None  # None for the farm's own file, served under /files/NAME/


@dataclass(frozen=True)
class JobState:
    """Where a job stands, with its latest build for the log link."""

    job_id: int
    status: JobStatus
    reason: str | None
    build_id: int | None
    failure_reason: str | None  # the classifier's word for the latest build's failure
    failure_detail: str | None


def find_version(session: Session, name: str, version: str) -> int | None:
    """The id of ``name`` ``version`` (any spelling), if the farm has recorded it and it is not removed."""
    return session.scalar(
        select(Version.id)
        .join(Package, Package.id == Version.package_id)
        .where(
            Package.name == canonicalize_name(name),
            Version.canonical == canonical_version(version),
            Version.removed.is_(False),
        )
    )


def known_wheels(session: Session, version_id: int) -> list[KnownWheel]:
    """The farm's wheels of a version, then upstream's."""
    farm = session.execute(
        select(File.filename, File.sha256, File.size).where(
            File.version_id == version_id
        )
    ).all()
    upstream = session.execute(
        select(UpstreamWheel.filename, UpstreamWheel.sha256, UpstreamWheel.size, UpstreamWheel.url).where(
            UpstreamWheel.version_id == version_id
        )
    ).all()
    return [KnownWheel(row.filename, row.sha256, row.size, None) for row in farm] + [
        KnownWheel(row.filename, row.sha256, row.size, row.url) for row in upstream
    ]


def job_of(session: Session, version_id: int, target_id: int) -> JobState | None:
    states = _job_states(session, (Job.version_id == version_id) & (Job.target_id == target_id))
    return next(iter(states.values()), None)


def job_states(session: Session, job_ids: Sequence[int]) -> dict[int, JobState]:
    return _job_states(session, Job.id.in_(job_ids)) if job_ids else {}


def prioritise(session: Session, job_id: int, priority: int) -> None:
    """Raise an open job's priority to at least ``priority``."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(OPEN_JOB_STATES), Job.priority < priority)
        .values(priority=priority, updated_at=utcnow())
    )


def _job_states(session: Session, where: ColumnElement[bool]) -> dict[int, JobState]:
    latest = select(func.max(Build.id)).where(Build.job_id == Job.id).correlate(Job).scalar_subquery()
    rows = session.execute(
        select(
            Job.id,
            Job.status,
            Job.reason,
            Build.id.label("build_id"),
            Build.failure_reason,
            Build.failure_detail,
        )
        .outerjoin(Build, Build.id == latest)
        .where(where)
    ).all()
    return {
        row.id: JobState(row.id, row.status, row.reason, row.build_id, row.failure_reason, row.failure_detail)
        for row in rows
    }
