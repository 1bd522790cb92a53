"""Benchmark: a full publish of a big farm from database rows, and one project's rewrite.

    python bench/publish.py [--projects 175000] [--files 1200000] [--samples 300]

The first run generates the farm in SQLite with bulk inserts (bench/.cache/, reused by later
runs): PROJECTS packages with VERSIONS sdists, two targets, jobs, builds with their environment,
and FILES farm wheels, half of them linux_armv6l aliases of the other half. Then it runs
the publisher into an empty output directory. It first writes every finished build's log page
(a running farm writes each when its build finishes; timed and reported apart as log_pages_s)
and lets the system write them back to disk. Then `publish_all` writes every project's simple
pages, project page and JSON, and the site pages: the issue's full publish, full_publish_s. Then
it runs `publish_all` again over that output (nothing changed: pages are read back, not
written), then times the rewrite of single projects whose rows changed, as a finished build
causes. Progress goes to stderr; stdout gets one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select

from wheelmill.config import Settings
from wheelmill.db import views
from wheelmill.db.engine import Database
from wheelmill.db.jobs import ensure_targets
from wheelmill.db.migrate import upgrade
from wheelmill.db.tables import File
from wheelmill.master import publishing
from wheelmill.master.context import Master

CACHE = Path(__file__).resolve().parent / ".cache" / "publish"
TARGETS = ("cp311-cp311-linux_armv7l", "cp313-cp313-linux_armv7l")
TARGET_SECONDS = 120.0
TARGET_REWRITE_MS = 10.0
NOW = datetime(2025, 6, 1, tzinfo=UTC)
WORDS = ("py", "data", "fast", "json", "http", "async", "flask", "geo", "image", "tool", "lib", "net", "sql")
ENVIRONMENT = json.dumps(
    {
        "os": "Raspberry Pi OS 12 (bookworm)",
        "kernel": "6.6.31+rpt-rpi-v7",
        "compiler": "gcc (Raspbian 12.2.0-14+rpi1) 12.2.0",
        "python": "CPython 3.11.2",
        "pip": "23.0.1",
        "setuptools": "66.1.1",
        "sandbox": "bubblewrap",
    }
)
console = Console(stderr=True)


def stamp(moment: datetime) -> str:
    """SQLAlchemy's SQLite storage format for DateTime columns."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def version_counts(projects: int, versions: int, rng: random.Random) -> list[int]:
    """Versions per project, `versions` in all: most have one or two, popular ones have dozens."""
    counts = [1] * projects
    popularity = [1 / (rank + 1) ** 0.7 for rank in range(projects)]
    for project in rng.choices(range(projects), weights=popularity, k=versions - projects):
        counts[project] += 1
    rng.shuffle(counts)
    return counts


def generate(path: Path, projects: int, files: int) -> None:
    """The farm's rows, written with executemany inside one transaction per table."""
    rng = random.Random(6)
    # Every version gets a job per target; four in five jobs succeed and each success publishes a
    # wheel and its armv6l alias: FILES = versions x 2 targets x 0.8 x 2 files.
    versions = files * 10 // 32
    database = Database(f"sqlite:///{path}")
    upgrade(database)  # the real schema and indexes; the rows go in through sqlite3 directly
    database.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = stamp(NOW)
    conn.executemany(
        "INSERT INTO targets (id, tag, python_version, platform, enabled) "
        "VALUES (?, ?, ?, 'linux_armv7l', 1)",
        [(number, tag, tag[2:5]) for number, tag in enumerate(TARGETS, 1)],
    )
    conn.executemany(
        "INSERT INTO builders (id, name, token_hash, state, target, os, cpu, registered_at, last_seen) "
        "VALUES (?, ?, ?, 'active', ?, 'Raspberry Pi OS 12', 'ARMv7 Processor rev 4', ?, ?)",
        [(n, f"pi-{n:02d}", f"{n:064x}", TARGETS[n % 2], now, now) for n in range(1, 13)],
    )
    counts = version_counts(projects, versions, rng)
    with Progress(console=console) as progress:
        task = progress.add_task("generating the farm's rows", total=projects)
        for rows in _package_batches(counts, rng):
            for table, values in rows.items():
                columns = ", ".join(values[0][0])
                marks = ", ".join("?" * len(values[0][0]))
                conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", (v for _, v in values))
            conn.commit()
            progress.advance(task, len(rows["packages"]))
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def _package_batches(
    counts: list[int], rng: random.Random
) -> Iterator[dict[str, list[tuple[tuple[str, ...], tuple]]]]:
    """Rows for 5,000 packages at a time, keyed by table, each row as (columns, values)."""
    version_id = job_id = build_id = file_id = 0
    description = "An example package.\n\n" + "It does useful things with <data> & more. " * 30
    batch: dict[str, list] = {}
    for package_id, count in enumerate(counts, 1):
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{package_id}"
        stem = name.replace("-", "_")
        released = NOW - timedelta(days=730 * rng.random())
        batch.setdefault("packages", []).append(
            (
                (
                    "id",
                    "name",
                    "display_name",
                    "summary",
                    "description",
                    "quarantined",
                    "removed",
                    "last_serial",
                    "created_at",
                ),
                (
                    package_id,
                    name,
                    name,
                    f"The {name} package",
                    description,
                    0,
                    0,
                    package_id * 10,
                    stamp(released),
                ),
            )
        )
        for number in range(count):
            version_id += 1
            version = f"{number // 10}.{number % 10}.0"
            released += timedelta(days=3)
            batch.setdefault("versions", []).append(
                (
                    (
                        "id",
                        "package_id",
                        "version",
                        "canonical",
                        "released_at",
                        "yanked",
                        "quarantined",
                        "removed",
                    ),
                    (version_id, package_id, version, version.removesuffix(".0"), stamp(released), 0, 0, 0),
                )
            )
            sdist = f"{stem}-{version}.tar.gz"
            batch.setdefault("sources", []).append(
                (
                    (
                        "id",
                        "version_id",
                        "filename",
                        "url",
                        "sha256",
                        "size",
                        "requires_python",
                        "upload_time",
                        "yanked",
                    ),
                    (
                        version_id,
                        version_id,
                        sdist,
                        f"https://files.example.org/{sdist}",
                        rng.randbytes(32).hex(),
                        40_000,
                        ">=3.8",
                        stamp(released),
                        0,
                    ),
                )
            )
            for target_id, tag in enumerate(TARGETS, 1):
                job_id += 1
                status = "built" if job_id % 10 < 8 else "failed" if job_id % 10 == 8 else "skipped"
                finished = released + timedelta(hours=1)
                batch.setdefault("jobs", []).append(
                    (
                        (
                            "id",
                            "version_id",
                            "target_id",
                            "status",
                            "priority",
                            "released_at",
                            "attempts",
                            "reason",
                            "updated_at",
                        ),
                        (
                            job_id,
                            version_id,
                            target_id,
                            status,
                            0,
                            stamp(released),
                            1,
                            "missing-header" if status == "failed" else None,
                            stamp(finished),
                        ),
                    )
                )
                if status == "skipped":
                    continue
                build_id += 1
                builder = rng.randrange(1, 13)
                batch.setdefault("builds", []).append(
                    (
                        (
                            "id",
                            "job_id",
                            "builder_id",
                            "lease_id",
                            "status",
                            "started_at",
                            "finished_at",
                            "duration_s",
                            "failure_reason",
                            "environment",
                            "log_size",
                        ),
                        (
                            build_id,
                            job_id,
                            builder,
                            f"lease-{build_id}",
                            "success" if status == "built" else "failed",
                            stamp(finished - timedelta(minutes=3)),
                            stamp(finished),
                            180.0,
                            "missing-header" if status == "failed" else None,
                            ENVIRONMENT,
                            2000,
                        ),
                    )
                )
                if status != "built":
                    continue
                wheel = f"{stem}-{version}-{tag}.whl"
                digest, metadata = rng.randbytes(32).hex(), rng.randbytes(32).hex()
                apt = '["libfoo1"]' if file_id % 5 == 0 else None
                for alias_of, filename in ((None, wheel), (file_id + 1, wheel.replace("armv7l", "armv6l"))):
                    file_id += 1
                    batch.setdefault("files", []).append(
                        (
                            (
                                "id",
                                "version_id",
                                "build_id",
                                "filename",
                                "target",
                                "sha256",
                                "size",
                                "requires_python",
                                "metadata_sha256",
                                "alias_of",
                                "apt_packages",
                                "created_at",
                            ),
                            (
                                file_id,
                                version_id,
                                build_id,
                                filename,
                                tag,
                                digest,
                                250_000,
                                ">=3.8",
                                metadata,
                                alias_of,
                                apt,
                                stamp(finished),
                            ),
                        )
                    )
        if package_id % 5000 == 0 or package_id == len(counts):
            yield batch
            batch = {}


def open_master(path: Path, output: Path) -> Master:
    settings = Settings(
        data_dir=path.parent, database_url=f"sqlite:///{path}", output_dir=output, targets=list(TARGETS)
    )
    db = Database(settings.resolved_database_url)
    upgrade(db)  # a farm cached by an older schema gains the tables added since
    with db.write() as session:
        target_ids = ensure_targets(session, settings.resolved_targets)
    return Master.create(settings, db, target_ids)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (publish_all's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def log_pages(master: Master) -> dict[str, float]:
    """Write every finished build's log page, timed apart: a running farm writes each one when
    its build finishes, so they are not part of a full publish's time."""
    publisher = publishing.make_publisher(master)
    started = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("log pages", total=None)
        written = publishing.publish_missing_logs(
            master, publisher, lambda done, total: progress.update(task, completed=done, total=total)
        )
    return {"log_pages_written": written, "log_pages_s": round(time.perf_counter() - started, 1)}


def full_publish(master: Master, rerun: bool) -> dict[str, float]:
    """Time publish_all over an output that has every log page; `rerun`: over its own output, where
    every page is unchanged and only read back, as `wheelmill publish --all` mostly runs."""
    publisher = publishing.make_publisher(master)
    cpu, started = cpu_seconds(), time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("publish --all" + (" again" if rerun else ""), total=None)
        publishing.publish_all(
            master, publisher, lambda done, total: progress.update(task, completed=done, total=total)
        )
    prefix = "rerun_" if rerun else ""
    return {
        f"{prefix}full_publish_s": round(time.perf_counter() - started, 1),
        f"{prefix}cpu_s": round(cpu_seconds() - cpu, 1),
    }


def sizes(master: Master) -> dict[str, float]:
    """What was published, and what the site-wide pages cost alone (a publisher pass pays them)."""
    with master.db.read() as session:
        figures: dict[str, float] = {
            "projects": len(list(views.package_names(session))),
            "files": session.scalar(select(func.count(File.id))) or 0,
            "log_pages": len(views.finished_builds(session)),
        }
    started = time.perf_counter()
    publishing.publish_site(master, publishing.make_publisher(master))
    figures["site_pages_s"] = round(time.perf_counter() - started, 2)
    return figures


def rewrites(master: Master, samples: int) -> dict[str, float]:
    """Rewrite single projects whose rows changed, as the publisher does after a build."""
    conn = sqlite3.connect(master.db.url.database or "")
    names = [
        row[0] for row in conn.execute("SELECT name FROM packages ORDER BY random() LIMIT ?", (samples,))
    ]
    conn.executemany(
        "UPDATE packages SET last_serial = last_serial + 1, summary = summary || ' (rebuilt)' WHERE name = ?",
        [(name,) for name in names],
    )
    conn.commit()
    conn.close()
    publisher = publishing.make_publisher(master)
    timings = []
    for name in names:
        started = time.perf_counter()
        publishing.publish_projects(master, publisher, [name])
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "rewrite_p50_ms": round(statistics.median(timings), 2),
        "rewrite_p90_ms": round(statistics.quantiles(timings, n=10)[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=175_000)
    parser.add_argument("--files", type=int, default=1_200_000)
    parser.add_argument("--samples", type=int, default=300, help="single-project rewrites to time")
    args = parser.parse_args()
    path = CACHE / f"farm-{args.projects}-{args.files}.db"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        generate(partial, args.projects, args.files)
        partial.rename(path)
    output = CACHE / "www"
    shutil.rmtree(output, ignore_errors=True)
    os.sync()  # the last run's deleted pages are not still being written back while this one runs
    master = open_master(path, output)
    figures = sizes(master) | log_pages(master)
    os.sync()  # a running farm's log pages were written as its builds finished, long before
    figures |= full_publish(master, rerun=False) | full_publish(master, rerun=True)
    os.sync()  # the first publish's million files are written back before single rewrites are timed
    figures |= rewrites(master, args.samples)
    master.db.dispose()
    figures["load_average"] = round(os.getloadavg()[0], 1)  # other work on the machine slows both
    targets = {"full_publish_s": TARGET_SECONDS, "rewrite_p50_ms": TARGET_REWRITE_MS}
    met = {key: figures[key] <= limit for key, limit in targets.items()}
    console.print(
        f"full publish {figures['full_publish_s']} s (log pages apart: {figures['log_pages_s']} s), "
        f"rerun {figures['rerun_full_publish_s']} s, one project p50 {figures['rewrite_p50_ms']} ms"
    )
    print(json.dumps({"figures": figures, "targets": targets, "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
