"""Shared fixtures: databases (SQLite always, PostgreSQL when WHEELMILL_TEST_DATABASE_URL is set),
the stand-in upstream, the build-dependency wheels builds resolve from it, and a small disk."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.testing import StandInUpstream

PG_URL = os.environ.get("WHEELMILL_TEST_DATABASE_URL")
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="no PostgreSQL")),
]
WHEELHOUSE = Path(os.environ.get("WHEELMILL_TEST_WHEELHOUSE", Path.home() / ".cache" / "wheelmill-tests"))
BUILD_DEPENDENCIES = ("setuptools", "wheel")


def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of ``backend``; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'wheelmill.db'}"
        return
    assert PG_URL
    name = f"wheelmill_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database, on SQLite and on PostgreSQL."""
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def build_dependency_wheels() -> list[Path]:
    """setuptools and wheel as wheel files, fetched once through pip's registry and cached."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    found = [next(iter(sorted(WHEELHOUSE.glob(f"{name}-*.whl"))), None) for name in BUILD_DEPENDENCIES]
    if None in found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary",
                ":all:",
                "--dest",
                str(WHEELHOUSE),
                *BUILD_DEPENDENCIES,
            ],
            check=True,
        )
        found = [sorted(WHEELHOUSE.glob(f"{name}-*.whl"))[-1] for name in BUILD_DEPENDENCIES]
    return [path for path in found if path is not None]


@pytest.fixture
def upstream(build_dependency_wheels: list[Path]) -> Iterator[StandInUpstream]:
    """A running stand-in upstream that also serves setuptools and wheel, as PyPI does."""
    with StandInUpstream() as index:
        for wheel in build_dependency_wheels:
            index.add_wheel_file(wheel)
        yield index


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect cycles now, so an unclosed socket or file fails the test that leaked it (warnings are
    errors) rather than whichever later test the collector happens to run in."""
    yield
    gc.collect()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, filled and freed by the test as an operator's disk would be."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    mounted = subprocess.run(
        [*sudo, "mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run([*sudo, "umount", "--lazy", str(mount)], check=True)
