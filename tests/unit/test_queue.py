"""The queue's SQL on SQLite and PostgreSQL: claim order, one holder per job, leases, reaping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from wheelmill.db import builders as builder_sql
from wheelmill.db import catalog
from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import Build, Builder, BuilderState, BuildStatus, Job, JobStatus, Source
from wheelmill.errors import LeaseLost
from wheelmill.planner import plan_versions
from wheelmill.targets import Target

X86 = Target.parse("cp311-cp311-linux_x86_64")
ARM = Target.parse("cp311-cp311-linux_armv7l")


def add_version(
    db: Database, name: str, version: str, day: int, targets: dict[str, int], sdist: bool = True
) -> int:
    with db.write() as session:
        package = catalog.ensure_package(session, name)
        row, _ = catalog.ensure_version(session, package, version, datetime(2024, 1, day, tzinfo=UTC))
        if sdist:
            session.add(
                Source(
                    version_id=row.id,
                    filename=f"{name}-{version}.tar.gz",
                    url="http://x/",
                    sha256="0" * 64,
                    size=1,
                )
            )
        session.flush()
        plan_versions(session, [row.id], targets, skip_yanked=False)
        return row.id


def make_builder(db: Database, name: str) -> int:
    with db.write() as session:
        builder_sql.create_token(session, name)
        session.flush()
        return session.scalar(select(Builder.id).where(Builder.name == name))  # type: ignore[return-value]


def claim(db: Database, target: int, builder: int, lease: float = 60) -> queue_sql.Claim | None:
    with db.write() as session:
        return queue_sql.claim(session, target, builder, lease)


@pytest.fixture
def targets(db: Database) -> dict[str, int]:
    with db.write() as session:
        return queue_sql.ensure_targets(session, [X86, ARM])


def test_newest_release_first_then_priority_first_overall(db: Database, targets: dict[str, int]) -> None:
    for day, version in enumerate(["1.0", "2.0", "3.0"], 1):
        add_version(db, "demo", version, day, targets)
    old = add_version(db, "other", "0.1", 1, targets)
    with db.write() as session:
        job = session.scalars(
            select(Job).where(Job.version_id == old, Job.target_id == targets[str(X86)])
        ).one()
        job.priority = 10  # an admin (or a bundle) asked for it
    builder = make_builder(db, "b1")
    order = [claim(db, targets[str(X86)], builder) for _ in range(5)]
    expected = [("other", "0.1"), ("demo", "3.0"), ("demo", "2.0"), ("demo", "1.0")]
    assert [(c.package, c.version) for c in order if c] == expected
    assert order[-1] is None  # nothing left for this target; the ARM jobs are not handed out


def test_concurrent_claims_never_share_a_job(db: Database, targets: dict[str, int]) -> None:
    for number in range(60):
        add_version(db, f"pkg{number}", "1.0", 1 + number % 28, targets)
    builders = [make_builder(db, f"b{n}") for n in range(4)]
    claimed: list[int] = []
    lock = threading.Lock()

    def work(builder: int) -> None:
        while (job := claim(db, targets[str(X86)], builder)) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [threading.Thread(target=work, args=(b,)) for b in builders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 60


def test_lease_is_fenced_and_reaped(db: Database, targets: dict[str, int]) -> None:
    add_version(db, "demo", "1.0", 1, targets)
    first, second = make_builder(db, "first"), make_builder(db, "second")
    job = claim(db, targets[str(X86)], first, lease=30)
    assert job is not None
    with db.write() as session, pytest.raises(LeaseLost):
        queue_sql.extend_lease(session, job.lease_id, second, 30)  # not its lease
    later = datetime.now(UTC) + timedelta(seconds=31)
    with db.read() as session:
        assert not queue_sql.reap_due(session)
        assert queue_sql.reap_due(session, now=later)
    with db.write() as session:
        assert queue_sql.reap(session, max_attempts=2, now=later) == [job.job_id]
    with db.write() as session, pytest.raises(LeaseLost):
        queue_sql.extend_lease(session, job.lease_id, first, 30)  # the vanished builder's lease is gone
    with db.read() as session:
        assert session.scalars(select(Build.status)).all() == [BuildStatus.lost]
    again = claim(db, targets[str(X86)], second, lease=30)
    assert again is not None and again.job_id == job.job_id and again.lease_id != job.lease_id
    with db.write() as session:
        queue_sql.reap(session, max_attempts=2, now=datetime.now(UTC) + timedelta(seconds=31))
    with db.read() as session:
        failed = session.get_one(Job, job.job_id)
        assert (failed.status, failed.reason) == (JobStatus.failed, "builder lost 2 times")


def test_binary_only_version_is_queued_once_an_sdist_arrives(db: Database, targets: dict[str, int]) -> None:
    version = add_version(db, "binonly", "1.0", 1, targets, sdist=False)
    with db.read() as session:
        assert {j.status for j in session.scalars(select(Job))} == {JobStatus.skipped}
    with db.write() as session:
        sdist = Source(
            version_id=version, filename="binonly-1.0.tar.gz", url="http://x/", sha256="0" * 64, size=1
        )
        session.add(sdist)
        session.flush()
        queued = plan_versions(session, [version], targets, skip_yanked=False)
    assert queued == 2


def test_cancelled_jobs_leave_the_queue(db: Database, targets: dict[str, int]) -> None:
    version = add_version(db, "gone", "1.0", 1, targets)
    builder = make_builder(db, "b")
    job = claim(db, targets[str(X86)], builder)
    assert job is not None
    with db.write() as session:
        assert len(queue_sql.cancel_open_jobs(session, [version], "removed upstream")) == 2
    with db.write() as session, pytest.raises(LeaseLost):  # the builder learns at its next heartbeat
        queue_sql.extend_lease(session, job.lease_id, builder, 30)
    assert claim(db, targets[str(ARM)], builder) is None


def test_a_failed_build_is_recorded_as_the_orm_reads_it(db: Database, targets: dict[str, int]) -> None:
    add_version(db, "demo", "1.0", 1, targets)
    builder = make_builder(db, "b1")
    job = claim(db, targets[str(X86)], builder)
    assert job is not None
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    with db.transaction() as tx:
        held = queue_sql.lease(tx, job.lease_id, builder, lock=True)
        assert (held.job_id, held.build_id, held.package) == (job.job_id, job.build_id, "demo")
        failed = queue_sql.FailedBuild(
            duration_s=12.5,
            environment={"python": "3.11.7", "pip": ["24.0"]},
            log_size=0,
            failure_reason="network",
            failure_detail="timed out",
            next_status=JobStatus.waiting,
            job_reason="network",
            not_before=retry_at,
            remedy=None,
        )
        queue_sql.record_failure(tx, held, failed)
    with db.read() as session:
        build = session.get_one(Build, job.build_id)
        row = session.get_one(Job, job.job_id)
        assert (build.status, build.failure_reason, build.duration_s) == (BuildStatus.failed, "network", 12.5)
        assert build.environment == {"python": "3.11.7", "pip": ["24.0"]}
        assert (row.status, row.lease_id, row.not_before is not None) == (JobStatus.waiting, None, True)
    # The reaper wakes it at the time the completion stored, not before.
    with db.read() as session:
        assert not queue_sql.reap_due(session, now=retry_at - timedelta(seconds=1))
        assert queue_sql.reap_due(session, now=retry_at + timedelta(seconds=1))
    with db.write() as session:
        queue_sql.reap(session, max_attempts=3, now=retry_at - timedelta(seconds=1))
        assert session.get_one(Job, job.job_id).status is JobStatus.waiting
        queue_sql.reap(session, max_attempts=3, now=retry_at + timedelta(seconds=1))
        assert session.get_one(Job, job.job_id).status is JobStatus.queued
    with pytest.raises(LeaseLost), db.transaction() as tx:
        queue_sql.lease(tx, job.lease_id, builder)  # the lease ended with the build


def test_a_paused_or_killed_builder_is_handed_nothing(db: Database, targets: dict[str, int]) -> None:
    add_version(db, "demo", "1.0", 1, targets)
    builder = make_builder(db, "pi")
    for state in (BuilderState.paused, BuilderState.killed):
        with db.write() as session:  # an admin, in another process: no cache of this master knows yet
            session.get_one(Builder, builder).state = state
        assert claim(db, targets[str(X86)], builder) is None
    with db.write() as session:
        session.get_one(Builder, builder).state = BuilderState.active
    assert claim(db, targets[str(X86)], builder) is not None


def test_a_handed_back_build_ends_aborted_and_its_job_is_claimable_again(
    db: Database, targets: dict[str, int]
) -> None:
    add_version(db, "demo", "1.0", 1, targets)
    stopping, other = make_builder(db, "stopping"), make_builder(db, "other")
    job = claim(db, targets[str(X86)], stopping)
    assert job is not None
    with db.read() as session:
        assert queue_sql.live_leases(session, [job.lease_id, "never-issued"]) == {job.lease_id}
    with db.write() as session, pytest.raises(LeaseLost):
        queue_sql.hand_back(session, job.lease_id, other, "not its lease")
    with db.write() as session:
        queue_sql.hand_back(session, job.lease_id, stopping, "released by a stopping builder")
    with db.read() as session:
        build = session.scalars(select(Build)).one()
        assert build.status is BuildStatus.aborted
        assert build.finished_at is not None  # it ended: it counts among the builds that finished
        assert queue_sql.live_leases(session, [job.lease_id]) == set()
        assert session.get_one(Job, job.job_id).reason == "released by a stopping builder"
    again = claim(db, targets[str(X86)], other)
    assert again is not None and again.job_id == job.job_id


def test_builds_handed_back_are_not_counted_as_attempts(db: Database, targets: dict[str, int]) -> None:
    add_version(db, "demo", "1.0", 1, targets)
    builder = make_builder(db, "pi")
    for _ in range(3):  # three restarts of the fleet, each during the build
        held = claim(db, targets[str(X86)], builder, lease=30)
        assert held is not None
        with db.write() as session:
            queue_sql.hand_back(session, held.lease_id, builder, "released by a stopping builder")
    lost = claim(db, targets[str(X86)], builder, lease=30)
    assert lost is not None
    with db.write() as session:  # then the builder is lost once
        queue_sql.reap(session, max_attempts=2, now=datetime.now(UTC) + timedelta(seconds=31))
    with db.read() as session:
        job = session.get_one(Job, lost.job_id)
        assert (job.status, job.reason) == (JobStatus.queued, "builder lost; retrying")
