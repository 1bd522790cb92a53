"""Download statistics: the access-log rollups ``logs ingest`` writes, and the figures pages read.

Counts are added with ``INSERT ... ON CONFLICT DO UPDATE SET downloads = downloads + excluded``, one
statement per chunk of log, so ingesting costs a few hundred row writes per chunk, not one per hit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wheelmill.db.tables import Build, ClientDownloads, File, FileDownloads, IngestedLog, utcnow

# (filename, package, day) and (day, installer, installer_version, python, system, distro)
FileKey = tuple[str, str, date]
ClientKey = tuple[date, str, str, str, str, str]
_CLIENT_COLUMNS = ("day", "installer", "installer_version", "python", "system", "distro")
_IN_CHUNK = 500  # names per IN (...): SQLite caps bound parameters


def _adder(dialect_insert: Callable[[Table], Any], table: Any, keys: Sequence[str]) -> Any:
    statement = dialect_insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={"downloads": table.c.downloads + statement.excluded.downloads}
    )


# Built once per dialect, as the outbox does: ingest runs them for every chunk.
_ADD_FILES = {
    name: _adder(module.insert, FileDownloads.__table__, ("filename", "day"))
    for name, module in (("sqlite", sqlite), ("postgresql", postgresql))
}
_ADD_CLIENTS = {
    name: _adder(module.insert, ClientDownloads.__table__, _CLIENT_COLUMNS)
    for name, module in (("sqlite", sqlite), ("postgresql", postgresql))
}


def bytes_read(session: Session, key: str) -> int:
    """How far the log known by ``key`` was read: 0 for a log never seen."""
    return session.scalar(select(IngestedLog.bytes_read).where(IngestedLog.first_line_sha256 == key)) or 0


def add_chunk(
    session: Session,
    *,
    key: str,
    path: str,
    start: int,
    end: int,
    lines: int,
    files: Counter[FileKey],
    clients: Counter[ClientKey],
) -> bool:
    """Add one chunk's counts and move the log's position from ``start`` to ``end``, in the caller's
    transaction. False, with nothing written, when the log is no longer at ``start``: another ingest
    read this chunk first, and adding it again would count its downloads twice."""
    if start == 0:
        moved = _claim_new_log(session, key, path, end, lines)
    else:
        moved = (
            session.execute(
                update(IngestedLog)
                .where(IngestedLog.first_line_sha256 == key, IngestedLog.bytes_read == start)
                .values(
                    bytes_read=end, lines_read=IngestedLog.lines_read + lines, path=path, ingested_at=utcnow()
                )
            ).rowcount
            == 1
        )
    if not moved:
        return False
    conn = session.connection()
    if files:
        conn.execute(
            _ADD_FILES[conn.dialect.name],
            [
                {"filename": filename, "package": package, "day": day, "downloads": n}
                for (filename, package, day), n in files.items()
            ],
        )
    if clients:
        conn.execute(
            _ADD_CLIENTS[conn.dialect.name],
            [
                {**dict(zip(_CLIENT_COLUMNS, client, strict=True)), "downloads": n}
                for client, n in clients.items()
            ],
        )
    return True


def _claim_new_log(session: Session, key: str, path: str, end: int, lines: int) -> bool:
    conn = session.connection()
    dialect_insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    row = {
        "first_line_sha256": key,
        "path": path,
        "bytes_read": end,
        "lines_read": lines,
        "ingested_at": utcnow(),
    }
    # RETURNING, not rowcount: psycopg reports no reliable rowcount for ON CONFLICT DO NOTHING.
    statement = dialect_insert(IngestedLog).values(row).on_conflict_do_nothing()
    return conn.execute(statement.returning(IngestedLog.first_line_sha256)).first() is not None


# Built once: every project page reads it, and building it cost more than running it.
_BY_PACKAGE = (
    select(FileDownloads.package, func.sum(FileDownloads.downloads))
    .where(FileDownloads.package.in_(bindparam("names", expanding=True)))
    .group_by(FileDownloads.package)
)


def downloads_by_package(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Downloads of all time per package, for each of ``names`` (canonical), 0 for none."""
    totals = dict.fromkeys(names, 0)
    wanted = list(totals)
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = session.connection().execute(_BY_PACKAGE, {"names": wanted[start : start + _IN_CHUNK]})
        totals.update({package: int(total) for package, total in rows})
    return totals


def downloads_per_day(
    session: Session, days: int = 90, *, today: date | None = None
) -> list[tuple[date, int]]:
    """Downloads on each of the last ``days`` UTC days up to ``today``, oldest first, 0 for a quiet day:
    a series a chart can draw as it is."""
    first = _first_day(days, today)
    rows = session.execute(
        select(FileDownloads.day, func.sum(FileDownloads.downloads))
        .where(FileDownloads.day >= first)
        .group_by(FileDownloads.day)
    )
    totals = {day: int(total) for day, total in rows}
    return [(day, totals.get(day, 0)) for day in (first + timedelta(n) for n in range(days))]


def time_saved_seconds(session: Session) -> float:
    """Build time users were spared, as piwheels counts it: each download of a farm-built wheel saved
    its user the build that produced it. Imported wheels, with no build, count nothing."""
    total = session.scalar(
        select(func.sum(FileDownloads.downloads * Build.duration_s))
        .join(File, File.filename == FileDownloads.filename)
        .join(Build, Build.id == File.build_id)
    )
    return float(total or 0.0)


@dataclass(frozen=True)
class ClientBreakdown:
    """Downloads in a window by each kind of client, most first; "" labels agents that did not say."""

    installers: list[tuple[str, int]]  # pip, uv, curl
    installer_versions: list[tuple[str, int]]  # "pip 24.0"
    pythons: list[tuple[str, int]]  # 3.11
    systems: list[tuple[str, int]]  # Linux
    distros: list[tuple[str, int]]  # Raspbian GNU/Linux 12


def installer_breakdown(session: Session, days: int = 30, *, today: date | None = None) -> ClientBreakdown:
    """Who downloaded wheels in the last ``days`` UTC days up to ``today``."""
    first = _first_day(days, today)

    def by(*columns: ColumnElement[str]) -> list[tuple[str, int]]:
        label = columns[0] if len(columns) == 1 else func.trim(columns[0] + " " + columns[1])
        total = func.sum(ClientDownloads.downloads)
        rows = session.execute(
            select(label, total)
            .where(ClientDownloads.day >= first)
            .group_by(label)
            .order_by(total.desc(), label)
        )
        return [(text, int(count)) for text, count in rows]

    return ClientBreakdown(
        installers=by(ClientDownloads.installer),
        installer_versions=by(ClientDownloads.installer, ClientDownloads.installer_version),
        pythons=by(ClientDownloads.python),
        systems=by(ClientDownloads.system),
        distros=by(ClientDownloads.distro),
    )


def _first_day(days: int, today: date | None) -> date:
    return (today or datetime.now(UTC).date()) - timedelta(days - 1)
