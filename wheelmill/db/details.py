"""What the change feed leaves out, owed and then recorded: each file's URL, sha256, size and
requires-python, and a yank's reason, all from one JSON API answer per project.

Projects owing an answer wait in ``details_owed``, newest release first: builders claim the newest
releases first, and a build cannot start before its sdist's details are recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from wheelmill.db import bulk
from wheelmill.db.catalog import canonical_version, file_columns
from wheelmill.db.feed import ADMIN, UPSTREAM, Applied, forgive, versions_of, yank_files
from wheelmill.db.tables import DetailsOwed, FeedFile, Package, Source, UpstreamWheel, Version
from wheelmill.errors import InvalidName
from wheelmill.upstream.model import UpstreamFile


class OwedProject(NamedTuple):
    """A project owed a JSON API answer, and the serial that answer must have reached."""

    name: str  # canonical
    spelling: str  # as the feed last spelled it: the JSON API's URL for it (others redirect)
    package_id: int
    last_serial: int
    newest: datetime  # its newest release: the drain's order


def count_owed(session: Session) -> int:
    return session.connection().scalar(select(func.count()).select_from(DetailsOwed)) or 0


def owed_projects(session: Session, after: OwedProject | None, limit: int) -> list[OwedProject]:
    """Up to ``limit`` owed projects, newest release first, after ``after`` in that order: a project
    whose answer was stale stays owed without holding up the others."""
    query = (
        select(Package.name, DetailsOwed.spelling, Package.id, Package.last_serial, DetailsOwed.newest)
        .join(Package, Package.id == DetailsOwed.package_id)
        .order_by(DetailsOwed.newest.desc(), DetailsOwed.package_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            or_(
                DetailsOwed.newest < after.newest,
                and_(DetailsOwed.newest == after.newest, DetailsOwed.package_id > after.package_id),
            )
        )
    return [OwedProject(*row) for row in session.connection().execute(query)]


def record_details(
    session: Session, answers: Sequence[tuple[OwedProject, Mapping[str, Sequence[UpstreamFile]] | None]]
) -> Applied:
    """Record what the JSON API said (release spelling -> files; None if the project is not served).

    Only releases the feed made known and did not remove are recorded; a file the feed added but the
    answer lacks was removed since, and its removal is on its way through the feed. A yank an admin
    made is left as it is.
    """
    applied = Applied()
    versions = versions_of(session, [project.package_id for project, _ in answers])
    files: dict[str, tuple[int, UpstreamFile]] = {}
    yanks = []
    for project, releases in answers:
        for spelling, release_files in (releases or {}).items():
            row = versions.get((project.package_id, _canonical_or_none(spelling)))
            if row is None or row.removed:
                continue
            for file in release_files:
                files[file.filename] = (row.id, file)
            if not release_files or row.yanked_by == ADMIN:
                continue
            yanked = all(file.yanked for file in release_files)
            reason = next((file.yanked_reason for file in release_files if file.yanked_reason), None)
            if (yanked, reason if yanked else None) != (row.yanked, row.yanked_reason):
                yanks.append(
                    {
                        "b_id": row.id,
                        "yanked": yanked,
                        "yanked_reason": reason if yanked else None,
                        "yanked_by": UPSTREAM if yanked else None,
                    }
                )
                applied.changed.add(project.name)
    bulk.update_by_id(session, Version, yanks)
    yank_files(session, [{"b_version": yank["b_id"], "yanked": yank["yanked"]} for yank in yanks])
    for table, rows in _file_rows(session, files).items():
        bulk.insert_many(session, table, rows, ["filename"])
        applied.replan.update(row["version_id"] for row in rows)
    # Recorded in full now: the names the feed announced are no longer needed.
    feed_files = FeedFile.__table__
    for chunk in bulk.chunks(list(files)):
        session.connection().execute(delete(feed_files).where(feed_files.c.filename.in_(chunk)))
    by_id = {project.package_id: project.name for project, _ in answers}
    applied.changed.update(by_id[pid] for (pid, _), row in versions.items() if row.id in applied.replan)
    forgive(session, by_id)
    return applied


def _file_rows(session: Session, files: Mapping[str, tuple[int, UpstreamFile]]) -> dict[Any, list[dict]]:
    known: set[str] = set()
    for table in (Source, UpstreamWheel):
        known.update(
            bulk.ids(session, select(table.filename).where(table.filename.in_(bindparam("ids"))), list(files))
        )
    rows: dict[Any, list[dict]] = {Source: [], UpstreamWheel: []}
    for filename, (version_id, file) in files.items():
        if filename in known:
            continue
        row = {"version_id": version_id, "filename": filename, **file_columns(file)}
        rows[Source if file.is_sdist else UpstreamWheel].append(row)
    return rows


@functools.lru_cache(maxsize=1 << 16)
def _canonical_or_none(spelling: str) -> str | None:
    try:
        return canonical_version(spelling)
    except InvalidName:
        return None
