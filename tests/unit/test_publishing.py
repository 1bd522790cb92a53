"""The master's publishing passes, on a real SQLite farm and output directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelmill.config import Settings
from wheelmill.db import catalog
from wheelmill.master import publishing
from wheelmill.master.context import Master
from wheelmill.publish.publisher import Publisher
from wheelmill.runner import open_master


@pytest.fixture
def master(tmp_path: Path) -> Master:
    return open_master(Settings(data_dir=tmp_path / "data", targets=["cp311-cp311-linux_armv7l"]))


def add_packages(master: Master, *names: str) -> None:
    with master.db.write() as session:
        for name in names:
            catalog.ensure_version(session, catalog.ensure_package(session, name), "1.0")


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
