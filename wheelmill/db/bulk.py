"""Set-based statements for the whole-index follower: many rows per round trip, never one per row.

Shared by ``feed`` (applying the change feed), ``details`` (recording the JSON API's answers) and
``plans`` (writing the planner's decisions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wheelmill.db.jobs import cancel_open_jobs

CHUNK = 900  # rows per IN (...) list: under every backend's limit on bound parameters
T = TypeVar("T")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def ids(session: Session, query: Any, values: Sequence[Any] | set[Any]) -> list[Any]:
    """``query`` (with an expanding ``ids`` parameter) run over ``values`` a chunk at a time."""
    found: list[Any] = []
    for chunk in chunks(list(values)):
        found.extend(session.connection().scalars(query, {"ids": chunk}))
    return found


def insert(session: Session, model: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on both backends."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model.__table__)


def insert_many(session: Session, model: type, rows: list[dict], keys: list[str]) -> None:
    """Insert ``rows``, leaving alone those whose ``keys`` exist already: replays change nothing."""
    if rows:
        session.connection().execute(insert(session, model).on_conflict_do_nothing(index_elements=keys), rows)


def update_by_id(session: Session, model: Any, rows: list[dict]) -> None:
    """One executemany UPDATE ... WHERE id = :b_id; every row sets the same columns."""
    if rows:
        names = [key for key in rows[0] if key != "b_id"]
        table: Table = model.__table__
        stmt = update(table).where(table.c.id == bindparam("b_id")).values({n: bindparam(n) for n in names})
        execute_many(session, stmt, rows)


def execute_many(session: Session, stmt: Any, rows: list[dict]) -> None:
    if rows:
        session.connection().execute(stmt, rows)


def cancel(session: Session, version_ids: Sequence[int], reason: str) -> None:
    for chunk in chunks(version_ids):
        cancel_open_jobs(session, chunk, reason)
