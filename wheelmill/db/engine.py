"""Connecting to the database: SQLite (WAL, ``BEGIN IMMEDIATE`` writes) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import re
import select
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session

_WRITE = "wheelmill_write"


class Statement:
    """One hot-path statement, written once with ``:name`` parameters, run on the driver itself.

    SQLAlchemy spends about 0.2 ms of CPU on each statement it executes (compiling from its cache,
    processing parameters and results, events); a claim or a completion is a few statements, so
    that overhead was most of the master's work per job. These statements skip it.
    """

    def __init__(self, sqlite: str | None, *, postgresql: str | None = None) -> None:
        self.sqlite = sqlite
        # psycopg's paramstyle is %(name)s, and a literal % must be doubled.
        self.postgresql = _PARAMETER.sub(r"%(\1)s", (postgresql or sqlite or "").replace("%", "%%"))

    @classmethod
    def postgresql_only(cls, sql: str) -> Statement:
        return cls(None, postgresql=sql)


_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


class Transaction:
    """A transaction on the driver's connection (sqlite3 or psycopg), for :class:`Statement` s."""

    def __init__(self, connection: Any, is_sqlite: bool) -> None:
        self.connection = connection
        self.is_sqlite = is_sqlite

    @classmethod
    def of(cls, session: Session) -> Transaction:
        """The transaction a Session is in, so callers holding one can run hot-path statements."""
        conn = session.connection()
        return cls(conn.connection.driver_connection, conn.dialect.name == "sqlite")

    def execute(self, statement: Statement, params: Mapping[str, Any]) -> Any:
        """Run ``statement``; returns the driver's cursor (``fetchone``, ``rowcount``)."""
        cursor = self.connection.cursor()
        if self.is_sqlite:
            if statement.sqlite is None:
                raise TypeError(f"a PostgreSQL-only statement run on SQLite: {statement.postgresql!r}")
            cursor.execute(statement.sqlite, {k: _sqlite_value(v) for k, v in params.items()})
        else:
            cursor.execute(statement.postgresql, {k: _postgresql_value(v) for k, v in params.items()})
        return cursor

    def executemany(self, statement: Statement, rows: list[Mapping[str, Any]]) -> None:
        """Run ``statement`` once per parameter set, in one driver call."""
        cursor = self.connection.cursor()
        if self.is_sqlite:
            if statement.sqlite is None:
                raise TypeError(f"a PostgreSQL-only statement run on SQLite: {statement.postgresql!r}")
            cursor.executemany(statement.sqlite, [{k: _sqlite_value(v) for k, v in r.items()} for r in rows])
        else:
            cursor.executemany(
                statement.postgresql, [{k: _postgresql_value(v) for k, v in r.items()} for r in rows]
            )


_AS_IS = frozenset({int, str, float, type(None)})


def _sqlite_value(value: Any) -> Any:
    # The formats SQLAlchemy's SQLite types store, so both kinds of access read each other's rows.
    if value.__class__ in _AS_IS:
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _postgresql_value(value: Any) -> Any:
    if value.__class__ in _AS_IS:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return Json(value)
    return value


class WriterLock:
    """SQLite's one writer at a time, queued here instead of in SQLite.

    SQLite makes a blocked writer poll with growing sleeps (up to 100 ms each), so a busy farm's
    claims would wait on sleeps rather than on the writer ahead. A thread lock queues this
    process's writers; an ``flock`` beside the database queues several ``serve`` processes, and
    the kernel wakes the next one the moment the lock is released.
    """

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        self._path = Path(f"{database}-writer.lock") if database and database != ":memory:" else None
        self._file: tuple[int, int] | None = None  # (pid, fd): a forked child opens its own

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._path is not None:
                fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _descriptor(self) -> int:
        # flock belongs to an open file description, which fork shares: each process opens its own.
        if self._file is None or self._file[0] != os.getpid():
            assert self._path is not None
            self._file = (os.getpid(), os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return self._file[1]


class Database:
    """An engine plus the two kinds of transaction the rest of wheelmill uses.

    ``background_checkpoints`` (SQLite, for long-running masters): a thread copies the WAL into
    the database every second, instead of the commit that happens to cross the WAL size limit
    doing it (and its fsyncs) while every other writer waits behind it.

    ``serial_queries`` (PostgreSQL, for masters): no parallel plans. The site pages' counts over
    a million jobs ran as a parallel scan on every core for 140 ms, every pass, and the builders'
    calls waited behind it; a master's queries are point lookups and background aggregates that
    may take longer, but must not take the cores from the API.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        background_checkpoints: bool = False,
        serial_queries: bool = False,
    ) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._writer_lock: WriterLock | contextlib.nullcontext[None] = (
            WriterLock(parsed.database) if self.is_sqlite else contextlib.nullcontext()
        )
        self._stop = threading.Event()
        if self.is_sqlite:
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
            _configure_sqlite(self.engine, auto_checkpoint=not background_checkpoints)
            if background_checkpoints:
                threading.Thread(target=self._checkpoints, name="wheelmill-checkpoint", daemon=True).start()
        else:
            options = {"options": "-c max_parallel_workers_per_gather=0"} if serial_queries else {}
            self.engine = create_engine(
                parsed, pool_size=pool_size, max_overflow=pool_size, connect_args=options
            )
            event.listen(self.engine, "checkout", _refuse_dead_connection)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write transaction, committed on success. On SQLite it takes the write lock up front
        (``BEGIN IMMEDIATE``) so two writers queue instead of failing with "database is locked"."""
        # SQLite lets one writer in at a time and makes the others poll with growing sleeps; queueing
        # this process's writers on a lock first turns those sleeps into a plain, fair wait.
        with self._writer_lock:
            conn = self.engine.connect().execution_options(**{_WRITE: True})
            with conn, Session(bind=conn) as session, conn.begin():
                yield session
                session.flush()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A read-write transaction on the driver's connection, for the hot path's Statements.

        On PostgreSQL the whole transaction runs in psycopg's pipeline mode: BEGIN travels with
        the first statement and COMMIT with the last writes, so a claim or a completion costs a
        round trip per result it reads, not one per statement plus two. Read a statement's result
        with ``fetchone``/``fetchall``, which wait for it; ``rowcount`` is not known until then.
        """
        with self._writer_lock:
            raw = self.engine.raw_connection()
            try:
                if self.is_sqlite:
                    raw.driver_connection.execute("BEGIN IMMEDIATE")
                    yield Transaction(raw.driver_connection, True)
                else:
                    with raw.driver_connection.pipeline():
                        yield Transaction(raw.driver_connection, False)
                        raw.commit()
                        return
                raw.commit()
            except BaseException:
                _roll_back_or_discard(raw)
                raise
            finally:
                raw.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot."""
        with self.engine.connect() as conn, Session(bind=conn) as session, conn.begin():
            yield session

    def dispose(self) -> None:
        self._stop.set()
        self.engine.dispose()

    def _checkpoints(self) -> None:
        # PASSIVE waits for no reader or writer; sqlite3 releases the GIL while it copies and syncs.
        while not self._stop.wait(CHECKPOINT_SECONDS):
            conn = self.engine.raw_connection()  # no BEGIN: a checkpoint runs outside transactions
            try:
                conn.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()


CHECKPOINT_SECONDS = 1.0


def _refuse_dead_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Keep a pooled PostgreSQL connection the server has closed (a restart, a terminated backend)
    from being handed out: the pool drops it and checks out another.

    An idle connection has nothing to read; one the server ended has its goodbye (or EOF) waiting.
    Looking costs no round trip, where SQLAlchemy's pre-ping spent one on every transaction, a
    third of a claim's.
    """
    if dbapi_connection.closed or select.select([dbapi_connection.fileno()], [], [], 0)[0]:
        raise DisconnectionError("the server closed this pooled connection")


def _roll_back_or_discard(raw: Any) -> None:
    """Roll back; a connection that cannot (the server went away mid-transaction) leaves the pool."""
    try:
        raw.rollback()
    except Exception:
        raw.invalidate()


def _configure_sqlite(engine: Engine, *, auto_checkpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if not auto_checkpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")
