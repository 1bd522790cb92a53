"""The /metrics figures on SQLite and PostgreSQL, as Prometheus reads them."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.unit.test_admin import ARM, X86, add_version
from tests.unit.test_admin import master as master  # the fixture, shared
from wheelmill.db import builders as builder_sql
from wheelmill.db import feed
from wheelmill.db import jobs as queue_sql
from wheelmill.db.tables import Build, Builder, BuildStatus, utcnow
from wheelmill.master.context import Master
from wheelmill.master.metrics import FarmCollector, Refusals
from wheelmill.status import render, take_snapshot
from wheelmill.testing import StandInUpstream
from wheelmill.upstream.client import UpstreamClient
from wheelmill.upstream.follower import FollowResult, follow_changelog


def scrape(master: Master, refusals: Refusals) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(master, refusals))
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")
    }


class Interrupted(Exception):
    """Stops a follower after its first batch, as a restart or an upstream outage would."""


def stop_after_first_batch(result: FollowResult) -> None:
    raise Interrupted


def online_builder(session: Session, name: str) -> Builder:
    """A builder with a token that has just been seen: online, as /metrics counts builders."""
    builder_sql.create_token(session, name)
    builder = builder_sql.get_builder(session, name)
    session.flush()
    builder_sql.touch(session, builder.id)
    return builder


def status_text(master: Master) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(take_snapshot(master.db, master.settings)))
    return console.export_text()


def test_follower_lag_is_upstreams_serial_minus_the_applied_one(master: Master) -> None:
    with StandInUpstream() as up:
        for name in ("alpha", "beta", "gamma"):
            up.add_release(name, "1.0")
        client = UpstreamClient(up.simple_url, sleep=lambda _: None)
        try:
            with pytest.raises(Interrupted):
                follow_changelog(
                    master.db,
                    client,
                    master.target_ids,
                    skip_yanked=False,
                    batch_size=1,
                    on_progress=stop_after_first_batch,
                )
            with master.db.read() as session:
                ours = feed.stored_serial(session)
            assert 0 < ours < up.serial
            figures = scrape(master, Refusals())
            assert figures["wheelmill_follower_serial"] == ours
            assert figures["wheelmill_follower_lag"] == up.serial - ours
            assert f"{up.serial - ours} serials behind (at {ours})" in status_text(master)

            follow_changelog(master.db, client, master.target_ids, skip_yanked=False)
        finally:
            client.close()
        figures = scrape(master, Refusals())
        assert figures["wheelmill_follower_serial"] == up.serial
        assert figures["wheelmill_follower_lag"] == 0
        assert f"0 serials behind (at {up.serial})" in status_text(master)


def test_queue_builds_builders_follower_and_refusals(master: Master) -> None:
    for version in ("1.0", "2.0", "3.0"):
        add_version(master, "demo", version)
    with master.db.write() as session:
        builder = online_builder(session, "b1")
        claim = queue_sql.claim(session, master.target_ids[X86], builder.id, 60)
        assert claim is not None
        build = session.get_one(Build, claim.build_id)
        build.status, build.failure_reason = BuildStatus.failed, "missing_system_library"
        build.finished_at, build.duration_s = utcnow() - timedelta(minutes=5), 45.0
    refusals = Refusals()
    refusals.count("hash")
    refusals.count("hash")

    figures = scrape(master, refusals)
    assert figures[f'wheelmill_jobs{{state="queued",target="{X86}"}}'] == 2
    assert figures[f'wheelmill_jobs{{state="leased",target="{X86}"}}'] == 1
    assert figures[f'wheelmill_jobs{{state="queued",target="{ARM}"}}'] == 3
    assert figures['wheelmill_builds_last_hour{reason="missing_system_library",status="failed"}'] == 1
    assert figures['wheelmill_build_duration_seconds_bucket{le="30"}'] == 0
    assert figures['wheelmill_build_duration_seconds_bucket{le="60"}'] == 1
    assert figures["wheelmill_build_duration_seconds_gsum"] == 45.0
    assert figures['wheelmill_builders{online="true",state="active"}'] == 1
    assert figures['wheelmill_uploads_refused_total{reason="hash"}'] == 2
    assert "wheelmill_follower_lag" not in figures  # nothing followed yet: no lag to report
    assert figures["wheelmill_disk_guard_active"] == 0
    with master.db.read() as session:
        assert session.scalar(select(Build.status)) is BuildStatus.failed
