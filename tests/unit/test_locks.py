"""Run-once locks: one holder at a time, and a holder that lost its session knows it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import PG_URL
from wheelmill.db.engine import Database
from wheelmill.db.locks import SingletonLock


def test_one_holder_at_a_time_and_the_next_takes_over_on_release(db: Database) -> None:
    first, second = SingletonLock(db, "publisher"), SingletonLock(db, "publisher")
    assert first.try_acquire() and first.try_acquire()
    assert not second.try_acquire()
    reaper = SingletonLock(db, "reaper")
    assert reaper.try_acquire()  # another loop's lock is another lock
    reaper.release()
    first.release()
    assert second.try_acquire()
    second.release()


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's file lock has no session
def test_a_holder_whose_session_was_cut_lets_the_new_holder_be_and_says_so(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    holder, other = SingletonLock(db, "publisher"), SingletonLock(db, "publisher")
    try:
        assert holder.try_acquire()
        assert holder._conn is not None
        pid = holder._conn.execute(text("SELECT pg_backend_pid()")).scalar()
        holder._conn.commit()
        with db.engine.connect() as admin:  # as a database restart or a network cut would
            # the timeout makes the call wait until the session has ended (and its locks with it)
            ended = admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar()
            admin.commit()
        assert ended

        assert other.try_acquire()  # the lock went with the session
        assert not holder.try_acquire()  # and the old holder no longer believes it holds it
        assert "database session is gone" in caplog.text
        other.release()
        assert holder.try_acquire()
    finally:  # a connection left open fails a later test with an unraisable warning
        holder.release()
        other.release()
