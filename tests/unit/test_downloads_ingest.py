"""Ingesting access logs into the rollups, on SQLite and PostgreSQL: each line counted once, even in a
grown, rotated or compressed copy of its log; the counts as the pages will read them."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from tests.unit.test_downloads_parse import PIP_24, UV_04, nginx_line
from wheelmill.db import downloads
from wheelmill.db.engine import Database
from wheelmill.db.tables import Build, BuildStatus, File, Job, Package, TargetRow, Version
from wheelmill.downloads.ingest import Summary, ingest_logs

DEMO = "demo-1.0-cp311-cp311-linux_armv7l.whl"
OTHER = "other-2.0-py3-none-any.whl"
MONDAY, TUESDAY = "14/Oct/2024:10:00:00 +0000", "15/Oct/2024:10:00:00 +0000"


def demo(agent: str = PIP_24, when: str = MONDAY) -> str:
    return nginx_line(agent, f"/files/demo/{DEMO}", when=when)


def write(path: Path, *lines: str, mode: str = "w") -> Path:
    with path.open(mode) as f:
        f.write("".join(lines))
    return path


def ingest(db: Database, *paths: Path) -> Summary:
    return ingest_logs(db, paths)


def by_package(db: Database) -> dict[str, int]:
    with db.read() as session:
        return downloads.downloads_by_package(session, ["demo", "other", "absent"])


def test_downloads_show_through_every_read_function(db: Database, tmp_path: Path) -> None:
    log = write(
        tmp_path / "access.log",
        demo(),
        demo(UV_04),
        demo(PIP_24, TUESDAY),
        nginx_line("curl/8.5.0", f"/files/other/{OTHER}", when=TUESDAY),
        nginx_line(path="/simple/demo/"),
        nginx_line(path=f"/files/demo/{DEMO}", status=304),
        "garbage\n",
    )
    with log.open("ab") as f:
        f.write(b"\xff\xfe\x00 not even text\n")
    summary = ingest(db, log)
    assert (summary.lines, summary.downloads, summary.malformed) == (8, 4, 2)
    assert by_package(db) == {"demo": 3, "other": 1, "absent": 0}
    with db.read() as session:
        per_day = downloads.downloads_per_day(session, days=3, today=date(2024, 10, 16))
        clients = downloads.installer_breakdown(session, days=7, today=date(2024, 10, 16))
    assert per_day == [(date(2024, 10, 14), 2), (date(2024, 10, 15), 2), (date(2024, 10, 16), 0)]
    assert clients.installers == [("pip", 2), ("curl", 1), ("uv", 1)]
    assert clients.installer_versions == [("pip 24.0", 2), ("curl 8.5.0", 1), ("uv 0.4.18", 1)]
    assert clients.pythons == [("3.11", 2), ("", 1), ("3.12", 1)]
    assert clients.systems == [("Linux", 3), ("", 1)]
    assert clients.distros == [("Raspbian GNU/Linux 12", 2), ("", 1), ("Ubuntu 24.04", 1)]


def test_the_same_log_again_counts_nothing(db: Database, tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", demo(), demo())
    ingest(db, log)
    again = ingest(db, log)
    assert (again.lines, again.downloads, again.unchanged) == (0, 0, [log])
    assert by_package(db)["demo"] == 2


def test_a_grown_log_counts_only_its_new_lines_and_waits_for_an_unfinished_one(
    db: Database, tmp_path: Path
) -> None:
    log = write(tmp_path / "access.log", demo(), demo())
    ingest(db, log)
    write(log, demo(UV_04), demo(UV_04)[:80], mode="a")  # the server is still writing the last line
    grown = ingest(db, log)
    assert (grown.lines, grown.downloads) == (1, 1)
    write(log, demo(UV_04)[80:], mode="a")
    finished = ingest(db, log)
    assert (finished.lines, finished.downloads, finished.malformed) == (1, 1, 0)
    assert by_package(db)["demo"] == 4


def test_a_rotated_and_compressed_copy_counts_only_what_was_not_read(db: Database, tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", demo(), demo())
    ingest(db, log)
    # logrotate: the log got one more line, was renamed and compressed; a new log started.
    rotated = tmp_path / "access.log.1.gz"
    with gzip.open(rotated, "wt") as f:
        f.write(demo() + demo() + demo(UV_04))
    log.unlink()
    fresh = write(tmp_path / "access.log", demo(UV_04, TUESDAY))
    summary = ingest(db, rotated, fresh)
    assert (summary.lines, summary.downloads) == (2, 2)
    assert by_package(db)["demo"] == 4
    assert ingest(db, rotated, fresh).unchanged == [rotated, fresh]


def test_a_compressed_log_is_read_whole_even_without_a_last_newline(db: Database, tmp_path: Path) -> None:
    rotated = tmp_path / "access.log.2.gz"
    rotated.write_bytes(gzip.compress((demo() + demo(UV_04)).rstrip("\n").encode()))
    summary = ingest(db, rotated)
    assert (summary.lines, summary.downloads) == (2, 2)


def test_unreadable_logs_are_reported_and_the_others_still_read(db: Database, tmp_path: Path) -> None:
    truncated = tmp_path / "access.log.3.gz"
    truncated.write_bytes(gzip.compress((demo() * 5000).encode())[:3000])
    good = write(tmp_path / "access.log", demo())
    summary = ingest(db, tmp_path / "missing.log", truncated, good)
    assert [problem.split(":")[0] for problem in summary.unreadable] == [
        f"cannot read {str(tmp_path / 'missing.log')!r}",
        f"cannot read {str(truncated)!r}",
    ]
    assert (summary.downloads, by_package(db)["demo"]) == (1, 1)  # the broken chunk added nothing
    assert ingest(db, good).unchanged == [good]


def test_a_chunk_another_ingest_already_added_is_not_added_twice(db: Database) -> None:
    chunk = {
        "key": "ab" * 32,
        "path": "/var/log/nginx/access.log",
        "start": 0,
        "end": 300,
        "lines": 1,
        "files": Counter({(DEMO, "demo", date(2024, 10, 14)): 1}),
        "clients": Counter({(date(2024, 10, 14), "pip", "24.0", "3.11", "Linux", ""): 1}),
    }
    with db.write() as session:
        assert downloads.add_chunk(session, **chunk)
    with db.write() as session:
        assert not downloads.add_chunk(session, **chunk)
    with db.write() as session:
        assert not downloads.add_chunk(session, **{**chunk, "start": 100, "end": 400})
    assert by_package(db)["demo"] == 1


def test_time_saved_is_downloads_times_the_build_that_made_each_file(db: Database, tmp_path: Path) -> None:
    with db.write() as session:
        package = Package(name="demo", display_name="demo")
        session.add(package)
        session.flush()
        version = Version(package_id=package.id, version="1.0", canonical="1.0")
        target = TargetRow(tag="cp311-cp311-linux_armv7l", python_version="3.11", platform="linux_armv7l")
        session.add_all([version, target])
        session.flush()
        job = Job(version_id=version.id, target_id=target.id, released_at=datetime.now(UTC))
        session.add(job)
        session.flush()
        build = Build(job_id=job.id, lease_id="lease-1", status=BuildStatus.success, duration_s=90.5)
        session.add(build)
        session.flush()
        for filename, build_id in ((DEMO, build.id), ("demo-1.0-py3-none-any.whl", None)):  # one imported
            session.add(
                File(
                    version_id=version.id,
                    build_id=build_id,
                    filename=filename,
                    target=target.tag,
                    sha256="ab" * 32,
                    size=1,
                )
            )
    log = write(
        tmp_path / "access.log",
        demo(),
        demo(UV_04, TUESDAY),
        demo(),
        nginx_line(path="/files/demo/demo-1.0-py3-none-any.whl"),
    )
    ingest(db, log)
    with db.read() as session:
        assert downloads.time_saved_seconds(session) == 3 * 90.5
