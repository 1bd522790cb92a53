"""The publisher's outbox: which project pages, log pages and site pages are out of date."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from wheelmill.db.engine import Statement, Transaction
from wheelmill.db.tables import PendingPage, utcnow


@dataclass(frozen=True)
class Pending:
    """A snapshot of the outbox, as taken by the publisher."""

    projects: frozenset[str]
    logs: frozenset[int]
    site: bool
    marks: tuple[tuple[str, str, datetime], ...]  # (kind, key, marked_at), to delete once published


def _upsert(insert):  # type: ignore[no-untyped-def]
    statement = insert(PendingPage.__table__)
    return statement.on_conflict_do_update(
        index_elements=["kind", "key"], set_={"marked_at": statement.excluded.marked_at}
    )


# Built once: marks are written on every completion, the hottest write after claims.
_UPSERT = {True: _upsert(sqlite_insert), False: _upsert(pg_insert)}


def mark(session: Session, *, projects: Iterable[str] = (), logs: Iterable[int] = ()) -> None:
    """Mark pages out of date; with no project or log, the site pages alone (any mark implies them)."""
    rows = [{"kind": "project", "key": name} for name in projects]
    rows += [{"kind": "log", "key": str(build_id)} for build_id in logs]
    rows = rows or [{"kind": "site", "key": ""}]
    now = utcnow()
    conn = session.connection()
    conn.execute(_UPSERT[conn.dialect.name == "sqlite"], [{**row, "marked_at": now} for row in rows])


# A finished build changes its project's pages, its log page and the site pages: one statement on
# the completion hot path (wheelmill.db.jobs), outside any Session. The site pages need no row of
# their own (any mark implies them): one row every completion rewrote made concurrent completions
# queue on its lock on PostgreSQL, and cost SQLite a page of WAL each.
_MARK_BUILD = Statement(
    "INSERT INTO pending_pages (kind, key, marked_at) "
    "VALUES ('project', :package, :now), ('log', :build, :now) "
    "ON CONFLICT (kind, key) DO UPDATE SET marked_at = excluded.marked_at"
)


def mark_build(tx: Transaction, package: str, build_id: int) -> None:
    tx.execute(_MARK_BUILD, {"package": package, "build": str(build_id), "now": utcnow()})


def take(session: Session, limit: int = 1000) -> Pending:
    rows = session.execute(
        select(PendingPage.kind, PendingPage.key, PendingPage.marked_at)
        .order_by(PendingPage.marked_at)
        .limit(limit)
    ).all()
    return Pending(
        projects=frozenset(key for kind, key, _ in rows if kind == "project"),
        logs=frozenset(int(key) for kind, key, _ in rows if kind == "log"),
        site=bool(rows),  # every page a mark names shows on the site pages too
        marks=tuple((kind, key, marked) for kind, key, marked in rows),
    )


# By primary key, one row per parameter set: an OR of many (kind, key) pairs made SQLite scan the
# outbox while holding the write lock, stalling every claim behind it for ~100 ms.
_DONE = Statement(
    "DELETE FROM pending_pages WHERE kind = :kind AND key = :key AND marked_at <= :marked"
)


def done(tx: Transaction, marks: Sequence[tuple[str, str, datetime]]) -> None:
    """Forget marks whose pages were published; a page marked again meanwhile stays pending."""
    if marks:
        tx.executemany(_DONE, [{"kind": kind, "key": key, "marked": marked} for kind, key, marked in marks])
