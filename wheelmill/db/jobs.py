"""The queue's SQL: planning writes, claims, heartbeats, completion and reaping.

This is the only module that changes a job's status. Each function is one named query or a
short sequence of them, run inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session

from wheelmill.db.engine import Statement, Transaction
from wheelmill.db.tables import (
    OPEN_JOB_STATES,
    Build,
    BuildStatus,
    Job,
    JobStatus,
    TargetRow,
    utcnow,
)
from wheelmill.errors import LeaseLost
from wheelmill.retry import after_lost_builder
from wheelmill.targets import Target


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


# The literal 'queued' (not a parameter) lets SQLite and PostgreSQL's generic plans prove the
# query matches the partial claim index ``WHERE status = 'queued'``; the subquery reads that
# index in order and stops at its first row. The builder's state is read here, in the claim,
# not from the API's token cache: a builder an admin paused or killed a moment ago (its build
# aborted at its last heartbeat) must not be handed that job straight back.
_CLAIM_SQL = """
UPDATE jobs SET status = 'leased', lease_id = :lease, lease_expires = :expires, builder_id = :builder,
    attempts = attempts + 1, updated_at = :now
WHERE id = (
    SELECT id FROM jobs WHERE target_id = :target AND status = 'queued'
    ORDER BY priority DESC, released_at DESC, id LIMIT 1 {lock}
) AND EXISTS (SELECT 1 FROM builders WHERE id = :builder AND state = 'active')
RETURNING id, version_id, remedy
"""
_CLAIM = Statement(_CLAIM_SQL.format(lock=""))
_NEW_BUILD = Statement(
    "INSERT INTO builds (job_id, builder_id, lease_id, status, started_at) "
    "VALUES (:job, :builder, :lease, 'running', :now) RETURNING id"
)
_CLAIM_INFO_SQL = """
SELECT p.name, v.version, v.canonical, t.tag, t.cflags, s.url, s.filename, s.sha256, s.size
FROM {versions}
JOIN packages p ON p.id = v.package_id
JOIN sources s ON s.version_id = v.id
JOIN targets t ON t.id = :target
WHERE v.id = {version}
ORDER BY s.yanked, s.filename LIKE '%.tar.gz' DESC, s.id
LIMIT 1
"""
_CLAIM_INFO = Statement(_CLAIM_INFO_SQL.format(versions="versions v", version=":version"))
# PostgreSQL is a round trip away: the same three steps in one statement. Two masters' claims
# skip each other's row (SKIP LOCKED) instead of queueing on it.
_CLAIM_ONE_TRIP = Statement.postgresql_only(
    "WITH claimed AS ("
    + _CLAIM_SQL.format(lock="FOR UPDATE SKIP LOCKED")
    + "), build AS (INSERT INTO builds (job_id, builder_id, lease_id, status, started_at) "
    "SELECT id, :builder, :lease, 'running', :now FROM claimed RETURNING id) "
    + _CLAIM_INFO_SQL.replace("SELECT", "SELECT claimed.id, build.id, claimed.remedy,", 1).format(
        versions="claimed CROSS JOIN build JOIN versions v ON v.id = claimed.version_id",
        version="claimed.version_id",
    )
)


def claim(tx: Transaction | Session, target: int, builder: int, lease_seconds: float) -> Claim | None:
    """Lease the best open job of ``target`` to ``builder``: highest priority, then newest release.

    One indexed UPDATE: PostgreSQL skips rows other claims hold (``FOR UPDATE SKIP LOCKED``);
    SQLite writers hold the write lock already (``BEGIN IMMEDIATE``).
    """
    return start_claim(tx, target, builder, lease_seconds).result()


class StartedClaim:
    """A claim sent within a transaction, read with :meth:`result`.

    Read it after the transaction has ended and, on PostgreSQL, the claim's answer travels back
    with the COMMIT's: one round trip for both (``Database.transaction`` pipelines them).
    """

    def __init__(self, lease_id: str, expires: datetime, cursor: Any = None, done: Claim | None = None):
        self._lease_id, self._expires, self._cursor, self._done = lease_id, expires, cursor, done

    def result(self) -> Claim | None:
        if self._cursor is None:
            return self._done
        row = self._cursor.fetchone()
        if row is None:
            return None
        job_id, build_id, remedy, *info = row
        return Claim(job_id, build_id, self._lease_id, self._expires, *info, remedy=remedy)


def start_claim(tx: Transaction | Session, target: int, builder: int, lease_seconds: float) -> StartedClaim:
    """:func:`claim`, with its result read later (see :class:`StartedClaim`)."""
    tx = _transaction(tx)
    now = utcnow()
    lease_id = str(uuid.uuid4())
    expires = now + timedelta(seconds=lease_seconds)
    params = {"target": target, "builder": builder, "lease": lease_id, "expires": expires, "now": now}
    if not tx.is_sqlite:
        return StartedClaim(lease_id, expires, cursor=tx.execute(_CLAIM_ONE_TRIP, params))
    row = tx.execute(_CLAIM, params).fetchone()
    if row is None:
        return StartedClaim(lease_id, expires)
    job_id, version_id, remedy = row
    (build_id,) = tx.execute(
        _NEW_BUILD, {"job": job_id, "builder": builder, "lease": lease_id, "now": now}
    ).fetchone()
    info = tx.execute(_CLAIM_INFO, {"target": target, "version": version_id}).fetchone()
    claimed = Claim(job_id, build_id, lease_id, expires, *info, remedy=remedy)
    return StartedClaim(lease_id, expires, done=claimed)


def _transaction(tx: Transaction | Session) -> Transaction:
    return Transaction.of(tx) if isinstance(tx, Session) else tx


@dataclass(frozen=True)
class Lease:
    """Who holds a live lease, and on what."""

    job_id: int
    version_id: int
    target_id: int
    build_id: int
    package: str
    version: str
    remedy: str | None  # the build requirement this job's builds are given, if any


_LEASE_SQL = """
SELECT j.id, j.version_id, j.target_id, b.id, p.name, v.version, j.remedy
FROM jobs j
JOIN builds b ON b.lease_id = j.lease_id
JOIN versions v ON v.id = j.version_id
JOIN packages p ON p.id = v.package_id
WHERE j.lease_id = :lease AND j.builder_id = :builder AND j.status = 'leased' AND j.lease_expires > :now
"""
_LEASE = Statement(_LEASE_SQL)
_LOCKED_LEASE = Statement(_LEASE_SQL, postgresql=_LEASE_SQL + "FOR UPDATE OF j")


def lease(tx: Transaction | Session, lease_id: str, builder: int, *, lock: bool = False) -> Lease:
    """The live lease ``lease_id`` of ``builder`` in one indexed query; LeaseLost if it is gone.

    ``lock`` holds the job's row until the transaction ends (PostgreSQL; SQLite writers hold the
    whole database), so a reaper or admin cannot take the lease between this check and the write.
    """
    params = {"lease": lease_id, "builder": builder, "now": utcnow()}
    row = _transaction(tx).execute(_LOCKED_LEASE if lock else _LEASE, params).fetchone()
    if row is None:
        raise LeaseLost(f"lease {lease_id!r} expired or was replaced")
    return Lease(*row)


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


def hand_back(session: Session, lease_id: str, builder: int, reason: str) -> None:
    """End the build under a live lease as aborted and put its job back in the queue.

    For builds that end without a verdict on the package: an admin killed the builder, or the
    builder is stopping. The abort stamps its finish, so it counts among the builds that ended.
    It is no attempt: a long build through two fleet restarts must not be one lost builder away
    from being given up (``max_attempts``).
    """
    job = leased_job(session, lease_id, builder)
    job.attempts = max(0, job.attempts - 1)
    session.execute(
        update(Build)
        .where(Build.lease_id == lease_id)
        .values(status=BuildStatus.aborted, finished_at=utcnow())
    )
    finish(session, job, status=JobStatus.queued, reason=reason)


def live_leases(session: Session, lease_ids: Sequence[str]) -> set[str]:
    """Which of ``lease_ids`` a builder still holds (expired ones included until reaped)."""
    if not lease_ids:
        return set()
    held = select(Job.lease_id).where(Job.lease_id.in_(lease_ids), Job.status == JobStatus.leased)
    return {lease for lease in session.scalars(held) if lease is not None}


_EXTEND = Statement(
    "UPDATE jobs SET lease_expires = :expires "
    "WHERE lease_id = :lease AND builder_id = :builder AND status = 'leased' AND lease_expires > :now"
)


def extend_lease(tx: Transaction | Session, lease_id: str, builder: int, lease_seconds: float) -> datetime:
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    params = {"lease": lease_id, "builder": builder, "now": now, "expires": expires}
    if _transaction(tx).execute(_EXTEND, params).rowcount != 1:
        raise LeaseLost(f"lease {lease_id!r} expired or was replaced")
    return expires


_END_BUILD = Statement(
    "UPDATE builds SET status = 'failed', finished_at = :now, duration_s = :duration, "
    "environment = :environment, log_size = :log_size, failure_reason = :reason, "
    "failure_detail = :detail WHERE id = :build"
)
_RELEASE = Statement(
    "UPDATE jobs SET status = :status, reason = :reason, lease_id = NULL, lease_expires = NULL, "
    "not_before = :not_before, remedy = :remedy, updated_at = :now WHERE id = :job"
)
_EARLIER_FAILURES = Statement(
    "SELECT count(*) FROM builds WHERE job_id = :job AND id <> :build AND failure_reason = :reason"
)


def earlier_failures(tx: Transaction, held: Lease, reason: str) -> int:
    """Earlier builds of this lease's job that failed for ``reason``."""
    params = {"job": held.job_id, "build": held.build_id, "reason": reason}
    return tx.execute(_EARLIER_FAILURES, params).fetchone()[0]


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


def record_failure(tx: Transaction, held: Lease, failed: FailedBuild) -> None:
    """End a failed build and its lease: two UPDATEs by primary key."""
    now = utcnow()
    build = {
        "build": held.build_id,
        "now": now,
        "duration": failed.duration_s,
        "environment": failed.environment,
        "log_size": failed.log_size,
        "reason": failed.failure_reason,
        "detail": failed.failure_detail,
    }
    tx.execute(_END_BUILD, build)
    job = {
        "job": held.job_id,
        "status": failed.next_status,
        "reason": failed.job_reason,
        "not_before": failed.not_before,
        "remedy": failed.remedy,
        "now": now,
    }
    tx.execute(_RELEASE, job)


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


def reap_due(session: Session, now: datetime | None = None) -> bool:
    """Whether :func:`reap` has anything to do: a lease expired, or a waiting job's time came.

    Two indexed reads, so the reaper takes the write lock (on SQLite, the whole database's, for a
    few milliseconds of ORM work) only when it has work, not every pass while builders wait on it.
    """
    now = now or utcnow()
    expired = select(Job.id).where(Job.status == JobStatus.leased, Job.lease_expires < now).limit(1)
    woken = select(Job.id).where(Job.status == JobStatus.waiting, Job.not_before <= now).limit(1)
    return session.scalar(expired) is not None or session.scalar(woken) is not None


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


# The status as a literal, not a bound parameter: SQLite then knows every entry of the claim
# index's partial index is queued and counts the index alone, instead of reading each job's row
# to check its status (0.2 s against 0.67 s at a million queued jobs).
_QUEUED = literal_column(f"'{JobStatus.queued}'")


def queue_depth(session: Session) -> dict[str, int]:
    """Queued jobs per target tag; a target with none counts 0."""
    counts = dict(
        session.execute(
            select(Job.target_id, func.count()).where(Job.status == _QUEUED).group_by(Job.target_id)
        ).all()
    )
    targets = session.execute(select(TargetRow.id, TargetRow.tag)).all()
    return {tag: counts.get(target_id, 0) for target_id, tag in targets}
