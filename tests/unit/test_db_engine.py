"""Connecting: SQLite's WAL is copied into the database file by a background thread."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import PG_URL
from wheelmill.db.engine import Database, Statement


def rows_in_main_file(database: Path, copy: Path) -> int | None:
    """Rows the database file holds by itself, without its write-ahead log."""
    shutil.copyfile(database, copy)
    try:
        with sqlite3.connect(copy) as conn:
            return conn.execute("SELECT count(*) FROM t").fetchone()[0]
    except sqlite3.DatabaseError:  # copied mid-checkpoint, or the table is not there yet
        return None


def test_background_checkpoints_bring_commits_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = Database(f"sqlite:///{path}", background_checkpoints=True)
    try:
        with db.write() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
        for number in range(200):  # no commit checkpoints (a writer would wait on its fsyncs)
            with db.transaction() as tx:
                tx.connection.execute("INSERT INTO t VALUES (?)", (number,))
        deadline = time.monotonic() + 10
        while rows_in_main_file(path, tmp_path / "copy.db") != 200:
            assert time.monotonic() < deadline, "the WAL was never checkpointed into the database"
            time.sleep(0.2)
    finally:
        db.dispose()


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL")
def test_a_pooled_connection_the_server_ended_is_replaced_not_handed_out() -> None:
    assert PG_URL
    db = Database(PG_URL)
    with db.transaction() as tx:
        (pid,) = tx.execute(Statement.postgresql_only("SELECT pg_backend_pid()"), {}).fetchone()
    with psycopg.connect(PG_URL, autocommit=True) as admin:  # as a server restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with db.transaction() as tx:  # the pooled connection is dead: another one serves
        (again,) = tx.execute(Statement.postgresql_only("SELECT pg_backend_pid()"), {}).fetchone()
    db.dispose()
    assert again != pid


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL")
def test_a_masters_queries_take_one_core_each() -> None:
    """A parallel scan would take every core from the API for its duration (serial_queries)."""
    assert PG_URL
    show = text("SHOW max_parallel_workers_per_gather")
    for serial, expected in ((True, "0"), (False, "2")):
        db = Database(PG_URL, serial_queries=serial)
        with db.read() as session:
            assert session.scalar(show) == expected
        db.dispose()
