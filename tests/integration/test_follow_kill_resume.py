"""A whole-index follower killed with SIGKILL mid-way, once in the feed and once in the details,
resumes where it stood: the end state is that of one clean run, nothing lost and nothing doubled."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import database_url
from wheelmill.db import details, feed
from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.db.tables import (
    DetailsOwed,
    FeedFile,
    Job,
    Package,
    PackageAlias,
    Source,
    UpstreamState,
    UpstreamWheel,
    Version,
)
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
TARGET = "cp311-cp311-linux_armv7l"
PROJECTS = 300  # details come in chunks of 200: the second kill lands between two


def history() -> Iterator[tuple[str, str | None, int, str]]:
    """Each project's life spread over the whole feed, so every batch touches many projects."""
    when = 1_700_000_000
    for step in range(5):
        for number in range(PROJECTS):
            name, module = f"Proj_{number}" if number % 4 == 0 else f"proj-{number}", f"proj_{number}"
            when += 1 if number % 50 else -30  # now and then a timestamp goes backwards
            match step:
                case 0:
                    yield name, None, when, "create"
                    yield name, None, when, f"add Owner user{number}"
                    yield name, "1.0", when, "new release"
                    yield name, "1.0", when, f"add source file {module}-1.0.tar.gz"
                case 1 if number % 3 == 0:
                    wheel = f"{module}-1.0-cp311-cp311-manylinux_2_17_armv7l.whl"
                    yield name, "1.0", when, f"add cp311 file {wheel}"
                case 2 if number % 5 == 0:
                    yield name, "2.0", when, "new release"
                    yield name, "2.0", when, f"add cp39 file {module}-2.0-cp39-cp39-win32.whl"
                case 3:
                    if number % 7 == 0:
                        yield name, "1.0", when, "yank release"
                    if number % 11 == 0:
                        yield name, "1.0", when, f"remove file {module}-1.0.tar.gz"
                    if number % 10 == 0:
                        yield name, "2.0", when, f"add source file {module}-2.0.tar.gz"
                case 4:
                    if number % 17 == 0:
                        yield name, None, when, "remove project"
                    elif number % 13 == 0:
                        yield name, "1.0", when, "remove release"


@pytest.fixture
def up() -> Iterator[StandInUpstream]:
    with StandInUpstream(changelog_page_size=50) as index:
        index.load_changelog(history())
        yield index


def start_follower(url: str, up: StandInUpstream) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "wheelmill.upstream.follower", "--database-url", url]
    command += ["--upstream", up.simple_url, "--target", TARGET, "--batch-size", "20", "--once"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen[bytes], db: Database, ready: Callable[[int, int], bool]) -> None:
    """SIGKILL ``process`` as soon as ``ready(serial, details owed)`` holds in its committed state."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, errors = process.communicate()
            raise AssertionError(f"the follower ended first: {errors.decode()[-2000:]}")
        with db.read() as session:
            if ready(feed.stored_serial(session), details.count_owed(session)):
                process.kill()
                process.communicate()
                return
        time.sleep(0.01)
    raise AssertionError("the follower never reached the point to kill it at")


def finish(process: subprocess.Popen[bytes]) -> None:
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors.decode()[-2000:]


def snapshot(db: Database) -> dict[str, list[Any]]:
    """Every row the follower writes, as sorted lists: a duplicate would show."""
    with db.read() as session:
        queries = {
            "packages": select(Package.name, Package.display_name, Package.removed, Package.last_serial),
            "aliases": select(PackageAlias.alias, Package.name).join(Package),
            "versions": select(Package.name, Version.version, Version.removed, Version.yanked).join(Package),
            "sources": select(Source.filename, Source.sha256, Source.size, Version.version).join(Version),
            "wheels": select(UpstreamWheel.filename, UpstreamWheel.sha256).join(Version),
            "announced": select(FeedFile.filename, FeedFile.sdist, Version.version).join(Version),
            "owed": select(Package.name, DetailsOwed.spelling).join(Package),
            "jobs": select(Package.name, Version.version, Job.status, Job.reason, Job.released_at)
            .join(Version, Version.id == Job.version_id)
            .join(Package, Package.id == Version.package_id),
            "progress": select(UpstreamState.key, UpstreamState.value),
        }
        return {key: sorted(map(tuple, session.execute(query))) for key, query in queries.items()}


def test_a_killed_follower_resumes_to_the_state_of_a_clean_run(
    up: StandInUpstream, db: Database, db_url: str, tmp_path: Path
) -> None:
    last = up.serial
    first = start_follower(db_url, up)
    kill_when(first, db, lambda serial, owed: last // 3 < serial < last)
    with db.read() as session:
        assert feed.stored_serial(session) < last

    second = start_follower(db_url, up)
    owed_at_start: list[int] = []

    def mid_details(serial: int, owed: int) -> bool:
        if serial == last and owed and not owed_at_start:
            owed_at_start.append(owed)
        return bool(owed_at_start) and 0 < owed < owed_at_start[0]

    kill_when(second, db, mid_details)
    finish(start_follower(db_url, up))
    resumed = snapshot(db)

    for clean_url in database_url("sqlite" if db.is_sqlite else "postgresql", tmp_path / "clean"):
        clean = Database(clean_url)
        upgrade(clean)
        finish(start_follower(clean_url, up))
        assert resumed == snapshot(clean)
        clean.dispose()
    assert resumed["progress"] == [("serial", str(last)), ("upstream_serial", str(last))]
    assert len(resumed["jobs"]) > PROJECTS / 2
