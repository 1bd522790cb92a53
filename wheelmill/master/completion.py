"""Finishing a build: publish its staged wheels and record the build in one transaction.

Order matters for crash safety: the wheels are renamed into the file store first, then the
database commits. A crash between the two leaves an unlisted file that ``audit`` finds; the
reverse order could list a file that does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from packaging.tags import parse_tag
from packaging.utils import parse_wheel_filename
from sqlalchemy import select
from sqlalchemy.orm import Session

from wheelmill.db import jobs as queue_sql
from wheelmill.db import pending
from wheelmill.db.engine import Transaction
from wheelmill.db.tables import Build, BuildStatus, File, Job, JobStatus, Package, TargetRow, Version, utcnow
from wheelmill.errors import UploadRefused
from wheelmill.master.context import Master
from wheelmill.master.uploads import StagedWheel
from wheelmill.retry import TRANSIENT_REASONS, after_failure, remedy_applies
from wheelmill.targets import Target
from wheelmill.wheels import covers, rename_platform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What a builder says when its build ends."""

    success: bool
    duration_s: float
    files: tuple[str, ...] = ()
    log_gzip: bytes = b""
    environment: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None
    failure_detail: str | None = None
    apt_packages: dict[str, list[str]] = field(default_factory=dict)  # filename -> Debian packages
    remedy: str | None = None  # a build requirement that would fix this failure (PyPI name)


@dataclass(frozen=True)
class Completed:
    build_id: int
    next: queue_sql.Claim | None  # the builder's next job, when it asked for one


def complete(
    master: Master, builder_id: int, lease_id: str, report: Report, *, next_target: int | None = None
) -> Completed:
    """Record the end of the build under ``lease_id``.

    With ``next_target``, the same transaction leases the builder its next job of that target:
    a busy fleet then costs one request and one write per build, not two of each.
    """
    if report.success:
        build_id, package, status, claimed = _complete_success(
            master, builder_id, lease_id, report, next_target
        )
    else:
        build_id, package, status, claimed = _complete_failure(
            master, builder_id, lease_id, report, next_target
        )
    master.dirty.wakeup.set()
    master.staging.drop(lease_id)
    log.info("build %s under lease %s (%s) ended: %s", build_id, lease_id, package, status)
    return Completed(build_id, claimed.result() if claimed else None)


def _claim_next(
    master: Master, tx: Transaction | Session, builder_id: int, target: int | None
) -> queue_sql.StartedClaim | None:
    """Send the next claim; its result is read after COMMIT, which it rides with on PostgreSQL."""
    if target is None:
        return None
    return queue_sql.start_claim(tx, target, builder_id, master.settings.lease_seconds)


def _complete_success(
    master: Master, builder_id: int, lease_id: str, report: Report, next_target: int | None
) -> tuple[int, str, BuildStatus, queue_sql.StartedClaim | None]:
    with master.db.read() as session:
        held = queue_sql.lease(session, lease_id, builder_id)
    build_id, package = held.build_id, held.package
    staged = [_staged(master, lease_id, name) for name in report.files]
    if not staged:
        raise UploadRefused("a successful build must name the wheels it uploaded", reason="no_files")
    master.logs.save(build_id, report.log_gzip)
    metadata_hashes = {
        w.filename: master.files.store(package, w.filename, w.path, w.metadata) for w in staged
    }
    with master.db.write() as session:
        job = queue_sql.leased_job(session, lease_id, builder_id)  # fenced: the lease may have gone meanwhile
        build = session.get_one(Build, build_id)
        build.finished_at = utcnow()
        build.duration_s = report.duration_s
        build.environment = report.environment
        build.log_size = len(report.log_gzip)
        _record_success(master, session, job, build, staged, metadata_hashes, report)
        # The outbox row commits with the build it describes: the publisher cannot miss it.
        pending.mark(session, projects=[package], logs=[build_id])
        claimed = _claim_next(master, session, builder_id, next_target)
    return build_id, package, BuildStatus.success, claimed


def _complete_failure(
    master: Master, builder_id: int, lease_id: str, report: Report, next_target: int | None
) -> tuple[int, str, BuildStatus, queue_sql.StartedClaim | None]:
    """One write transaction: a failed build uploads nothing, so there is nothing to store first."""
    with master.db.transaction() as tx:
        held = queue_sql.lease(tx, lease_id, builder_id, lock=True)
        if report.log_gzip:  # an empty log needs no file: a missing log reads as empty
            master.logs.save(held.build_id, report.log_gzip)
        failed = _failure(tx, held, report)
        # On PostgreSQL these writes travel with the COMMIT: one round trip (Database.transaction).
        queue_sql.record_failure(tx, held, failed)
        pending.mark_build(tx, held.package, held.build_id)
        claimed = _claim_next(master, tx, builder_id, next_target)
    return held.build_id, held.package, BuildStatus.failed, claimed


def _staged(master: Master, lease_id: str, filename: str) -> StagedWheel:
    staged = master.staging.staged(lease_id, filename)
    if staged is None:
        raise UploadRefused(
            f"{filename!r} was named in the completion but never uploaded", reason="missing_file"
        )
    return staged


def _record_success(
    master: Master,
    session: Session,
    job: Job,
    build: Build,
    staged: list[StagedWheel],
    metadata_hashes: dict[str, str],
    report: Report,
) -> None:
    target = session.get_one(TargetRow, job.target_id)
    build.status = BuildStatus.success
    for wheel in staged:
        session.execute(File.__table__.delete().where(File.filename == wheel.filename))
        row = File(
            version_id=job.version_id,
            build_id=build.id,
            filename=wheel.filename,
            target=target.tag,
            sha256=wheel.sha256,
            size=wheel.size,
            requires_python=wheel.requires_python,
            metadata_sha256=metadata_hashes[wheel.filename],
            apt_packages=report.apt_packages.get(wheel.filename),
        )
        session.add(row)
        session.flush()
        _publish_aliases(master, session, job, row)
    queue_sql.finish(session, job, status=JobStatus.built)
    _cover_other_targets(session, job, staged)


def _publish_aliases(master: Master, session: Session, job: Job, row: File) -> None:
    """Publish the wheel under each alias platform (linux_armv7l -> linux_armv6l), unless a real
    build for that platform exists: a real build always wins over an alias."""
    platforms = {tag.platform for tag in parse_wheel_filename(row.filename)[3]}
    package = session.scalar(
        select(Package.name)
        .join(Version, Version.package_id == Package.id)
        .where(Version.id == job.version_id)
    )
    for platform in platforms:
        for alias_platform in master.settings.platform_aliases.get(platform, ()):
            alias = rename_platform(row.filename, alias_platform)
            existing = session.scalar(select(File).where(File.filename == alias))
            if existing is not None and existing.alias_of is None:
                continue
            if existing is not None:
                session.delete(existing)
                session.flush()
            master.files.link_alias(package, row.filename, alias)
            session.add(
                File(
                    version_id=row.version_id,
                    build_id=row.build_id,
                    filename=alias,
                    target=row.target,
                    sha256=row.sha256,
                    size=row.size,
                    requires_python=row.requires_python,
                    metadata_sha256=row.metadata_sha256,
                    alias_of=row.id,
                    apt_packages=row.apt_packages,
                )
            )


def _cover_other_targets(session: Session, job: Job, staged: list[StagedWheel]) -> None:
    """A pure or abi3 wheel serves other targets too: close their open jobs as covered."""
    others = session.execute(
        select(TargetRow.id, TargetRow.tag).where(TargetRow.id != job.target_id, TargetRow.enabled)
    ).all()
    for wheel in staged:
        tags = frozenset(tag for text in wheel.tags for tag in parse_tag(text))
        covered = [tid for tid, tag in others if covers(tags, Target.parse(tag))]
        queue_sql.cover_other_targets(session, job.version_id, covered, f"covered by {wheel.filename}")


def _failure(tx: Transaction, held: queue_sql.Lease, report: Report) -> queue_sql.FailedBuild:
    """The failed build's record, and the job's next step by the retry rules."""
    reason = report.failure_reason or "unknown"
    remedy, job_reason, not_before = held.remedy, reason, None
    if remedy_applies(reason, report.remedy, held.remedy):
        # Retried once with the missing build dependency provided from the farm's index.
        remedy, next_status = report.remedy, JobStatus.queued
        job_reason = f"retrying with {report.remedy} provided"
    else:
        earlier = queue_sql.earlier_failures(tx, held, reason) if reason in TRANSIENT_REASONS else 0
        step = after_failure(reason, earlier)
        next_status = step.status
        not_before = utcnow() + step.delay if step.delay else None
    return queue_sql.FailedBuild(
        duration_s=report.duration_s,
        environment=report.environment,
        log_size=len(report.log_gzip),
        failure_reason=reason,
        failure_detail=report.failure_detail,
        next_status=next_status,
        job_reason=job_reason,
        not_before=not_before,
        remedy=remedy,
    )
