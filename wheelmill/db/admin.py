"""The SQL behind admin actions: skip, rebuild, yank, remove, import, and the audit's reads.

Each function runs inside the caller's transaction and is idempotent: running an action twice
leaves the database as running it once did. Job changes here are the admin's counterpart of
``wheelmill.db.jobs``: they never touch a leased job, which belongs to the builder holding it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from wheelmill.db import catalog
from wheelmill.db.feed import ADMIN
from wheelmill.db.jobs import cancel_open_jobs
from wheelmill.db.tables import (
    Build,
    BuildStatus,
    File,
    Job,
    JobStatus,
    Package,
    PackageAlias,
    TargetRow,
    TargetSkip,
    Version,
    utcnow,
)
from wheelmill.errors import NotFound

ADMIN_PRIORITY = 100  # above anything the planner or bundles set: an admin asked for it now
_REQUEUABLE = (JobStatus.built, JobStatus.failed, JobStatus.queued, JobStatus.waiting)


@dataclass(frozen=True)
class Selected:
    """A package and the versions an admin named (all live versions when none was named)."""

    package: Package
    versions: list[Version]
    named_version: bool

    @property
    def version_ids(self) -> list[int]:
        return [version.id for version in self.versions]


def select_versions(session: Session, name: str, version: str | None = None) -> Selected:
    """The package ``name`` (or one of its aliases) and its version ``version``; NotFound if unknown."""
    package = catalog.find_package(session, name) or session.scalar(
        select(Package).join(PackageAlias).where(PackageAlias.alias == name)
    )
    if package is None:
        raise NotFound(f"no package {canonicalize_name(name)!r} on this farm")
    query = select(Version).where(Version.package_id == package.id).order_by(Version.id)
    if version is None:
        return Selected(package, list(session.scalars(query.where(Version.removed.is_(False)))), False)
    found = session.scalar(query.where(Version.canonical == catalog.canonical_version(version)))
    if found is None:
        raise NotFound(f"no version {version!r} of {package.name!r} on this farm")
    return Selected(package, [found], True)


def target_id(session: Session, tag: str) -> int:
    found = session.scalar(select(TargetRow.id).where(TargetRow.tag == tag))
    if found is None:
        raise NotFound(f"no target {tag!r} on this farm")
    return found


def set_skip_reason(session: Session, selected: Selected, reason: str | None) -> None:
    """A named version gets the reason; otherwise the package does, so future versions skip too."""
    if selected.named_version:
        for version in selected.versions:
            version.skip_reason = reason
    else:
        selected.package.skip_reason = reason


def remember_target_skip(session: Session, selected: Selected, target: int, reason: str) -> None:
    """An admin's skip on one target: a named version's is its own, a package's covers its versions
    to come. Skipping again replaces the reason."""
    version_id = selected.versions[0].id if selected.named_version else None
    session.execute(
        delete(TargetSkip).where(
            TargetSkip.package_id == selected.package.id,
            TargetSkip.target_id == target,
            TargetSkip.version_id.is_(None) if version_id is None else TargetSkip.version_id == version_id,
        )
    )
    session.add(
        TargetSkip(package_id=selected.package.id, version_id=version_id, target_id=target, reason=reason)
    )


def forget_target_skips(session: Session, selected: Selected, target: int | None) -> None:
    """Undo skips on one target (or all): a named version's own, or every one of the package's."""
    where = [TargetSkip.package_id == selected.package.id]
    if selected.named_version:
        where.append(TargetSkip.version_id.in_(selected.version_ids))
    if target is not None:
        where.append(TargetSkip.target_id == target)
    session.execute(delete(TargetSkip).where(*where))


def requeue(session: Session, version_ids: Sequence[int], target: int | None) -> int:
    """Queue these versions' jobs again at admin priority, even built or failed ones; returns how many.

    Leased jobs are building already; skipped and covered ones need ``unskip`` or have a wheel; a
    job still awaiting its sdist's URL and hash cannot build yet, and is queued when they arrive.
    """
    awaiting_details = (Job.status == JobStatus.waiting) & Job.not_before.is_(None)  # see db/plans.py
    query = update(Job).where(Job.version_id.in_(version_ids), Job.status.in_(_REQUEUABLE), ~awaiting_details)
    if target is not None:
        query = query.where(Job.target_id == target)
    result = session.execute(
        query.values(
            status=JobStatus.queued,
            reason="rebuild requested by an admin",
            priority=ADMIN_PRIORITY,
            attempts=0,
            not_before=None,
            updated_at=utcnow(),
        )
    )
    return result.rowcount


def raise_priority(session: Session, version_ids: Sequence[int]) -> int:
    """Move these versions' open jobs to the front of their targets' queues."""
    result = session.execute(
        update(Job)
        .where(Job.version_id.in_(version_ids), Job.status.in_((JobStatus.queued, JobStatus.waiting)))
        .values(priority=ADMIN_PRIORITY, updated_at=utcnow())
    )
    return result.rowcount


def set_yanked(session: Session, versions: Sequence[Version], reason: str | None) -> int:
    """Yank (``reason`` may be "") or unyank (``reason`` None); returns how many versions changed."""
    changed = 0
    for version in versions:
        # Marked as the admin's, so the follower leaves it; an unyank hands the version back to upstream.
        wanted = (reason is not None, reason or None, ADMIN if reason is not None else None)
        if (version.yanked, version.yanked_reason, version.yanked_by) != wanted:
            version.yanked, version.yanked_reason, version.yanked_by = wanted
            changed += 1
    return changed


def remove(session: Session, selected: Selected, reason: str) -> list[str]:
    """Take versions (or the whole package) off the farm; returns the filenames to delete.

    The rows of versions and builds stay for history, marked removed and skipped so that the
    follower seeing the release again does not rebuild it.
    """
    skip = f"removed by an admin: {reason}"
    for version in selected.versions:
        version.removed, version.skip_reason = True, skip
    if not selected.named_version:
        selected.package.removed, selected.package.skip_reason = True, skip
    cancel_open_jobs(session, selected.version_ids, skip)
    return list(
        session.scalars(
            delete(File).where(File.version_id.in_(selected.version_ids)).returning(File.filename)
        )
    )


@dataclass(frozen=True)
class ImportedFile:
    """A wheel built elsewhere, validated, about to be listed."""

    filename: str
    target: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str


def existing_sha256(session: Session, filename: str) -> str | None:
    return session.scalar(select(File.sha256).where(File.filename == filename))


def record_import(
    session: Session, version: Version, target: int, wheel: ImportedFile, log_size: int | None
) -> int | None:
    """List an imported wheel; with a log, under a synthetic build so its log page exists.

    The version's job for the target counts as built unless a builder holds it; returns the
    synthetic build's id, or None without a log.
    """
    job = session.scalar(select(Job).where(Job.version_id == version.id, Job.target_id == target))
    if job is None:
        job = Job(version_id=version.id, target_id=target, released_at=version.released_at)
        session.add(job)
    if job.status is not JobStatus.leased:
        job.status, job.reason, job.updated_at = JobStatus.built, "imported by an admin", utcnow()
    session.flush()
    build_id = None
    if log_size is not None:
        now = utcnow()
        build = Build(
            job_id=job.id,
            lease_id=str(uuid.uuid4()),
            status=BuildStatus.success,
            started_at=now,
            finished_at=now,
            duration_s=0.0,
            environment={"imported": wheel.filename},
            log_size=log_size,
        )
        session.add(build)
        session.flush()
        build_id = build.id
    session.add(
        File(
            version_id=version.id,
            build_id=build_id,
            filename=wheel.filename,
            target=wheel.target,
            sha256=wheel.sha256,
            size=wheel.size,
            requires_python=wheel.requires_python,
            metadata_sha256=wheel.metadata_sha256,
        )
    )
    return build_id


@dataclass(frozen=True)
class ListedFile:
    """A files row as the audit compares it with the disk."""

    package: str
    filename: str
    sha256: str
    version: str
    version_removed: bool


def published_files(session: Session) -> Iterator[ListedFile]:
    """Every file of a published package (their wheels must be on disk), streamed."""
    query = (
        select(Package.name, File.filename, File.sha256, Version.version, Version.removed)
        .join(Version, Version.id == File.version_id)
        .join(Package, Package.id == Version.package_id)
        .where(Package.removed.is_(False), Package.quarantined.is_(False))
        .order_by(Package.name, File.filename)
        .execution_options(yield_per=5000)
    )
    for row in session.execute(query):
        yield ListedFile(*row)
