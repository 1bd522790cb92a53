"""The queue's SQL: planning writes, claims, heartbeats, completion and reaping.

This is the only module that changes a job's status. Each function is one named query or a
short sequence of them, run inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Update, and_, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from wheelmill.db.tables import (
    OPEN_JOB_STATES,
    Build,
    BuildStatus,
    Job,
    JobStatus,
    Package,
    Source,
    TargetRow,
    UpstreamWheel,
    Version,
    utcnow,
)
from wheelmill.errors import LeaseLost
from wheelmill.planning import Decision, Outcome, VersionFacts
from wheelmill.retry import after_lost_builder
from wheelmill.targets import Target

# Jobs a new planning decision may change (see write_decisions); the bulk planner in feed.py shares it.
REPLANNABLE = (JobStatus.queued, JobStatus.waiting, JobStatus.skipped, JobStatus.cancelled)
STATUS_BY_OUTCOME = {
    Outcome.build: JobStatus.queued,
    Outcome.skip: JobStatus.skipped,
    Outcome.covered: JobStatus.covered,
}


# A literal, not a bound parameter: only then can SQLite (and PostgreSQL's generic plans) prove the
# query matches the partial claim index ``WHERE status = 'queued'``.
QUEUED = text("jobs.status = 'queued'")


@dataclass(frozen=True)
class Claim:
    """A job handed to a builder, with everything it needs to build it."""

    job_id: int
    build_id: int
    lease_id: str
    lease_expires: datetime
    package: str
    version: str
    canonical_version: str
    target: str
    cflags: str | None
    source_url: str
    source_filename: str
    source_sha256: str
    source_size: int
    remedy: str | None


def ensure_targets(
    session: Session, targets: Iterable[Target], cflags: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Rows for the configured targets, with their compiler flags when given (tag -> CFLAGS, a target
    left out has none); returns tag -> id."""
    ids: dict[str, int] = {}
    for target in targets:
        row = session.scalar(select(TargetRow).where(TargetRow.tag == str(target)))
        if row is None:
            row = TargetRow(
                tag=str(target), python_version=target.python_version_text, platform=target.platform
            )
            session.add(row)
        if cflags is not None:
            row.cflags = cflags.get(str(target))
        session.flush()
        ids[str(target)] = row.id
    return ids


def target_tags(session: Session) -> list[str]:
    return list(session.scalars(select(TargetRow.tag)))


def version_facts(session: Session, version_id: int) -> tuple[Version, VersionFacts]:
    version = session.get_one(Version, version_id)
    package = session.get_one(Package, version.package_id)
    sdists = session.execute(
        select(Source.filename, Source.requires_python).where(Source.version_id == version_id)
    ).all()
    wheels = session.scalars(
        select(UpstreamWheel.filename).where(UpstreamWheel.version_id == version_id)
    ).all()
    facts = VersionFacts(
        sdists=tuple(row.filename for row in sdists),
        upstream_wheels=tuple(wheels),
        requires_python=next((row.requires_python for row in sdists if row.requires_python), None),
        yanked=version.yanked,
        quarantined=version.quarantined or package.quarantined or version.removed or package.removed,
        package_skip=package.skip_reason,
        version_skip=version.skip_reason,
    )
    return version, facts


def write_decisions(session: Session, version: Version, decisions: dict[int, Decision]) -> int:
    """Create or update this version's job per target (target id -> decision); returns jobs queued.

    Leased, built and failed jobs keep their state. Open, skipped and cancelled jobs take the new
    decision, so a binary-only version's jobs are queued once an sdist arrives. A covered job stays
    covered unless the new decision is to build, since a farm wheel may be what covers it.
    """
    existing = {
        job.target_id: job for job in session.scalars(select(Job).where(Job.version_id == version.id))
    }
    queued = 0
    for tid, decision in decisions.items():
        status = STATUS_BY_OUTCOME[decision.outcome]
        job = existing.get(tid)
        if job is None:
            session.add(
                Job(
                    version_id=version.id,
                    target_id=tid,
                    status=status,
                    reason=decision.reason,
                    released_at=version.released_at,
                )
            )
        elif job.status in REPLANNABLE or (
            # a farm wheel may cover it too: only another "not a build" decision replaces covered
            job.status is JobStatus.covered and decision.outcome is not Outcome.build
        ):
            job.status, job.reason, job.updated_at = status, decision.reason, utcnow()
        else:
            continue
        queued += status is JobStatus.queued
    return queued


def cancel_open_jobs(session: Session, version_ids: Sequence[int], reason: str) -> list[int]:
    """Cancel the open jobs of versions that went away; returns the cancelled job ids.

    Leased jobs are cancelled too: the builder learns it at its next heartbeat (lease refused).
    """
    if not version_ids:
        return []
    rows = session.scalars(
        update(Job)
        .where(Job.version_id.in_(version_ids), Job.status.in_(OPEN_JOB_STATES))
        .values(
            status=JobStatus.cancelled, reason=reason, lease_id=None, lease_expires=None, updated_at=utcnow()
        )
        .returning(Job.id)
    ).all()
    return list(rows)


def _claim_statement(skip_locked: bool) -> Update:
    """Built once per backend: on the hot path only the parameters change."""
    jobs = Job.__table__
    best = (
        select(jobs.c.id)
        .where(jobs.c.target_id == bindparam("target"), QUEUED)
        .order_by(jobs.c.priority.desc(), jobs.c.released_at.desc(), jobs.c.id)
        .limit(1)
    )
    if skip_locked:
        best = best.with_for_update(skip_locked=True)
    return (
        update(jobs)
        .where(jobs.c.id == best.scalar_subquery())
        .values(
            status=JobStatus.leased,
            lease_id=bindparam("lease_id"),
            lease_expires=bindparam("expires"),
            builder_id=bindparam("builder"),
            attempts=jobs.c.attempts + 1,
            updated_at=bindparam("now"),
        )
        .returning(jobs.c.id, jobs.c.version_id, jobs.c.remedy)
    )


_CLAIM = {True: _claim_statement(skip_locked=False), False: _claim_statement(skip_locked=True)}
_NEW_BUILD = (
    insert(Build.__table__)
    .values(
        job_id=bindparam("job_id"),
        builder_id=bindparam("builder"),
        lease_id=bindparam("lease_id"),
        status=BuildStatus.running,
        started_at=bindparam("now"),
    )
    .returning(Build.__table__.c.id)
)
_CLAIM_INFO = (
    select(
        Package.name,
        Version.version,
        Version.canonical,
        TargetRow.tag,
        TargetRow.cflags,
        Source.url,
        Source.filename,
        Source.sha256,
        Source.size,
    )
    .join(Version, Version.package_id == Package.id)
    .join(Source, Source.version_id == Version.id)
    .join(TargetRow, TargetRow.id == bindparam("target"))
    .where(Version.id == bindparam("version_id"))
    .order_by(Source.yanked, Source.filename.like("%.tar.gz").desc(), Source.id)
    .limit(1)
)


def claim(session: Session, target: int, builder: int, lease_seconds: float, is_sqlite: bool) -> Claim | None:
    """Lease the best open job of ``target`` to ``builder``: highest priority, then newest release.

    One indexed UPDATE: PostgreSQL skips rows other claims hold (``FOR UPDATE SKIP LOCKED``);
    SQLite callers hold the write lock already (``BEGIN IMMEDIATE``).
    """
    now = utcnow()
    params = {
        "target": target,
        "builder": builder,
        "lease_id": str(uuid.uuid4()),
        "expires": now + timedelta(seconds=lease_seconds),
        "now": now,
    }
    conn = session.connection()
    row = conn.execute(_CLAIM[is_sqlite], params).first()
    if row is None:
        return None
    build_id = conn.execute(_NEW_BUILD, {**params, "job_id": row.id}).scalar_one()
    info = conn.execute(_CLAIM_INFO, {"target": target, "version_id": row.version_id}).one()
    return Claim(
        job_id=row.id,
        build_id=build_id,
        lease_id=params["lease_id"],
        lease_expires=params["expires"],
        package=info.name,
        version=info.version,
        canonical_version=info.canonical,
        target=info.tag,
        cflags=info.cflags,
        source_url=info.url,
        source_filename=info.filename,
        source_sha256=info.sha256,
        source_size=info.size,
        remedy=row.remedy,
    )


@dataclass(frozen=True)
class Lease:
    """Who holds a live lease, and on what."""

    job_id: int
    version_id: int
    target_id: int
    build_id: int
    package: str
    version: str
    remedy: str | None


_LEASE = (
    select(
        Job.id,
        Job.version_id,
        Job.target_id,
        Job.remedy,
        Build.id.label("build_id"),
        Package.name,
        Version.version,
    )
    .join(Build, Build.lease_id == Job.lease_id)
    .join(Version, Version.id == Job.version_id)
    .join(Package, Package.id == Version.package_id)
    .where(
        Job.lease_id == bindparam("lease_id"),
        Job.builder_id == bindparam("builder"),
        text("jobs.status = 'leased'"),
        Job.lease_expires > bindparam("now"),
    )
)
_LOCKED_LEASE = _LEASE.with_for_update(of=Job.__table__)


def lease(session: Session, lease_id: str, builder: int, *, lock: bool = False) -> Lease:
    """The live lease ``lease_id`` of ``builder`` in one indexed query; LeaseLost if it is gone.

    ``lock`` holds the job's row until the transaction ends (PostgreSQL; SQLite writers hold the
    whole database), so a reaper or admin cannot take the lease between this check and the write.
    """
    row = session.execute(
        _LOCKED_LEASE if lock else _LEASE, {"lease_id": lease_id, "builder": builder, "now": utcnow()}
    ).first()
    if row is None:
        raise LeaseLost(f"lease {lease_id!r} expired or was replaced")
    return Lease(row.id, row.version_id, row.target_id, row.build_id, row.name, row.version, row.remedy)


def leased_job(session: Session, lease_id: str, builder: int) -> Job:
    """The job this builder holds under ``lease_id``, locked; LeaseLost if expired or replaced."""
    job = session.scalar(
        select(Job)
        .where(
            Job.lease_id == lease_id,
            Job.builder_id == builder,
            Job.status == JobStatus.leased,
            Job.lease_expires > utcnow(),
        )
        .with_for_update()
    )
    if job is None:
        raise LeaseLost(f"lease {lease_id!r} expired or was replaced")
    return job


_EXTEND = (
    update(Job.__table__)
    .where(
        Job.__table__.c.lease_id == bindparam("lease"),
        Job.__table__.c.builder_id == bindparam("builder"),
        text("jobs.status = 'leased'"),
        Job.__table__.c.lease_expires > bindparam("now"),
    )
    .values(lease_expires=bindparam("expires"))
)


def extend_lease(session: Session, lease_id: str, builder: int, lease_seconds: float) -> datetime:
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    params = {"lease": lease_id, "builder": builder, "now": now, "expires": expires}
    if session.connection().execute(_EXTEND, params).rowcount != 1:
        raise LeaseLost(f"lease {lease_id!r} expired or was replaced")
    return expires


# The SET clauses come from the parameters' names (the columns), bound at execution.
_END_BUILD = update(Build.__table__).where(Build.__table__.c.id == bindparam("build"))
_RELEASE = (
    update(Job.__table__)
    .where(Job.__table__.c.id == bindparam("job"))
    .values(lease_id=None, lease_expires=None)
)
_EARLIER_FAILURES = select(func.count(Build.id)).where(
    Build.job_id == bindparam("job"),
    Build.id != bindparam("build"),
    Build.failure_reason == bindparam("reason"),
)


def earlier_failures(session: Session, held: Lease, reason: str) -> int:
    """Earlier builds of this lease's job that failed for ``reason``."""
    params = {"job": held.job_id, "build": held.build_id, "reason": reason}
    return session.connection().execute(_EARLIER_FAILURES, params).scalar_one()


@dataclass(frozen=True)
class FailedBuild:
    """How a failed build ended, and what becomes of its job."""

    duration_s: float
    environment: dict[str, object]
    log_size: int
    failure_reason: str
    failure_detail: str | None
    next_status: JobStatus
    job_reason: str
    not_before: datetime | None
    remedy: str | None  # the build requirement the job's next build is given


def record_failure(session: Session, held: Lease, failed: FailedBuild) -> None:
    """End a failed build and its lease in two prebuilt UPDATEs: no ORM objects on this hot path."""
    conn = session.connection()
    now = utcnow()
    conn.execute(
        _END_BUILD,
        {
            "build": held.build_id,
            "status": BuildStatus.failed,
            "finished_at": now,
            "duration_s": failed.duration_s,
            "environment": failed.environment,
            "log_size": failed.log_size,
            "failure_reason": failed.failure_reason,
            "failure_detail": failed.failure_detail,
        },
    )
    conn.execute(
        _RELEASE,
        {
            "job": held.job_id,
            "status": failed.next_status,
            "reason": failed.job_reason,
            "not_before": failed.not_before,
            "remedy": failed.remedy,
            "updated_at": now,
        },
    )


def finish(
    session: Session,
    job: Job,
    *,
    status: JobStatus,
    reason: str | None = None,
    not_before: datetime | None = None,
) -> None:
    """Release a job's lease and give it its next status."""
    job.status = status
    job.reason = reason
    job.lease_id = None
    job.lease_expires = None
    job.not_before = not_before
    job.updated_at = utcnow()


def cover_other_targets(session: Session, version_id: int, target_ids: Sequence[int], reason: str) -> int:
    """Close other open jobs of a version as covered by a wheel that serves their targets."""
    if not target_ids:
        return 0
    result = session.execute(
        update(Job)
        .where(
            Job.version_id == version_id,
            Job.target_id.in_(target_ids),
            Job.status.in_((JobStatus.queued, JobStatus.waiting)),
        )
        .values(status=JobStatus.covered, reason=reason, updated_at=utcnow())
    )
    return result.rowcount


def reap(session: Session, max_attempts: int, now: datetime | None = None) -> list[int]:
    """Return expired leases to the queue (or fail them after ``max_attempts``), and wake waiting jobs."""
    now = now or utcnow()
    expired = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.leased, Job.lease_expires < now)
        .with_for_update(skip_locked=True)
    ).all()
    for job in expired:
        session.execute(
            update(Build)
            .where(Build.lease_id == job.lease_id, Build.status == BuildStatus.running)
            .values(status=BuildStatus.lost, finished_at=now, failure_reason="builder_lost")
        )
        step = after_lost_builder(job.attempts, max_attempts)
        reason = (
            f"builder lost {job.attempts} times"
            if step.status is JobStatus.failed
            else "builder lost; retrying"
        )
        finish(session, job, status=step.status, reason=reason)
    session.execute(
        update(Job)
        .where(Job.status == JobStatus.waiting, Job.not_before <= now)
        .values(status=JobStatus.queued, not_before=None, updated_at=now)
    )
    return [job.id for job in expired]


def queue_depth(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(TargetRow.tag, func.count(Job.id))
        .select_from(TargetRow)
        .outerjoin(Job, and_(Job.target_id == TargetRow.id, Job.status == JobStatus.queued))
        .group_by(TargetRow.tag)
    ).all()
    return {tag: count for tag, count in rows}
