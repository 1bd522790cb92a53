"""The master's publishing passes, on a real SQLite farm and output directory."""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from wheelmill.config import Settings
from wheelmill.db import catalog
from wheelmill.db.tables import Build, Builder, BuildStatus, Job, JobStatus
from wheelmill.master import publishing
from wheelmill.master.context import Master
from wheelmill.master.site_totals import QUEUE_SHARE, RENEW_SECONDS, BuildTally, QueueDepth
from wheelmill.publish.publisher import Publisher
from wheelmill.runner import open_master


@pytest.fixture
def master(tmp_path: Path) -> Master:
    return open_master(Settings(data_dir=tmp_path / "data", targets=["cp311-cp311-linux_armv7l"]))


def add_packages(master: Master, *names: str) -> None:
    with master.db.write() as session:
        for name in names:
            catalog.ensure_version(session, catalog.ensure_package(session, name), "1.0")


def add_finished_builds(master: Master, count: int) -> list[int]:
    """`count` failed builds of demo 1.0, each finished: each has a log page to publish."""
    now = datetime.now(UTC)
    with master.db.write() as session:
        version, _ = catalog.ensure_version(session, catalog.ensure_package(session, "demo"), "1.0")
        pi = Builder(name="pi-1", token_hash="0" * 64, target="cp311-cp311-linux_armv7l")
        job = Job(
            version_id=version.id,
            target_id=master.target_ids["cp311-cp311-linux_armv7l"],
            status=JobStatus.failed,
            released_at=now,
        )
        session.add_all([pi, job])
        session.flush()
        builds = [
            Build(
                job_id=job.id,
                builder_id=pi.id,
                lease_id=f"lease-{number}",
                status=BuildStatus.failed,
                started_at=now,
                finished_at=now,
                failure_reason="missing-header",
            )
            for number in range(count)
        ]
        session.add_all(builds)
        session.flush()
        return [build.id for build in builds]


def test_a_burst_is_published_in_one_pass(master: Master) -> None:
    publisher = publishing.make_publisher(master)
    www = master.settings.resolved_output_dir
    add_packages(master, "alpha", "beta", "gamma")
    for name in ("alpha", "beta", "gamma"):  # three builds finishing at once
        master.dirty.mark(project=name)
    assert publishing.publish_dirty(master, publisher) is True
    for name in ("alpha", "beta", "gamma"):
        assert (www / "simple" / name / "index.json").is_file()
        assert (www / "project" / name / "index.html").is_file()
    assert {"alpha/", "beta/", "gamma/"} <= set((www / "simple/index.html").read_text().split('"'))
    assert (www / "stats/index.html").is_file()
    assert publishing.publish_dirty(master, publisher) is False  # nothing left for a second pass

    with master.db.write() as session:
        catalog.mark_package_removed(session, "beta")
    master.dirty.mark(project="beta")
    publishing.publish_dirty(master, publisher)
    assert not (www / "simple/beta").exists() and not (www / "project/beta").exists()
    assert (www / "simple/alpha/index.json").is_file()


def test_publish_all_uses_worker_processes(master: Master) -> None:
    add_packages(master, *(f"p{number}" for number in range(12)))
    www = master.settings.resolved_output_dir
    reported: list[tuple[int, int]] = []
    publisher = Publisher(www)
    count = publishing.publish_all(master, publisher, lambda done, total: reported.append((done, total)), 2)
    assert count == 12 and reported[-1] == (12, 12)
    assert sorted(path.parent.name for path in www.glob("simple/*/index.json")) == sorted(
        f"p{number}" for number in range(12)
    )


def test_publish_all_writes_missing_log_pages_and_all_of_them_on_request(master: Master) -> None:
    first, lost, _ = add_finished_builds(master, 3)
    www = master.settings.resolved_output_dir
    publisher = Publisher(www)
    publishing.publish_all(master, publisher, workers=1)
    pages = sorted(www.glob("logs/*/index.html"))
    assert len(pages) == 3 and "missing-header" in pages[0].read_text()
    kept = www / "logs" / str(first) / "index.html"
    old = 1_000_000_000
    os.utime(kept, ns=(old, old))
    shutil.rmtree(www / "logs" / str(lost))

    publishing.publish_all(master, publisher, workers=1)  # a log page never changes: only the lost one
    assert (www / "logs" / str(lost) / "index.html").is_file()
    assert kept.stat().st_mtime_ns == old

    kept.write_text("written by an older template")
    publishing.publish_all(master, publisher, workers=1, rewrite_logs=True)
    assert "missing-header" in kept.read_text()
    assert not [path for path in www.rglob(".*")]  # no staging directory or temporary file left


def test_site_pages_take_at_most_a_tenth_of_the_publishers_time() -> None:
    schedule = publishing.SiteSchedule()
    assert schedule.due(0.0)  # never written
    schedule.written(100.0, 100.5)  # a small farm: half a second
    assert not schedule.due(114.0) and schedule.due(115.0)
    schedule.written(200.0, 203.6)  # a million versions: 3.6 s
    assert not schedule.due(235.0) and schedule.due(236.0)


def search_rows(master: Master) -> dict[str, int]:
    """Versions per project, as the published search index lists them."""
    data = json.loads((master.settings.resolved_output_dir / "search/index.json").read_text())
    return {name: versions for name, _, versions, _ in data["projects"]}


def test_the_site_pages_follow_each_pass_without_recounting_the_farm(master: Master) -> None:
    publisher = publishing.make_publisher(master)
    schedule = publishing.SiteSchedule(interval=0, share=math.inf)  # due on every pass
    www = master.settings.resolved_output_dir
    add_packages(master, "alpha", "beta")
    master.dirty.mark(project="alpha")
    master.dirty.mark(project="beta")
    publishing.publish_dirty(master, publisher, schedule)
    assert search_rows(master) == {"alpha": 1, "beta": 1}

    with master.db.write() as session:  # a release of alpha and a new project land
        catalog.ensure_version(session, catalog.ensure_package(session, "alpha"), "2.0")
        catalog.ensure_version(session, catalog.ensure_package(session, "gamma"), "0.1")
        catalog.mark_package_removed(session, "beta")
    for name in ("alpha", "beta", "gamma"):
        master.dirty.mark(project=name)
    publishing.publish_dirty(master, publisher, schedule)
    assert search_rows(master) == {"alpha": 2, "gamma": 1}
    root = (www / "simple/index.html").read_text()
    assert "gamma/" in root and "beta/" not in root
    home = (www / "index.html").read_text()
    assert "2</span> packages" in home and "3</span> versions" in home


def test_builds_are_counted_once_and_late_finishes_are_not_lost(master: Master) -> None:
    add_finished_builds(master, 3)
    tally = BuildTally()
    later = datetime.now(UTC) + timedelta(hours=1)
    with master.db.read() as session:
        assert tally.read(session, later) == {"failed": 3}
    with master.db.write() as session:
        job_id = session.scalars(select(Build.job_id)).first()
        # One finished just before that pass and committed after it; one is still running.
        session.add(
            Build(
                job_id=job_id,
                lease_id="late",
                status=BuildStatus.success,
                finished_at=later - timedelta(minutes=1),
            )
        )
        session.add(Build(job_id=job_id, lease_id="running", status=BuildStatus.running))
    with master.db.read() as session:
        assert tally.read(session, later) == {"failed": 3, "success": 1, "running": 1}
        assert tally.read(session, later + timedelta(hours=1)) == {"failed": 3, "success": 1, "running": 1}


def test_the_site_totals_are_read_whole_again_every_hour(master: Master) -> None:
    publisher = publishing.make_publisher(master)
    schedule = publishing.SiteSchedule()
    add_packages(master, "alpha")
    publishing.publish_site(master, publisher, schedule)
    add_packages(master, "beta")  # unmarked here, as if another master had published it
    publishing.publish_site(master, publisher, schedule)
    assert search_rows(master) == {"alpha": 1}
    schedule.totals.started -= RENEW_SECONDS
    publishing.publish_site(master, publisher, schedule)
    assert search_rows(master) == {"alpha": 1, "beta": 1}


def test_the_queue_is_counted_again_as_often_as_its_cost_allows(master: Master) -> None:
    """A cheap count is fresh within a second; one that took long is kept until its cost is a
    small share of the time (a million jobs: 0.2 s, about every 90 s)."""

    queued: list[int] = []

    def queue_jobs(count: int) -> None:
        with master.db.write() as session:
            for _ in range(count):
                name = f"queued-{len(queued)}"
                version, _ = catalog.ensure_version(session, catalog.ensure_package(session, name), "1.0")
                target = master.target_ids["cp311-cp311-linux_armv7l"]
                session.add(
                    Job(
                        version_id=version.id,
                        target_id=target,
                        status=JobStatus.queued,
                        released_at=datetime.now(UTC),
                    )
                )
                queued.append(version.id)

    depth = QueueDepth()
    queue_jobs(2)
    with master.db.read() as session:
        assert depth.read(session)["cp311-cp311-linux_armv7l"] == 2
    queue_jobs(1)
    depth.took = 0.001  # a small farm's count, whatever this (maybe busy) machine took just now
    depth.counted_at -= 1.0
    with master.db.read() as session:
        assert depth.read(session)["cp311-cp311-linux_armv7l"] == 3  # a small farm's, a second later
    depth.took = 0.2  # as at a million jobs
    queue_jobs(1)
    with master.db.read() as session:
        assert depth.read(session)["cp311-cp311-linux_armv7l"] == 3  # kept: counted a moment ago
    depth.counted_at -= 0.2 / QUEUE_SHARE
    with master.db.read() as session:
        assert depth.read(session)["cp311-cp311-linux_armv7l"] == 4
