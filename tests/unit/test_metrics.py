"""The /metrics figures on SQLite and PostgreSQL, as Prometheus reads them."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from tests.unit.test_admin import ARM, X86, add_version
from tests.unit.test_admin import master as master  # the fixture, shared
from wheelmill.db import builders as builder_sql
from wheelmill.db import jobs as queue_sql
from wheelmill.db.tables import Build, BuildStatus, UpstreamState, utcnow
from wheelmill.master.context import Master
from wheelmill.master.metrics import FarmCollector, Refusals


def scrape(master: Master, refusals: Refusals) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(master, refusals))
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")
    }


def test_queue_builds_builders_follower_and_refusals(master: Master) -> None:
    for version in ("1.0", "2.0", "3.0"):
        add_version(master, "demo", version)
    with master.db.write() as session:
        builder_sql.create_token(session, "b1")
        builder = builder_sql.get_builder(session, "b1")
        session.flush()
        builder_sql.touch(session, builder.id)
        claim = queue_sql.claim(session, master.target_ids[X86], builder.id, 60)
        assert claim is not None
        build = session.get_one(Build, claim.build_id)
        build.status, build.failure_reason = BuildStatus.failed, "missing_library"
        build.finished_at, build.duration_s = utcnow() - timedelta(minutes=5), 45.0
        session.add_all(
            [UpstreamState(key="serial", value="900"), UpstreamState(key="upstream_serial", value="1000")]
        )
    refusals = Refusals()
    refusals.count("hash")
    refusals.count("hash")

    figures = scrape(master, refusals)
    assert figures[f'wheelmill_jobs{{state="queued",target="{X86}"}}'] == 2
    assert figures[f'wheelmill_jobs{{state="leased",target="{X86}"}}'] == 1
    assert figures[f'wheelmill_jobs{{state="queued",target="{ARM}"}}'] == 3
    assert figures['wheelmill_builds_last_hour{reason="missing_library",status="failed"}'] == 1
    assert figures['wheelmill_build_duration_seconds_bucket{le="30"}'] == 0
    assert figures['wheelmill_build_duration_seconds_bucket{le="60"}'] == 1
    assert figures["wheelmill_build_duration_seconds_gsum"] == 45.0
    assert figures['wheelmill_builders{online="true",state="active"}'] == 1
    assert figures['wheelmill_uploads_refused_total{reason="hash"}'] == 2
    assert figures["wheelmill_follower_lag"] == 100
    assert figures["wheelmill_disk_guard_active"] == 0
    with master.db.read() as session:
        assert session.scalar(select(Build.status)) is BuildStatus.failed
