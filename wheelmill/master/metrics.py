"""Prometheus metrics at ``GET /metrics``: read from the database at scrape time.

Gauges come from cheap indexed queries (``wheelmill.db.fleet``) when Prometheus scrapes, so every
master process reports the same farm-wide figures and nothing drifts between restarts. The one
figure the database does not hold, uploads refused, is counted in this process's memory; with
several masters, sum it across them (``sum by (reason) (wheelmill_uploads_refused_total)``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wheelmill.db import fleet
from wheelmill.errors import LeaseLost, UploadRefused
from wheelmill.master.context import Master
from wheelmill.master.disk import disk_state

WINDOW = timedelta(hours=1)  # builds figures cover builds finished this long ago or less
Handler = Callable[[Request, Exception], Awaitable[Response]]
router = APIRouter()


class Refusals:
    """Uploads refused, by reason, since this process started."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class FarmCollector(Collector):
    def __init__(self, master: Master, refusals: Refusals) -> None:
        self.master = master
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        settings = self.master.settings
        with self.master.db.read() as session:
            jobs = fleet.open_jobs(session)
            builds = fleet.recent_builds(session, WINDOW)
            durations = fleet.build_durations(session, WINDOW)
            builders = fleet.builders_by_state(session, timedelta(seconds=settings.lease_seconds))
            follower = fleet.follower_progress(session)
        yield _gauge("wheelmill_jobs", "Open jobs by target and state.", ["target", "state"], jobs)
        yield _gauge(
            "wheelmill_builds_last_hour",
            "Builds finished in the last hour, by status and failure reason.",
            ["status", "reason"],
            builds,
        )
        histogram = GaugeHistogramMetricFamily(
            "wheelmill_build_duration_seconds", "Durations of builds finished in the last hour."
        )
        buckets = [(_bound(bound), n) for bound, n in durations.buckets] + [("+Inf", durations.count)]
        histogram.add_metric([], buckets, durations.total_seconds)
        yield histogram
        yield _gauge(
            "wheelmill_builders",
            "Builders by state, and whether they called within a lease period.",
            ["state", "online"],
            {(state, str(online).lower()): n for (state, online), n in builders.items()},
        )
        refused = CounterMetricFamily(
            "wheelmill_uploads_refused", "Uploads this master process refused, by reason.", labels=["reason"]
        )
        for reason, n in sorted(self.refusals.snapshot().items()):
            refused.add_metric([reason], n)
        yield refused
        yield from _follower(follower)
        disk = disk_state(settings)
        yield GaugeMetricFamily(
            "wheelmill_disk_free_bytes",
            "Free bytes on the fuller of the output and data disks.",
            disk.free_bytes,
        )
        yield GaugeMetricFamily(
            "wheelmill_disk_min_free_bytes", "The disk guard's minimum (0: off).", disk.min_free_bytes
        )
        yield GaugeMetricFamily(
            "wheelmill_disk_guard_active", "1 while uploads are refused for lack of disk.", int(disk.low)
        )


def _follower(progress: fleet.FollowerProgress) -> Iterator[Metric]:
    if progress.serial is not None:
        yield GaugeMetricFamily("wheelmill_follower_serial", "The upstream serial applied.", progress.serial)
    if progress.serial is not None and progress.upstream_serial is not None:
        yield GaugeMetricFamily(
            "wheelmill_follower_lag",
            "Upstream's newest serial minus the one applied.",
            max(0, progress.upstream_serial - progress.serial),
        )
    yield GaugeMetricFamily("wheelmill_watched_packages", "Packages on the watch list.", progress.watched)
    if progress.oldest_check is not None:
        yield GaugeMetricFamily(
            "wheelmill_watch_oldest_check_timestamp_seconds",
            "When the watched package checked longest ago was last checked.",
            progress.oldest_check.timestamp(),
        )


def _gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _bound(seconds: float) -> str:
    return f"{seconds:g}"


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, master: Master, domain_error: Handler) -> Refusals:
    """Serve /metrics and count refused uploads on their way to the usual error handler."""
    refusals = Refusals()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(master, refusals))
    app.state.metrics_registry = registry

    async def count_refusal(request: Request, exc: Exception) -> Response:
        refusals.count(exc.reason if isinstance(exc, UploadRefused) else "invalid")
        return await domain_error(request, exc)

    async def count_late_upload(request: Request, exc: Exception) -> Response:
        if request.method == "PUT":  # a wheel for a lease that expired or was replaced
            refusals.count("lease_lost")
        return await domain_error(request, exc)

    app.add_exception_handler(UploadRefused, count_refusal)
    app.add_exception_handler(LeaseLost, count_late_upload)
    app.include_router(router)
    return refusals
