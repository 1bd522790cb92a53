"""Applying the change feed to the database in bulk: a folded batch of events at a time.

Whole-index mode applies millions of events, so each step is a few set-based statements per batch
(INSERT ... ON CONFLICT DO NOTHING, UPDATE by primary key, DELETE ... IN), never a round trip per
row. Every step is idempotent: applying a batch twice leaves the same rows.

The feed names files but not their URL, hash or size: a file it announces goes to ``feed_files``
(enough for the planner) and its project to ``details_owed`` (see ``wheelmill.db.details``). The
applied serial lives in ``upstream_state``, beside upstream's newest serial (what /metrics and
``wheelmill status`` report the lag against). All of it is written in the transaction of the batch it
describes, so a follower killed at any point loses nothing and repeats nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import bindparam, case, delete, or_, select, update
from sqlalchemy.orm import Session

from wheelmill.db import bulk
from wheelmill.db.tables import (
    DetailsOwed,
    FeedFile,
    Package,
    PackageAlias,
    Source,
    UpstreamState,
    UpstreamWheel,
    Version,
)
from wheelmill.upstream.events import ProjectChange

SERIAL_KEY = "serial"
UPSTREAM_SERIAL_KEY = "upstream_serial"  # upstream's newest serial, as the follower last learned it
ADMIN = "admin"  # versions.yanked_by of a yank an admin made: the follower leaves it alone
UPSTREAM = "upstream"
_FILE_TABLES = (Source.__table__, UpstreamWheel.__table__, FeedFile.__table__)


@dataclass
class Applied:
    """What a step changed: project pages to rewrite and versions whose jobs must be decided again."""

    changed: set[str] = field(default_factory=set)  # canonical names
    replan: set[int] = field(default_factory=set)  # version ids
    created: set[int] = field(default_factory=set)  # version ids new in this transaction: no files, no jobs


# -- progress ---------------------------------------------------------------------------------------


def stored_serial(session: Session) -> int:
    value = session.connection().scalar(select(UpstreamState.value).where(UpstreamState.key == SERIAL_KEY))
    return int(value) if value is not None else 0


def save_serial(session: Session, serial: int) -> None:
    _save(session, SERIAL_KEY, serial)


def save_upstream_serial(session: Session, serial: int) -> None:
    """Upstream's newest serial: the follower's lag is this minus the applied one."""
    _save(session, UPSTREAM_SERIAL_KEY, serial)


def _save(session: Session, key: str, serial: int) -> None:
    stmt = bulk.insert(session, UpstreamState).values(key=key, value=str(serial))
    session.connection().execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": str(serial)})
    )


def owe(session: Session, owed: Mapping[int, tuple[str, datetime]]) -> None:
    """Mark projects (package id -> (spelling, newest release)) as owed details; one owed already
    keeps its place unless this release is newer."""
    if not owed:
        return
    table = DetailsOwed.__table__
    stmt = bulk.insert(session, DetailsOwed)
    newer = stmt.excluded.newest > table.c.newest
    stmt = stmt.on_conflict_do_update(
        index_elements=["package_id"],
        set_={
            "spelling": stmt.excluded.spelling,
            "newest": case((newer, stmt.excluded.newest), else_=table.c.newest),
        },
    )
    session.connection().execute(
        stmt,
        [
            {"package_id": pid, "spelling": spelling, "newest": newest}
            for pid, (spelling, newest) in owed.items()
        ],
    )


def forgive(session: Session, package_ids: Iterable[int]) -> None:
    """Projects no longer owed details: answered, or removed upstream."""
    table = DetailsOwed.__table__
    for chunk in bulk.chunks(list(package_ids)):
        session.connection().execute(delete(table).where(table.c.package_id.in_(chunk)))


# -- a batch of events ------------------------------------------------------------------------------


class _PackageRow(NamedTuple):
    id: int
    last_serial: int
    removed: bool
    quarantined: bool


class _VersionState(NamedTuple):
    removed: bool
    yanked: bool
    yanked_reason: str | None
    yanked_by: str | None
    quarantined: bool


class VersionRow(NamedTuple):
    id: int
    removed: bool
    yanked: bool
    yanked_reason: str | None
    yanked_by: str | None
    quarantined: bool


_WIPED = _VersionState(removed=True, yanked=False, yanked_reason=None, yanked_by=None, quarantined=False)


def apply_changes(session: Session, changes: Mapping[str, ProjectChange]) -> Applied:
    """Apply a folded batch: packages and aliases, versions, flags, files, and details now owed.

    ``replan`` comes back with every live version the batch touched: the planner decides them from
    the names the feed gave, without waiting for the JSON API.
    """
    applied = Applied()
    # Rows are read before they are inserted, so only new ones go through the INSERT: during a first
    # catch-up most are new, later most are not, and both ways no row is sent for nothing.
    packages = _packages(session, list(changes))
    missing = [name for name, change in changes.items() if change.exists and name not in packages]
    bulk.insert_many(
        session,
        Package,
        [{"name": name, "display_name": changes[name].spelling} for name in missing],
        ["name"],
    )
    packages.update(_packages(session, missing))
    live = {name: change for name, change in changes.items() if name in packages}
    bulk.insert_many(
        session,
        PackageAlias,
        [
            {"alias": spelling, "package_id": packages[name].id}
            for name, change in live.items()
            for spelling in change.spellings
            if spelling != name
        ],
        ["alias"],
    )
    wiped = [packages[name].id for name, c in live.items() if c.wiped]
    _wipe_versions(
        session, bulk.ids(session, select(Version.id).where(Version.package_id.in_(bindparam("ids"))), wiped)
    )
    _apply_package_flags(session, live, packages, applied)
    versions = versions_of(session, [packages[name].id for name, change in live.items() if change.releases])
    new = [
        {
            "package_id": packages[name].id,
            "version": release.version,
            "canonical": canonical,
            "released_at": datetime.fromtimestamp(release.timestamp, UTC),
        }
        for name, change in live.items()
        for canonical, release in change.releases.items()
        if release.exists and (packages[name].id, canonical) not in versions
    ]
    bulk.insert_many(session, Version, new, ["package_id", "canonical"])
    versions.update(versions_of(session, sorted({row["package_id"] for row in new})))
    created = applied.created = {versions[row["package_id"], row["canonical"]].id for row in new}
    _apply_version_flags(session, live, packages, versions, applied)
    _remove_files(session, live, applied)
    announced = _announce_files(session, live, packages, versions, created)
    _owe_details(session, live, packages, announced)
    applied.changed.update(live)
    return applied


def _apply_package_flags(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    applied: Applied,
) -> None:
    updates, quarantined, cleared = [], [], []
    for name, change in changes.items():
        row = packages[name]
        was_quarantined = row.quarantined and not change.wiped
        removed = row.removed if change.exists is None else not change.exists
        now_quarantined = was_quarantined if change.quarantined is None else change.quarantined
        serial = max(row.last_serial, change.last_serial)
        if (removed, now_quarantined, serial) != (row.removed, row.quarantined, row.last_serial):
            updates.append(
                {"b_id": row.id, "removed": removed, "quarantined": now_quarantined, "last_serial": serial}
            )
        if now_quarantined and not was_quarantined:
            quarantined.append(row.id)
        elif was_quarantined and not now_quarantined:
            cleared.append(row.id)
    bulk.update_by_id(session, Package, updates)
    by_package = select(Version.id).where(
        Version.package_id.in_(bindparam("ids")), Version.removed.is_(False)
    )
    bulk.cancel(session, bulk.ids(session, by_package, quarantined), "quarantined upstream")
    applied.replan.update(bulk.ids(session, by_package, cleared))


def _apply_version_flags(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    versions: Mapping[tuple[int, str], VersionRow],
    applied: Applied,
) -> None:
    releases = [
        (row, release)
        for name, change in changes.items()
        for canonical, release in change.releases.items()
        if (row := versions.get((packages[name].id, canonical))) is not None
    ]
    # Removals first: later events in the batch (a release uploaded again) start from the wiped state.
    _wipe_versions(session, [row.id for row, release in releases if release.wiped])
    updates, yank_changes, quarantined = [], [], []
    for row, release in releases:
        current = _VersionState(*row[1:])
        start = _WIPED if release.wiped else current
        if current.yanked_by == ADMIN:
            yank = (current.yanked, current.yanked_reason, current.yanked_by)
        elif release.yanked is None:
            yank = (start.yanked, start.yanked_reason, start.yanked_by)
        elif release.yanked:  # the reason comes with the details
            yank = (True, start.yanked_reason if start.yanked else None, UPSTREAM)
        else:
            yank = (False, None, None)
        target = _VersionState(
            current.removed if release.exists is None else not release.exists,
            *yank,
            start.quarantined if release.quarantined is None else release.quarantined,
        )
        if target != current:
            updates.append({"b_id": row.id, **target._asdict()})
        if release.yanked is not None:  # upstream's files carry upstream's yank, whoever holds the version's
            yank_changes.append({"b_version": row.id, "yanked": release.yanked})
        if target.quarantined and not current.quarantined:
            quarantined.append(row.id)
        elif not target.removed:
            applied.replan.add(row.id)
    bulk.update_by_id(session, Version, updates)
    yank_files(session, yank_changes)
    bulk.cancel(session, quarantined, "quarantined upstream")


def yank_files(session: Session, versions: list[dict]) -> None:
    """Files carry their release's upstream yank ({"b_version": id, "yanked": flag} per version)."""
    for table in _FILE_TABLES[:2]:
        bulk.execute_many(
            session,
            update(table)
            .where(table.c.version_id == bindparam("b_version"))
            .values(yanked=bindparam("yanked")),
            versions,
        )


def _wipe_versions(session: Session, version_ids: Sequence[int]) -> None:
    """A removal upstream: the versions' files go and their open jobs are cancelled (a builder on one
    is refused at its next heartbeat); the rows stay, marked removed, for the farm's own history. An
    admin's yank stays too."""
    table = Version.__table__
    upstream_yank = or_(table.c.yanked_by.is_(None), table.c.yanked_by != ADMIN)
    for chunk in bulk.chunks(version_ids):
        conn = session.connection()
        conn.execute(update(table).where(table.c.id.in_(chunk)).values(removed=True, quarantined=False))
        conn.execute(
            update(table)
            .where(table.c.id.in_(chunk), upstream_yank)
            .values(yanked=False, yanked_reason=None, yanked_by=None)
        )
        for files in _FILE_TABLES:
            conn.execute(delete(files).where(files.c.version_id.in_(chunk)))
    bulk.cancel(session, version_ids, "removed upstream")


def _remove_files(session: Session, changes: Mapping[str, ProjectChange], applied: Applied) -> None:
    gone = [name for change in changes.values() for r in change.releases.values() for name in r.removed_files]
    lost: set[int] = set()
    for chunk in bulk.chunks(gone):
        for table in _FILE_TABLES:
            lost.update(
                session.connection().scalars(
                    delete(table).where(table.c.filename.in_(chunk)).returning(table.c.version_id)
                )
            )
    if not lost:
        return
    with_sdist = set(
        bulk.ids(session, select(Source.version_id).where(Source.version_id.in_(bindparam("ids"))), lost)
    ) | set(
        bulk.ids(
            session,
            select(FeedFile.version_id).where(FeedFile.version_id.in_(bindparam("ids")), FeedFile.sdist),
            lost,
        )
    )
    # Without an sdist a build cannot start or finish: stop it now rather than at upload.
    bulk.cancel(session, sorted(lost - with_sdist), "sdist removed upstream")
    applied.replan.update(lost)


def _announce_files(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    versions: Mapping[tuple[int, str], VersionRow],
    created: set[int],
) -> set[str]:
    """Record the names of files the batch added; returns the projects with a file not yet detailed.
    (A version ``created`` by this batch has no details recorded: its files need no look-up.)"""
    added = {
        filename: (name, versions[packages[name].id, canonical].id, sdist)
        for name, change in changes.items()
        for canonical, release in change.releases.items()
        for filename, sdist in release.added.items()
        if (packages[name].id, canonical) in versions
    }
    known = [filename for filename, (_, version_id, _) in added.items() if version_id not in created]
    detailed: set[str] = set()
    for table in (Source, UpstreamWheel):
        detailed.update(
            bulk.ids(session, select(table.filename).where(table.filename.in_(bindparam("ids"))), known)
        )
    fresh = {filename: entry for filename, entry in added.items() if filename not in detailed}
    bulk.insert_many(
        session,
        FeedFile,
        [
            {"version_id": vid, "filename": filename, "sdist": sdist}
            for filename, (_, vid, sdist) in fresh.items()
        ],
        ["filename"],
    )
    return {name for name, _, _ in fresh.values()}


def _owe_details(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    announced: set[str],
) -> None:
    owed = {}
    for name, change in changes.items():
        if change.exists is not False and (name in announced or change.wants_details):
            newest = max(
                (r.timestamp for r in change.releases.values() if r.exists), default=change.timestamp
            )
            owed[packages[name].id] = (change.spelling, datetime.fromtimestamp(newest, UTC))
    owe(session, owed)
    forgive(session, [packages[name].id for name, change in changes.items() if change.exists is False])


# -- reads ------------------------------------------------------------------------------------------


def _packages(session: Session, names: Sequence[str]) -> dict[str, _PackageRow]:
    found = {}
    for chunk in bulk.chunks(names):
        for name, *values in session.connection().execute(
            select(Package.name, Package.id, Package.last_serial, Package.removed, Package.quarantined).where(
                Package.name.in_(chunk)
            )
        ):
            found[name] = _PackageRow(*values)
    return found


def versions_of(session: Session, package_ids: Sequence[int]) -> dict[tuple[int, str], VersionRow]:
    """(package id, canonical version) -> the version's row, for every version of these packages."""
    found = {}
    for chunk in bulk.chunks(package_ids):
        for package_id, canonical, *values in session.connection().execute(
            select(
                Version.package_id,
                Version.canonical,
                Version.id,
                Version.removed,
                Version.yanked,
                Version.yanked_reason,
                Version.yanked_by,
                Version.quarantined,
            ).where(Version.package_id.in_(chunk))
        ):
            found[package_id, canonical] = VersionRow(*values)
    return found
