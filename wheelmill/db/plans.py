"""The planner's reads and writes in bulk: what many versions are made of, then their jobs.

Facts come from two places: the files the changelog announced (``feed_files``, names only) and the
files whose JSON API details are recorded (``sources`` and ``upstream_wheels``). Names are enough to
tell binary-only from buildable and to judge upstream wheels' tags; a build also needs the sdist's
URL, hash and size and its requires-python, so until those are recorded a build decision is written
as a job waiting for them (``Outcome.wait``), which claims never see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from wheelmill.db import bulk
from wheelmill.db.tables import (
    FeedFile,
    Job,
    JobStatus,
    Package,
    Source,
    TargetRow,
    TargetSkip,
    UpstreamWheel,
    Version,
    utcnow,
)
from wheelmill.planning import Decision, Outcome, VersionFacts

# The job status each decision writes; a waiting job with no not_before awaits upstream details.
STATUS = {
    Outcome.build: JobStatus.queued,
    Outcome.skip: JobStatus.skipped,
    Outcome.covered: JobStatus.covered,
    Outcome.wait: JobStatus.waiting,
}
# Jobs a new planning decision may change.
REPLANNABLE = (JobStatus.queued, JobStatus.waiting, JobStatus.skipped, JobStatus.cancelled)


def facts_of_versions(
    session: Session, version_ids: Sequence[int], created: AbstractSet[int] = frozenset()
) -> dict[int, tuple[datetime, VersionFacts]]:
    """version id -> (released_at, facts), in four queries per chunk of versions. Versions ``created``
    in this transaction have no detailed files yet: they are not looked for."""
    conn = session.connection()
    sdists: dict[int, dict[str, str | None]] = {}  # filename -> requires-python; None when not detailed
    detailed: set[int] = set()
    wheels: dict[int, set[str]] = {}
    rows = []
    for chunk in bulk.chunks(version_ids):
        rows.extend(
            conn.execute(
                select(
                    Version.id,
                    Version.released_at,
                    Version.yanked,
                    Version.quarantined | Package.quarantined | Version.removed | Package.removed,
                    Package.skip_reason,
                    Version.skip_reason,
                    Version.package_id,
                )
                .join(Package, Package.id == Version.package_id)
                .where(Version.id.in_(chunk))
            )
        )
        for version_id, filename, sdist in conn.execute(
            select(FeedFile.version_id, FeedFile.filename, FeedFile.sdist).where(
                FeedFile.version_id.in_(chunk)
            )
        ):
            if sdist:
                sdists.setdefault(version_id, {})[filename] = None
            else:
                wheels.setdefault(version_id, set()).add(filename)
        known = [version_id for version_id in chunk if version_id not in created]
        for version_id, filename, requires_python in conn.execute(
            select(Source.version_id, Source.filename, Source.requires_python).where(
                Source.version_id.in_(known)
            )
        ):
            sdists.setdefault(version_id, {})[filename] = requires_python
            detailed.add(version_id)
        for version_id, filename in conn.execute(
            select(UpstreamWheel.version_id, UpstreamWheel.filename).where(
                UpstreamWheel.version_id.in_(known)
            )
        ):
            wheels.setdefault(version_id, set()).add(filename)
    on_targets = _target_skips(conn, {row[-1] for row in rows})
    facts = {}
    for version_id, released_at, yanked, hidden, package_skip, version_skip, package_id in rows:
        own = sdists.get(version_id, {})
        facts[version_id] = (
            released_at,
            VersionFacts(
                sdists=tuple(sorted(own)),
                upstream_wheels=tuple(sorted(wheels.get(version_id, ()))),
                requires_python=next((rp for rp in own.values() if rp), None),
                yanked=yanked,
                quarantined=bool(hidden),
                package_skip=package_skip,
                version_skip=version_skip,
                details_known=version_id in detailed,
                target_skips=on_targets.get((package_id, None), {})
                | on_targets.get((package_id, version_id), {}),
            ),
        )
    return facts


def _target_skips(conn: Connection, package_ids: set[int]) -> dict[tuple[int, int | None], dict[str, str]]:
    """(package id, version id or None for the whole package) -> target tag -> an admin's reason."""
    found: dict[tuple[int, int | None], dict[str, str]] = {}
    for chunk in bulk.chunks(sorted(package_ids)):
        rows = conn.execute(
            select(TargetSkip.package_id, TargetSkip.version_id, TargetRow.tag, TargetSkip.reason)
            .join(TargetRow, TargetRow.id == TargetSkip.target_id)
            .where(TargetSkip.package_id.in_(chunk))
        )
        for package_id, version_id, tag, reason in rows:
            found.setdefault((package_id, version_id), {})[tag] = reason
    return found


def write_decisions_many(
    session: Session,
    decisions: Mapping[int, Mapping[int, Decision]],
    released: Mapping[int, datetime],
    created: AbstractSet[int] = frozenset(),
) -> int:
    """Create or update each version's job per target (version id -> target id -> decision); returns
    how many jobs became queued. ``released`` gives new jobs their order; versions ``created`` in this
    transaction have no jobs to look for.

    Leased, built and failed jobs keep their state. Open, skipped and cancelled jobs take the new
    decision, so a binary-only version's jobs are queued once an sdist arrives. A covered job stays
    covered unless the new decision is to build, since a farm wheel may be what covers it.
    """
    existing: dict[tuple[int, int], tuple[int, JobStatus, str | None]] = {}
    for chunk in bulk.chunks([version_id for version_id in decisions if version_id not in created]):
        for job_id, version_id, target_id, status, reason in session.connection().execute(
            select(Job.id, Job.version_id, Job.target_id, Job.status, Job.reason).where(
                Job.version_id.in_(chunk)
            )
        ):
            existing[version_id, target_id] = (job_id, status, reason)
    now, inserts, updates, queued = utcnow(), [], [], 0
    for version_id, per_target in decisions.items():
        for target_id, decision in per_target.items():
            status = STATUS[decision.outcome]
            job = existing.get((version_id, target_id))
            if job is None:
                inserts.append(
                    {
                        "version_id": version_id,
                        "target_id": target_id,
                        "status": status,
                        "reason": decision.reason,
                        "released_at": released[version_id],
                        "updated_at": now,
                    }
                )
            elif (
                job[1] in REPLANNABLE
                or (job[1] is JobStatus.covered and decision.outcome is not Outcome.build)
            ) and (
                job[1],
                job[2],
            ) != (status, decision.reason):
                updates.append(
                    {
                        "b_id": job[0],
                        "b_status": job[1],
                        "status": status,
                        "reason": decision.reason,
                        "updated_at": now,
                    }
                )
            else:
                continue
            queued += status is JobStatus.queued and (job is None or job[1] is not JobStatus.queued)
    bulk.insert_many(session, Job, inserts, ["version_id", "target_id"])
    # The status read above is part of the match: a claim that leased the job since wins.
    jobs = Job.__table__
    bulk.execute_many(
        session,
        update(jobs)
        .where(jobs.c.id == bindparam("b_id"), jobs.c.status == bindparam("b_status"))
        .values(status=bindparam("status"), reason=bindparam("reason"), updated_at=bindparam("updated_at")),
        updates,
    )
    return queued
