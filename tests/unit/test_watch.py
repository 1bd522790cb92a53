"""Watch-list mode against the stand-in upstream: one small request per unchanged project,
stale pages ignored, faults retried, removals propagated to the queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import Job, Package, Version
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream
from wheelmill.upstream import watch
from wheelmill.upstream.client import UpstreamClient, user_agent

TARGET = Target.parse("cp311-cp311-linux_x86_64")


@pytest.fixture
def targets(db: Database) -> dict[str, int]:
    with db.write() as session:
        return queue_sql.ensure_targets(session, [TARGET])


@pytest.fixture
def client(upstream: StandInUpstream) -> Iterator[UpstreamClient]:
    polite = UpstreamClient(
        upstream.simple_url, contact="ops@example.org", base_delay=0.01, sleep=lambda _: None
    )
    yield polite
    polite.close()


def job_states(db: Database) -> dict[str, str]:
    with db.read() as session:
        rows = session.execute(
            select(Version.version, Job.status).join(Job, Job.version_id == Version.id)
        ).all()
        return {version: str(status) for version, status in rows}


def test_new_versions_are_planned_and_an_unchanged_project_costs_one_304(
    db: Database, targets: dict[str, int], upstream: StandInUpstream, client: UpstreamClient
) -> None:
    upstream.add_release("Demo_Pure", "1.0", kind="pure", summary="first")
    upstream.add_release("Demo_Pure", "2.0", kind=None, summary="second")  # binary-only so far
    upstream.add_wheel("Demo_Pure", "2.0", tag="cp311-cp311-win_amd64")
    watch.add_watches(db, ["demo.pure"])
    result = watch.poll(db, client, targets, skip_yanked=False)
    assert result.changed == ["demo-pure"] and result.jobs_queued == 1
    assert job_states(db) == {"1.0": "queued", "2.0": "skipped"}
    with db.read() as session:
        assert session.scalars(select(Package.summary)).one() == "second"  # the latest release's

    before = len(upstream.requests)
    assert watch.poll(db, client, targets, skip_yanked=False).changed == []
    polled = upstream.requests[before:]
    assert [(method, path) for method, path, _ in polled] == [("GET", "/simple/demo-pure/")]
    assert "ops@example.org" in polled[0][2]["User-Agent"] and polled[0][2]["User-Agent"] == user_agent(
        "ops@example.org"
    )

    upstream.add_sdist("Demo_Pure", "2.0")  # the sdist arrives: the binary-only version is built
    watch.poll(db, client, targets, skip_yanked=False)
    assert job_states(db) == {"1.0": "queued", "2.0": "queued"}


def test_removed_and_quarantined_projects_leave_the_queue(
    db: Database, targets: dict[str, int], upstream: StandInUpstream, client: UpstreamClient
) -> None:
    upstream.add_release("gone", "1.0", kind="pure")
    upstream.add_release("gone", "1.1", kind="pure")
    watch.add_watches(db, ["gone"])
    watch.poll(db, client, targets, skip_yanked=False)
    upstream.remove_release("gone", "1.1")
    watch.poll(db, client, targets, skip_yanked=False)
    assert job_states(db) == {"1.0": "queued", "1.1": "cancelled"}
    upstream.quarantine_project("gone")
    result = watch.poll(db, client, targets, skip_yanked=False)
    assert result.changed == ["gone"]
    assert job_states(db) == {"1.0": "cancelled", "1.1": "cancelled"}


@pytest.mark.parametrize("fault", ["500", "429", "truncated", "garbage"])
def test_upstream_faults_are_retried(
    db: Database, targets: dict[str, int], upstream: StandInUpstream, client: UpstreamClient, fault: str
) -> None:
    upstream.add_release("demo", "1.0", kind="pure")
    watch.add_watches(db, ["demo"])
    upstream.fail_next("/simple/demo/", fault, times=2)
    result = watch.poll(db, client, targets, skip_yanked=False)
    assert result.errors == [] and job_states(db) == {"1.0": "queued"}


def test_a_persistent_fault_records_nothing_and_a_stale_page_is_ignored(
    db: Database, targets: dict[str, int], upstream: StandInUpstream, client: UpstreamClient
) -> None:
    upstream.add_release("demo", "1.0", kind="pure")
    watch.add_watches(db, ["demo"])
    upstream.fail_next("/simple/demo/", "500", times=client.attempts)  # every attempt of one poll
    result = watch.poll(db, client, targets, skip_yanked=False)
    assert len(result.errors) == 1 and "gave up after" in result.errors[0]
    assert job_states(db) == {}
    watch.poll(db, client, targets, skip_yanked=False)
    upstream.add_release("demo", "2.0", kind="pure")
    upstream.fail_next("/simple/demo/", "stale")
    watch.poll(db, client, targets, skip_yanked=False)  # an older cached copy: not recorded
    assert job_states(db) == {"1.0": "queued"}
    watch.poll(db, client, targets, skip_yanked=False)
    assert job_states(db) == {"1.0": "queued", "2.0": "queued"}
