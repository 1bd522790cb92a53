"""Ingest benchmark (issue 3): follow a 1.2-million-event changelog over 175,000 packages into SQLite
and plan jobs for one target, through the real XML-RPC feed and JSON API of the stand-in upstream.

    python bench/ingest.py [--events 1200000] [--packages N] [--database-url URL] [--drain-seconds 60]

``total_seconds`` is what the issue times: the whole feed ingested and its jobs planned, from the
feed alone. The JSON API details (each file's URL, hash and size, requires-python, yank reasons) are
fetched afterwards by a drain, one request per project; the bench runs it for ``--drain-seconds``
and prints its rate and the time it would take to drain everything, apart from the total.

The stand-in runs in a child process (its own core, as PyPI is another machine) and loads a
synthetic history with a realistic mix: create and owner role per project; releases with an sdist,
often wheels (cp3x, sometimes py3-none-any), some yanked, files and releases removed, a few
projects removed or quarantined and cleared; a sliver of timestamps going backwards. Feed and JSON
API agree, since the stand-in applies each entry to its projects. Progress goes to stderr; stdout
gets the figures and a last line of JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.db.tables import FeedFile, Job, JobStatus, Package, Version
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream
from wheelmill.upstream.client import UpstreamClient
from wheelmill.upstream.follower import FollowResult, drain_details, follow_changelog

TARGET = "cp311-cp311-linux_armv7l"
# Feed ingested and jobs planned within 120 s; memory flat: the last three quarters of the feed may
# add at most a fifth to what the first quarter left.
TARGETS = {"total_seconds": 120, "rss_growth_quarter_to_end": 1.2}
START = 1_450_000_000  # the history spans five years from here
SPAN = 5 * 365 * 86_400
WHEEL_TAGS = [
    ("cp39", "cp39-cp39-manylinux_2_17_x86_64"),
    ("cp310", "cp310-cp310-manylinux_2_17_x86_64"),
    ("cp311", "cp311-cp311-manylinux_2_17_x86_64"),
    ("cp311", "cp311-cp311-macosx_11_0_arm64"),
    ("cp311", "cp311-cp311-win_amd64"),
    ("cp312", "cp312-cp312-manylinux_2_17_aarch64"),
    ("cp311", "cp311-cp311-manylinux_2_17_armv7l"),  # covers the target
]
console = Console(stderr=True)

Raw = tuple[str, str | None, int, str]


def synthetic_history(events: int, packages: int, seed: int = 3) -> list[Raw]:
    """``events`` changelog entries over about ``packages`` projects, in time order."""
    rng = random.Random(seed)
    timed: list[tuple[float, str, str | None, str]] = []
    for number in range(packages):
        timed.extend(_project_history(rng, number))
    timed.sort(key=lambda entry: entry[0])
    history = []
    for moment, name, version, action in timed[:events]:
        # PyPI's timestamps are not always increasing with the serial.
        skew = rng.randint(1, 600) if rng.random() < 0.02 else 0
        history.append((name, version, int(moment) - skew, action))
    return history


def _project_history(rng: random.Random, number: int) -> Iterator[tuple[float, str, str | None, str]]:
    name = f"Bench_Pkg{number}" if number % 5 == 0 else f"bench-pkg-{number}"
    module = name.lower().replace("-", "_")
    when = START + rng.random() * SPAN * 0.9
    yield when, name, None, "create"
    yield when + 1, name, None, f"add Owner user{number}"
    if rng.random() < 0.1:
        yield when + 2, name, None, f"add Maintainer helper{number}"
    releases = 1
    while rng.random() < 0.42:
        releases += 1
    for index in range(releases):
        version = f"{index // 10}.{index % 10}.0"
        yield when, name, version, "new release"
        if rng.random() < 0.9:
            yield when + 5, name, version, f"add source file {module}-{version}.tar.gz"
            if rng.random() < 0.01:
                yield when + 86_400, name, version, f"remove file {module}-{version}.tar.gz"
        if rng.random() < 0.08:
            yield when + 6, name, version, f"add py3 file {module}-{version}-py3-none-any.whl"
        elif rng.random() < 0.35:
            for pytag, tag in rng.sample(WHEEL_TAGS, rng.randint(1, 4)):
                yield when + 7, name, version, f"add {pytag} file {module}-{version}-{tag}.whl"
        if rng.random() < 0.015:
            yield when + 3 * 86_400, name, version, "yank release"
        if rng.random() < 0.007:
            yield when + 7 * 86_400, name, version, "remove release"
        when += rng.expovariate(1 / (60 * 86_400))
    if rng.random() < 0.0005:
        yield when + 10, name, None, "project quarantined"
        yield when + 86_400, name, None, "project quarantine cleared"
    if rng.random() < 0.004:
        yield when + 30 * 86_400, name, None, "remove project"


def serve_upstream(events: int, packages: int, conn: Connection) -> None:
    """The child process: generate and load the history, serve it, stop when told."""
    upstream = StandInUpstream()
    last = upstream.load_changelog(synthetic_history(events, packages))
    with upstream:
        conn.send((upstream.simple_url, last))
        conn.recv()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def run(events: int, packages: int, database_url: str, drain_seconds: float) -> dict[str, float | int]:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve_upstream, args=(events, packages, child)
    )
    server.start()
    console.print(f"stand-in upstream: loading {events:,} events over {packages:,} packages ...")
    simple_url, last_serial = parent.recv()
    db = Database(database_url)
    upgrade(db)
    with db.write() as session:
        targets = queue_sql.ensure_targets(session, [Target.parse(TARGET)])
    client = UpstreamClient(simple_url, contact="bench@wheelmill.invalid")
    marks: dict[str, float] = {}
    try:
        with _progress() as progress:
            feed_task = progress.add_task("feed events, planned", total=last_serial)

            def on_feed(result: FollowResult) -> None:
                progress.update(feed_task, completed=result.events)
                if result.events >= last_serial // 4 and "quarter_rss" not in marks:
                    marks["quarter_rss"] = rss_mb()

            began, cpu_began = time.perf_counter(), cpu_seconds()
            # The feed ingested and planned: what issue 3 times. The JSON API drain follows, timed apart.
            result = follow_changelog(
                db, client, targets, skip_yanked=False, details_seconds=0, on_progress=on_feed
            )
            feed_seconds = time.perf_counter() - began
            feed_cpu = cpu_seconds() - cpu_began
            marks["feed_rss"] = rss_mb()
        planned = job_counts(db)
        owed = result.details_pending
        with _progress() as progress:
            drain_task = progress.add_task("JSON API details (drain)", total=owed)
            began = time.perf_counter()
            drained = drain_details(
                db,
                client,
                targets,
                skip_yanked=False,
                seconds=drain_seconds,
                rate=None,
                on_progress=lambda done: progress.update(drain_task, completed=done.details_fetched),
            )
            drain = time.perf_counter() - began
    finally:
        client.close()
        parent.send("stop")
        server.join()
    after_drain = job_counts(db)
    with db.read() as session:
        counts = {
            table.__tablename__: session.scalar(select(func.count()).select_from(table))
            for table in (Package, Version, FeedFile)
        }
    db.dispose()
    per_second = drained.details_fetched / drain if drain else 0.0
    return {
        "events": result.events,
        "packages": counts["packages"],
        "versions": counts["versions"],
        "files_still_awaiting_details": counts["feed_files"],
        "total_seconds": round(feed_seconds, 1),
        "events_per_second": round(result.events / feed_seconds),
        # The follower's own CPU time (all its threads): the figure to compare when others share the cores.
        "feed_cpu_seconds": round(feed_cpu, 1),
        "jobs_planned": sum(planned.values()),
        "jobs_waiting_for_details": planned.get(JobStatus.waiting, 0),
        "jobs_queued": planned.get(JobStatus.queued, 0),
        "jobs_skipped": planned.get(JobStatus.skipped, 0),
        "jobs_covered": planned.get(JobStatus.covered, 0),
        "projects_owing_details": owed,
        "drain_seconds": round(drain, 1),
        "drain_requests": drained.details_fetched,
        "drain_requests_per_second": round(per_second, 1),
        "drain_projected_seconds_for_all": round(owed / per_second) if per_second else 0,
        "jobs_queued_by_drain": drained.jobs_queued,
        "jobs_skipped_after_drain": after_drain.get(JobStatus.skipped, 0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_mb_at_quarter_of_feed": round(marks.get("quarter_rss", 0)),
        "rss_mb_at_end_of_feed": round(marks["feed_rss"]),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def job_counts(db: Database) -> dict[JobStatus, int]:
    with db.read() as session:
        return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_200_000)
    parser.add_argument("--packages", type=int, help="default: 175,000 per 1.2 million events")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=60.0,
        help="how long to run the JSON API drain after the feed (a negative value: until none is owed)",
    )
    args = parser.parse_args()
    packages = args.packages or max(1, args.events * 175_000 // 1_200_000)
    with tempfile.TemporaryDirectory(prefix="wheelmill-ingest-") as scratch:
        url = args.database_url or f"sqlite:///{scratch}/bench.db"
        figures = run(args.events, packages, url, None if args.drain_seconds < 0 else args.drain_seconds)
    for key, value in figures.items():
        console.print(f"{key:>28}: {value:,}")
    growth = figures["rss_mb_at_end_of_feed"] / max(1, figures["rss_mb_at_quarter_of_feed"])
    figures["rss_growth_quarter_to_end"] = round(growth, 2)
    met = {
        "total_seconds": figures["total_seconds"] <= TARGETS["total_seconds"],
        "rss_growth_quarter_to_end": growth <= TARGETS["rss_growth_quarter_to_end"],
    }
    print(json.dumps({"figures": figures, "targets": TARGETS, "met": met}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
