"""Run-once locks for the master's loops (follower, reaper, publisher).

Several ``wheelmill serve`` processes may share one PostgreSQL database; each loop runs in the
one process holding its lock. PostgreSQL advisory locks belong to a session, so when the holder
dies its connection closes, the lock is freed and another process takes over at its next try.
SQLite farms live on one host: an ``flock`` on a file beside the database does the same.

A holder whose own connection dropped (a database restart, a network cut, an idle-session
timeout) lost its lock with it while another process may have taken it: each try checks the
connection first, so the holder finds out at its next pass instead of running the loop twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from wheelmill.db.engine import Database

log = logging.getLogger(__name__)


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"wheelmill:{name}".encode()).digest()[:8], "big", signed=True)


class SingletonLock:
    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        """Whether this process holds the lock now: kept, or taken at this try."""
        if self._conn is not None and not self._session_alive():
            log.warning("the %s lock's database session is gone; taking the lock again", self.name)
            self._conn.invalidate()
            self._conn.close()
            self._conn = None
        if self.held:
            return True
        if self.db.is_sqlite:
            return self._try_flock()
        conn = self.db.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(self.name)}).scalar()
        conn.commit()
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def _session_alive(self) -> bool:
        assert self._conn is not None
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
        except DBAPIError:
            return False
        return True

    def _try_flock(self) -> bool:
        path = Path(self.db.url.database or "wheelmill.db").with_name(f".{self.name}.lock")
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(self.name)})
                self._conn.commit()
            except DBAPIError:
                pass  # the session is gone, and the lock with it
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None
