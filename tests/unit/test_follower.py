"""Whole-index following against the stand-in upstream, on SQLite and PostgreSQL: every kind of change
in the feed, replays, timestamps going backwards, and an upstream that fails."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from wheelmill.db import admin as admin_sql
from wheelmill.db import builders as builder_sql
from wheelmill.db import details, feed, pending, views
from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import (
    Builder,
    FeedFile,
    Job,
    JobStatus,
    Package,
    PackageAlias,
    Source,
    TargetRow,
    UpstreamState,
    UpstreamWheel,
    Version,
)
from wheelmill.errors import LeaseLost, UpstreamError
from wheelmill.planner import plan_target_backfill
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream
from wheelmill.upstream.client import UpstreamClient
from wheelmill.upstream.follower import FollowResult, drain_details, follow_changelog

ARM = Target.parse("cp311-cp311-linux_armv7l")
X86 = Target.parse("cp311-cp311-linux_x86_64")


@pytest.fixture
def up() -> Iterator[StandInUpstream]:
    with StandInUpstream() as index:
        yield index


@pytest.fixture
def targets(db: Database) -> dict[str, int]:
    with db.write() as session:
        return queue_sql.ensure_targets(session, [ARM])


def follow(
    db: Database, up: StandInUpstream, targets: dict[str, int], attempts: int = 3, **options: Any
) -> FollowResult:
    marked(db)  # what earlier runs marked: marked() tells what this one did
    client = UpstreamClient(up.simple_url, attempts=attempts, sleep=lambda _: None)
    try:
        return follow_changelog(db, client, targets, skip_yanked=False, **options)
    finally:
        client.close()


def marked(db: Database) -> set[str]:
    """Project pages marked for the publisher since the last call (and taken off the outbox)."""
    with db.read() as session:
        outbox = pending.take(session, limit=10_000)
    with db.transaction() as tx:
        pending.done(tx, outbox.marks)
    return set(outbox.projects)


def jobs(db: Database) -> dict[tuple[str, str], tuple[JobStatus, str | None]]:
    """(package, version) -> (status, reason) of the ARM job."""
    with db.read() as session:
        rows = session.execute(
            select(Package.name, Version.version, Job.status, Job.reason)
            .join(Version, Version.package_id == Package.id)
            .join(Job, Job.version_id == Version.id)
        )
        return {(name, version): (status, reason) for name, version, status, reason in rows}


def state(db: Database) -> dict[str, Any]:
    """Everything the follower writes, comparable across runs."""
    with db.read() as session:
        return {
            "packages": set(
                session.execute(
                    select(Package.name, Package.removed, Package.quarantined, Package.last_serial)
                )
            ),
            "aliases": set(session.scalars(select(PackageAlias.alias))),
            "versions": set(
                session.execute(
                    select(
                        Package.name,
                        Version.version,
                        Version.canonical,
                        Version.removed,
                        Version.yanked,
                        Version.yanked_reason,
                        Version.quarantined,
                    ).join(Package, Package.id == Version.package_id)
                )
            ),
            "sources": set(session.execute(select(Source.filename, Source.sha256, Source.size, Source.url))),
            "wheels": set(session.execute(select(UpstreamWheel.filename, UpstreamWheel.sha256))),
            "jobs": jobs(db),
            "progress": set(session.execute(select(UpstreamState.key, UpstreamState.value))),
        }


def lease_a_job(db: Database, targets: dict[str, int]) -> tuple[queue_sql.Claim, int]:
    with db.write() as session:
        builder_sql.create_token(session, "pi-1")
        session.flush()
        builder = session.scalar(select(Builder.id).where(Builder.name == "pi-1"))
        assert builder is not None
        claim = queue_sql.claim(session, targets[str(ARM)], builder, 60)
        assert claim is not None
        return claim, builder


def assert_builder_is_stopped(db: Database, claim: queue_sql.Claim, builder: int) -> None:
    with db.write() as session, pytest.raises(LeaseLost):  # what its next heartbeat hears
        queue_sql.extend_lease(session, claim.lease_id, builder, 60)


def test_a_new_project_with_an_sdist_becomes_a_queued_job(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    sdist = up.add_release("demo", "1.0", requires_python=">=3.8")
    assert sdist is not None

    result = follow(db, up, targets)

    assert (marked(db), result.jobs_queued, result.serial, result.details_pending) == (
        {"demo"},
        1,
        up.serial,
        0,
    )
    with db.read() as session:
        source = session.scalars(select(Source)).one()
    assert (source.filename, source.sha256, source.size) == (sdist.filename, sdist.sha256, sdist.size)
    assert (source.url, source.requires_python) == (up.url + sdist.path, ">=3.8")
    assert jobs(db) == {("demo", "1.0"): (JobStatus.queued, None)}
    with db.read() as session:
        assert feed.stored_serial(session) == up.serial


def test_other_spellings_are_aliases_of_the_canonical_name(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("Demo_Pure", "1.0.0-beta")
    up.add_release("demo.pure", "2.0")

    follow(db, up, targets)

    got = state(db)
    assert {name for name, *_ in got["packages"]} == {"demo-pure"}
    assert got["aliases"] == {"Demo_Pure", "demo.pure"}
    assert {(version, canonical) for _, version, canonical, *_ in got["versions"]} == {
        ("1.0.0-beta", "1b0"),
        ("2.0", "2"),
    }
    assert set(jobs(db).values()) == {(JobStatus.queued, None)}


def test_a_binary_only_version_is_built_once_its_sdist_arrives(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("binonly", "1.0", kind=None)
    up.add_wheel("binonly", "1.0", "cp312-cp312-manylinux_2_17_x86_64")
    follow(db, up, targets)
    assert jobs(db) == {("binonly", "1.0"): (JobStatus.skipped, "binary-only: no sdist upstream")}

    up.add_sdist("binonly", "1.0")
    result = follow(db, up, targets)

    assert (result.jobs_queued, marked(db)) == (1, {"binonly"})
    assert jobs(db) == {("binonly", "1.0"): (JobStatus.queued, None)}


def test_an_upstream_wheel_for_the_target_covers_it(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("pure", "1.0")
    wheel = up.add_wheel("pure", "1.0", "py3-none-any")

    follow(db, up, targets)

    assert jobs(db) == {("pure", "1.0"): (JobStatus.covered, f"upstream has {wheel.filename}")}
    assert {filename for filename, _ in state(db)["wheels"]} == {wheel.filename}


def test_removing_the_sdist_cancels_the_build_and_stops_its_builder(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    sdist = up.add_release("demo", "1.0")
    assert sdist is not None
    follow(db, up, targets)
    claim, builder = lease_a_job(db, targets)

    up.remove_file("demo", sdist.filename)
    follow(db, up, targets)

    assert marked(db) == {"demo"}
    assert state(db)["sources"] == set()
    assert jobs(db) == {("demo", "1.0"): (JobStatus.skipped, "binary-only: no sdist upstream")}
    assert_builder_is_stopped(db, claim, builder)


def test_a_removed_release_leaves_the_index_and_its_build_stops(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0", upload_time=datetime(2024, 1, 1, tzinfo=UTC))
    up.add_release("demo", "2.0", upload_time=datetime(2024, 2, 1, tzinfo=UTC))
    follow(db, up, targets)
    claim, builder = lease_a_job(db, targets)  # the newest release first: 2.0

    up.remove_release("demo", "2.0")
    follow(db, up, targets)

    assert marked(db) == {"demo"}
    assert jobs(db) == {
        ("demo", "1.0"): (JobStatus.queued, None),
        ("demo", "2.0"): (JobStatus.cancelled, "removed upstream"),
    }
    assert {(version, removed) for _, version, _, removed, *_ in state(db)["versions"]} == {
        ("1.0", False),
        ("2.0", True),
    }
    assert {filename for filename, *_ in state(db)["sources"]} == {"demo-1.0.tar.gz"}
    assert_builder_is_stopped(db, claim, builder)


def test_a_removed_project_leaves_the_index(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    up.add_release("other", "1.0")
    follow(db, up, targets)

    up.remove_project("demo")
    follow(db, up, targets)

    assert marked(db) == {"demo"}
    with db.read() as session:
        assert list(views.package_names(session)) == ["other"]
    assert jobs(db)[("demo", "1.0")] == (JobStatus.cancelled, "removed upstream")
    assert {filename for filename, *_ in state(db)["sources"]} == {"other-1.0.tar.gz"}


def test_a_yank_takes_its_reason_from_the_json_api(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    follow(db, up, targets)

    up.yank("demo", "1.0", "broken on arm")
    follow(db, up, targets)
    assert {(yanked, reason) for *_, yanked, reason, _ in state(db)["versions"]} == {(True, "broken on arm")}

    up.unyank("demo", "1.0")
    follow(db, up, targets)
    assert {(yanked, reason) for *_, yanked, reason, _ in state(db)["versions"]} == {(False, None)}


def test_a_quarantined_project_is_hidden_and_not_built_until_cleared(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("suspect", "1.0")
    follow(db, up, targets)

    up.quarantine_project("suspect")
    follow(db, up, targets)
    with db.read() as session:
        assert list(views.package_names(session)) == []
    assert jobs(db) == {("suspect", "1.0"): (JobStatus.cancelled, "quarantined upstream")}

    up.clear_project_quarantine("suspect")
    result = follow(db, up, targets)
    with db.read() as session:
        assert list(views.package_names(session)) == ["suspect"]
    assert jobs(db) == {("suspect", "1.0"): (JobStatus.queued, None)}
    assert result.jobs_queued == 1


def test_a_quarantined_release_is_not_built_until_cleared(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    up.add_release("demo", "2.0")
    follow(db, up, targets)

    up.quarantine_release("demo", "2.0")
    follow(db, up, targets)
    assert jobs(db)[("demo", "2.0")] == (JobStatus.cancelled, "quarantined upstream")
    assert jobs(db)[("demo", "1.0")] == (JobStatus.queued, None)

    up.clear_release_quarantine("demo", "2.0")
    follow(db, up, targets)
    assert jobs(db)[("demo", "2.0")] == (JobStatus.queued, None)


def test_ownership_changes_are_ignored(db: Database, up: StandInUpstream, targets: dict[str, int]) -> None:
    up.add_release("demo", "1.0")
    follow(db, up, targets)
    before = state(db)
    requests = len(up.requests)

    up.add_role("demo", "Maintainer", "alice")
    result = follow(db, up, targets)

    assert (result.events, marked(db), result.jobs_queued) == (1, set(), 0)
    after = state(db)
    assert after.pop("progress") == {("serial", str(up.serial)), ("upstream_serial", str(up.serial))}
    assert {key: value for key, value in before.items() if key != "progress"} == after
    assert [path for method, path, _ in up.requests[requests:] if method == "GET"] == []


def test_replaying_the_feed_in_other_batches_leaves_the_same_state(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("Demo", "1.0")
    up.add_wheel("demo", "1.0", "cp311-cp311-manylinux_2_17_armv7l")
    up.add_release("demo", "2.0")
    up.yank("demo", "2.0", "oops")
    up.add_release("gone", "1.0")
    up.remove_project("gone")
    up.add_release("binonly", "1.0", kind=None)
    up.add_wheel("binonly", "1.0", "cp39-cp39-win32")
    follow(db, up, targets, batch_size=1)
    once = state(db)

    with db.write() as session:
        feed.save_serial(session, 0)
    again = follow(db, up, targets)

    assert state(db) == once
    assert again.jobs_queued == 0


def test_timestamps_going_backwards_do_not_reorder_the_feed(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0", upload_time=datetime(2037, 6, 1, tzinfo=UTC))
    up.add_release("demo", "2.0", upload_time=datetime(2037, 1, 1, tzinfo=UTC))
    up.remove_release("demo", "1.0")  # stamped now: before 1.0's upload, yet it comes after it

    follow(db, up, targets)

    live = {version for _, version, _, removed, *_ in state(db)["versions"] if not removed}
    assert live == {"2.0"}
    assert jobs(db) == {("demo", "2.0"): (JobStatus.queued, None)}


def test_a_failing_json_api_is_retried(db: Database, up: StandInUpstream, targets: dict[str, int]) -> None:
    up.add_release("demo", "1.0")
    for fault in ("500", "429", "truncated"):
        up.fail_next("/pypi/demo/", fault, method="GET")

    result = follow(db, up, targets, attempts=4)

    assert (result.jobs_queued, result.details_pending) == (1, 0)


def test_a_failing_feed_is_retried(db: Database, up: StandInUpstream, targets: dict[str, int]) -> None:
    up.add_release("demo", "1.0")
    up.fail_next("/pypi", "xmlrpc-fault", times=2, method="POST")

    assert follow(db, up, targets).jobs_queued == 1


def test_a_feed_that_keeps_failing_leaves_the_serial_where_it_was(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    follow(db, up, targets)
    up.add_release("demo", "2.0")
    up.fail_next("/pypi", "xmlrpc-fault", times=3, method="POST")

    with pytest.raises(UpstreamError, match="gave up after 3 attempts"):
        follow(db, up, targets)

    with db.read() as session:
        assert feed.stored_serial(session) == up.serial - 2
    assert set(jobs(db)) == {("demo", "1.0")}
    assert follow(db, up, targets).jobs_queued == 1


def test_a_json_api_that_keeps_failing_keeps_the_details_owed(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    up.fail_next("/pypi/demo/", "500", times=3, method="GET")

    with pytest.raises(UpstreamError, match=r"GET JSON API of 'demo': gave up after 3 attempts"):
        follow(db, up, targets)

    # Planned from the feed already; the build waits for the sdist's URL, hash and size.
    assert (state(db)["sources"], jobs(db)) == (
        set(),
        {("demo", "1.0"): (JobStatus.waiting, "awaiting upstream file details")},
    )
    result = follow(db, up, targets)
    assert (result.jobs_queued, result.details_pending) == (1, 0)
    assert jobs(db) == {("demo", "1.0"): (JobStatus.queued, None)}


def test_a_stale_json_answer_is_not_recorded(
    db: Database, up: StandInUpstream, targets: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    up.add_release("demo", "1.0")
    up.add_wheel("demo", "1.0", "py3-none-any")
    up.fail_next("/pypi/demo/", "stale", method="GET")  # a cache from before the wheel

    with caplog.at_level(logging.WARNING, logger="wheelmill.upstream.follower"):
        result = follow(db, up, targets)

    assert result.details_pending == 1
    assert "demo: upstream sent a stale copy" in caplog.text
    assert (state(db)["sources"], state(db)["wheels"]) == (set(), set())
    # The feed named the wheel: the job is covered without the JSON API.
    assert jobs(db)[("demo", "1.0")][0] is JobStatus.covered
    result = follow(db, up, targets)
    assert result.details_pending == 0
    assert {filename for filename, _ in state(db)["wheels"]} == {"demo-1.0-py3-none-any.whl"}


def test_a_new_target_is_planned_over_existing_versions(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    for version in ("1.0", "1.1", "2.0"):
        up.add_release("demo", version)
    up.add_release("bin", "1.0", kind=None)
    up.add_wheel("bin", "1.0", "cp311-cp311-manylinux_2_17_x86_64")
    follow(db, up, targets)
    with db.write() as session:
        x86 = queue_sql.ensure_targets(session, [X86])[str(X86)]

    assert plan_target_backfill(db, x86, batch_size=2) == 3

    with db.read() as session:
        rows = session.execute(
            select(Package.name, Version.version, Job.status)
            .join(Version, Version.package_id == Package.id)
            .join(Job, Job.version_id == Version.id)
            .join(TargetRow, TargetRow.id == Job.target_id)
            .where(TargetRow.tag == str(X86))
        )
        assert {(name, version): status for name, version, status in rows} == {
            ("demo", "1.0"): JobStatus.queued,
            ("demo", "1.1"): JobStatus.queued,
            ("demo", "2.0"): JobStatus.queued,
            ("bin", "1.0"): JobStatus.covered,  # its manylinux wheel installs on x86_64
        }


def test_the_feed_alone_plans_every_version_and_the_details_drain_decides_the_builds(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("newer", "1.0", requires_python=">=3.12", upload_time=datetime(2024, 3, 1, tzinfo=UTC))
    up.add_release("plain", "1.0", upload_time=datetime(2024, 2, 1, tzinfo=UTC))
    up.add_release("pure", "1.0", upload_time=datetime(2024, 1, 1, tzinfo=UTC))
    pure = up.add_wheel("pure", "1.0", "py3-none-any")
    up.add_release("binonly", "1.0", kind=None, upload_time=datetime(2023, 1, 1, tzinfo=UTC))
    up.add_wheel("binonly", "1.0", "cp39-cp39-win32")
    requests = len(up.requests)

    result = follow(db, up, targets, details_seconds=0)

    assert [path for method, path, _ in up.requests[requests:] if method == "GET"] == []
    waiting = (JobStatus.waiting, "awaiting upstream file details")
    assert jobs(db) == {
        ("newer", "1.0"): waiting,
        ("plain", "1.0"): waiting,
        ("pure", "1.0"): (JobStatus.covered, f"upstream has {pure.filename}"),
        ("binonly", "1.0"): (JobStatus.skipped, "binary-only: no sdist upstream"),
    }
    assert (result.jobs_queued, result.details_pending) == (0, 4)
    with db.read() as session:  # the drain's order: newest release first, as builders claim
        owed = details.owed_projects(session, None, 10)
    assert [project.name for project in owed] == ["newer", "plain", "pure", "binonly"]
    with db.write() as session:  # nothing to claim yet: a build needs the sdist's URL and hash
        assert queue_sql.claim(session, targets[str(ARM)], _builder(session), 60) is None

    client = UpstreamClient(up.simple_url, sleep=lambda _: None)
    try:
        drained = drain_details(db, client, targets, skip_yanked=False, seconds=None, rate=None)
    finally:
        client.close()

    assert (drained.details_fetched, drained.details_pending, drained.jobs_queued) == (4, 0, 1)
    assert jobs(db)[("newer", "1.0")] == (
        JobStatus.skipped,
        "requires-python '>=3.12' excludes Python 3.11",
    )
    assert jobs(db)[("plain", "1.0")] == (JobStatus.queued, None)
    with db.read() as session:
        assert session.scalars(select(FeedFile.filename)).all() == []  # every name now has its details


def test_an_admin_yank_survives_what_the_follower_learns(
    db: Database, up: StandInUpstream, targets: dict[str, int]
) -> None:
    up.add_release("demo", "1.0")
    follow(db, up, targets)
    with db.write() as session:
        admin_sql.set_yanked(
            session, admin_sql.select_versions(session, "demo", "1.0").versions, "leaks keys"
        )

    def yank() -> tuple[bool, str | None, str | None]:
        with db.read() as session:
            version = session.scalars(select(Version)).one()
            return version.yanked, version.yanked_reason, version.yanked_by

    up.yank("demo", "1.0", "upstream's reason")
    follow(db, up, targets)
    assert yank() == (True, "leaks keys", "admin")
    up.unyank("demo", "1.0")
    follow(db, up, targets)
    assert yank() == (True, "leaks keys", "admin")
    with db.read() as session:  # upstream's file is not yanked any more, whatever the admin holds
        assert session.scalars(select(Source.yanked)).all() == [False]

    with db.write() as session:  # the admin lets go: upstream decides again
        admin_sql.set_yanked(session, admin_sql.select_versions(session, "demo", "1.0").versions, None)
    up.yank("demo", "1.0", "upstream's reason")
    follow(db, up, targets)
    assert yank() == (True, "upstream's reason", "upstream")


def _builder(session: Session) -> int:
    builder_sql.create_token(session, "pi-0")
    session.flush()
    found = session.scalar(select(Builder.id).where(Builder.name == "pi-0"))
    assert found is not None
    return found
