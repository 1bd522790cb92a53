"""Set-based statements for the whole-index follower: many rows per round trip, never one per row.

Shared by ``feed`` (applying the change feed), ``details`` (recording the JSON API's answers) and
``plans`` (writing the planner's decisions).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Boolean, DateTime, Dialect, Enum, Integer, String, Table
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


def insert_many(session: Session, model: Any, rows: list[dict], keys: list[str]) -> None:
    """Insert ``rows`` (all with the same columns), leaving alone those whose ``keys`` exist already:
    replays change nothing.

    Sent as one executemany of a statement built once, each row a tuple with only the type
    conversions it needs: SQLAlchemy's own executemany builds a dictionary of every column per row,
    which took more of a whole-index catch-up than SQLite's inserting them did.
    """
    if not rows:
        return
    conn = session.connection()
    columns = tuple(rows[0])
    plan = _insert_plan(conn.dialect, model.__table__, columns, tuple(keys))
    defaults = tuple(default() for default in plan.defaults)
    params = [plan.values(row) + defaults for row in rows]
    if plan.convert:
        for index, row in enumerate(params):
            values = list(row)
            for at, convert in plan.convert:
                values[at] = convert(values[at])
            params[index] = tuple(values)
    conn.exec_driver_sql(plan.sql, params)


@dataclass(frozen=True)
class _InsertPlan:
    sql: str  # INSERT ... ON CONFLICT DO NOTHING, positional parameters: the row's columns, then defaults
    values: Callable[[dict], tuple]  # the row's values, in order
    defaults: tuple[Callable[[], Any], ...]  # values of columns SQLAlchemy would fill in Python
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, conversion) where the driver needs one


@functools.cache
def _insert_plan(
    dialect: Dialect, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]
) -> _InsertPlan:
    defaults = _python_defaults(table, columns)
    names = columns + tuple(defaults)
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
        f"VALUES ({', '.join([mark] * len(names))}) ON CONFLICT ({', '.join(map(quote, keys))}) DO NOTHING"
    )
    getter = operator.itemgetter(*columns)
    values: Callable[[dict], tuple] = getter if len(columns) > 1 else lambda row: (getter(row),)
    convert = tuple(
        (at, found) for at, name in enumerate(names) if (found := _converter(table.c[name].type, dialect))
    )
    return _InsertPlan(sql, values, tuple(defaults.values()), convert)


def _converter(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What the driver needs done to a value of ``column_type``: SQLite keeps datetimes as text and
    enums go as their values; Python's bools and ints go as they are."""
    if isinstance(column_type, Boolean | Integer | String) and not isinstance(column_type, Enum):
        return None
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    # Formatting a datetime as SQLite text is the dearest conversion, and values repeat within a
    # batch (a job's released_at is its version's; updated_at is one "now" for every row).
    if processor is not None and isinstance(column_type, DateTime):
        return functools.lru_cache(maxsize=1 << 14)(processor)
    return processor


@functools.cache
def _python_defaults(table: Table, columns: tuple[str, ...]) -> dict[str, Callable[[], Any]]:
    """Columns missing from ``columns`` whose default SQLAlchemy computes in Python (a value or a
    function like ``utcnow``), as functions giving it."""
    found: dict[str, Callable[[], Any]] = {}
    for column in table.columns:
        default = column.default
        if column.name in columns or default is None:
            continue
        if getattr(default, "is_scalar", False):
            found[column.name] = functools.partial(_same, default.arg)  # type: ignore[attr-defined]
        elif getattr(default, "is_callable", False):
            found[column.name] = functools.partial(default.arg, None)  # type: ignore[attr-defined]
    return found


def _same(value: Any) -> Any:
    return value


def update_by_id(session: Session, model: Any, rows: list[dict]) -> None:
    """One executemany UPDATE ... WHERE id = :b_id; every row sets the same columns. Tuples go to the
    driver as ``insert_many``'s do."""
    if not rows:
        return
    conn = session.connection()
    sql, values, convert = _update_plan(conn.dialect, model.__table__, tuple(rows[0]))
    params = [values(row) for row in rows]
    if convert:
        for index, row in enumerate(params):
            changed = list(row)
            for at, conversion in convert:
                changed[at] = conversion(changed[at])
            params[index] = tuple(changed)
    conn.exec_driver_sql(sql, params)


@functools.cache
def _update_plan(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> tuple[str, Callable[[dict], tuple], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    names = tuple(key for key in keys if key != "b_id")
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sets = ", ".join(f"{quote(name)} = {mark}" for name in names)
    sql = f"UPDATE {quote(table.name)} SET {sets} WHERE {quote(table.c.id.name)} = {mark}"
    convert = tuple(
        (at, found) for at, name in enumerate(names) if (found := _converter(table.c[name].type, dialect))
    )
    return sql, operator.itemgetter(*names, "b_id"), convert


def execute_many(session: Session, stmt: Any, rows: list[dict]) -> None:
    if rows:
        session.connection().execute(stmt, rows)


def cancel(session: Session, version_ids: Sequence[int], reason: str) -> None:
    for chunk in chunks(version_ids):
        cancel_open_jobs(session, chunk, reason)
