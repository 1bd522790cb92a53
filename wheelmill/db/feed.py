"""Applying the change feed to the database in bulk: a folded batch of events, then file details.

Whole-index mode applies millions of events, so each step is a few set-based statements per batch
(INSERT ... ON CONFLICT DO NOTHING, UPDATE by primary key, DELETE ... IN), never a round trip per
row. Every step is idempotent: applying a batch twice leaves the same rows.

The follower's progress lives in ``upstream_state``: ``serial``, how far the feed is applied, and one
``pending:NAME`` row per project whose file details (URL, sha256, size, requires-python, yank reason)
the feed does not carry and a JSON API request still owes. Both are written in the transaction of the
batch they describe, so a follower killed at any point loses nothing and repeats nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wheelmill.db.catalog import canonical_version
from wheelmill.db.jobs import REPLANNABLE, STATUS_BY_OUTCOME, cancel_open_jobs
from wheelmill.db.tables import (
    Job,
    JobStatus,
    Package,
    PackageAlias,
    Source,
    UpstreamState,
    UpstreamWheel,
    Version,
    utcnow,
)
from wheelmill.errors import InvalidName
from wheelmill.planning import Decision, Outcome, VersionFacts
from wheelmill.upstream.events import ProjectChange
from wheelmill.upstream.model import UpstreamFile

SERIAL_KEY = "serial"
PENDING = "pending:"
CHUNK = 900  # rows per IN (...) list: under every backend's limit on bound parameters
T = TypeVar("T")


@dataclass
class Applied:
    """What a step changed: project pages to rewrite and versions whose jobs must be decided again."""

    changed: set[str] = field(default_factory=set)  # canonical names
    replan: set[int] = field(default_factory=set)  # version ids


class PendingProject(NamedTuple):
    """A project the follower owes a JSON API request, and the serial that answer must have reached."""

    name: str  # canonical
    spelling: str  # as the feed last spelled it: the JSON API's URL for it (others redirect)
    package_id: int
    last_serial: int


# -- progress ---------------------------------------------------------------------------------------


def stored_serial(session: Session) -> int:
    value = session.connection().scalar(select(UpstreamState.value).where(UpstreamState.key == SERIAL_KEY))
    return int(value) if value is not None else 0


def save_serial(session: Session, serial: int) -> None:
    stmt = _insert(session, UpstreamState).values(key=SERIAL_KEY, value=str(serial))
    session.connection().execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": str(serial)})
    )


def count_pending(session: Session) -> int:
    return session.connection().scalar(select(func.count()).where(_pending_keys())) or 0


def pending_projects(session: Session, after: str, limit: int) -> list[PendingProject]:
    """Up to ``limit`` projects owed details, by name after ``after``: a stale one does not block others."""
    while True:
        rows = (
            session.connection()
            .execute(
                select(UpstreamState.key, UpstreamState.value)
                .where(_pending_keys(), UpstreamState.key > PENDING + after)
                .order_by(UpstreamState.key)
                .limit(limit)
            )
            .all()
        )
        if not rows:
            return []
        spellings = {key.removeprefix(PENDING): value for key, value in rows}
        found = {
            name: PendingProject(name, spellings[name], package_id, serial)
            for name, package_id, serial in session.connection().execute(
                select(Package.name, Package.id, Package.last_serial).where(Package.name.in_(list(spellings)))
            )
        }
        # A marker whose package row was deleted (by hand) cannot be served: drop it, read on.
        drop_pending(session, [name for name in spellings if name not in found])
        if found:
            return [found[name] for name in sorted(found)]
        after = rows[-1][0].removeprefix(PENDING)


def drop_pending(session: Session, names: Iterable[str]) -> None:
    table = UpstreamState.__table__
    for chunk in _chunks([PENDING + name for name in names]):
        session.connection().execute(delete(table).where(table.c.key.in_(chunk)))


def _pending_keys() -> Any:
    # ';' follows ':' in ASCII: the range is every key with the prefix, read from the primary key index.
    return (UpstreamState.key >= PENDING) & (UpstreamState.key < PENDING[:-1] + ";")


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
    quarantined: bool


class _VersionRow(NamedTuple):
    id: int
    removed: bool
    yanked: bool
    yanked_reason: str | None
    quarantined: bool


_WIPED = _VersionState(removed=True, yanked=False, yanked_reason=None, quarantined=False)


def apply_changes(session: Session, changes: Mapping[str, ProjectChange]) -> Applied:
    """Apply a folded batch: packages and aliases, versions, flags, removals, and details still owed."""
    applied = Applied()
    _insert_many(
        session,
        Package,
        [{"name": name, "display_name": c.spelling} for name, c in changes.items() if c.exists],
        ["name"],
    )
    packages = _packages(session, list(changes))
    _insert_many(
        session,
        PackageAlias,
        [
            {"alias": spelling, "package_id": packages[name].id}
            for name, change in changes.items()
            if name in packages
            for spelling in change.spellings
            if spelling != name
        ],
        ["alias"],
    )
    wiped = [packages[name].id for name, c in changes.items() if c.wiped and name in packages]
    _wipe_versions(
        session, _ids(session, select(Version.id).where(Version.package_id.in_(bindparam("ids"))), wiped)
    )
    _apply_package_flags(session, changes, packages, applied)
    _insert_many(
        session,
        Version,
        [
            {
                "package_id": packages[name].id,
                "version": release.version,
                "canonical": canonical,
                "released_at": datetime.fromtimestamp(release.timestamp, UTC),
            }
            for name, change in changes.items()
            if name in packages
            for canonical, release in change.releases.items()
            if release.exists
        ],
        ["package_id", "canonical"],
    )
    _apply_version_flags(session, changes, packages, applied)
    _remove_files(session, changes, applied)
    _mark_pending(session, changes, packages)
    applied.changed.update(name for name in changes if name in packages)
    return applied


def _apply_package_flags(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    applied: Applied,
) -> None:
    updates, quarantined, cleared = [], [], []
    for name, change in changes.items():
        row = packages.get(name)
        if row is None:
            continue
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
    _update_by_id(session, Package, updates)
    by_package = select(Version.id).where(
        Version.package_id.in_(bindparam("ids")), Version.removed.is_(False)
    )
    _cancel(session, _ids(session, by_package, quarantined), "quarantined upstream")
    applied.replan.update(_ids(session, by_package, cleared))


def _apply_version_flags(
    session: Session,
    changes: Mapping[str, ProjectChange],
    packages: Mapping[str, _PackageRow],
    applied: Applied,
) -> None:
    touched = [packages[name].id for name, change in changes.items() if change.releases and name in packages]
    versions = _versions(session, touched)
    releases = [
        (row, release)
        for name, change in changes.items()
        if name in packages
        for canonical, release in change.releases.items()
        if (row := versions.get((packages[name].id, canonical))) is not None
    ]
    # Removals first: later events in the batch (a release uploaded again) start from the wiped state.
    _wipe_versions(session, [row.id for row, release in releases if release.wiped])
    updates, yank_changes, quarantined = [], [], []
    for row, release in releases:
        current = _WIPED if release.wiped else _VersionState(*row[1:])
        yanked = current.yanked if release.yanked is None else release.yanked
        target = _VersionState(
            removed=current.removed if release.exists is None else not release.exists,
            yanked=yanked,
            yanked_reason=current.yanked_reason if yanked else None,  # a yank's reason comes with details
            quarantined=current.quarantined if release.quarantined is None else release.quarantined,
        )
        if target != current:
            updates.append({"b_id": row.id, **target._asdict()})
        if target.yanked != current.yanked:
            yank_changes.append({"b_version": row.id, "yanked": target.yanked})
        if target.quarantined and not current.quarantined:
            quarantined.append(row.id)
        elif current.quarantined and not target.quarantined and not target.removed:
            applied.replan.add(row.id)
    _update_by_id(session, Version, updates)
    _yank_files(session, yank_changes)
    _cancel(session, quarantined, "quarantined upstream")


def _yank_files(session: Session, versions: list[dict]) -> None:
    """Files carry their release's yank ({"b_version": id, "yanked": flag} per version)."""
    for table in (Source.__table__, UpstreamWheel.__table__):
        _execute_many(
            session,
            update(table)
            .where(table.c.version_id == bindparam("b_version"))
            .values(yanked=bindparam("yanked")),
            versions,
        )


def _wipe_versions(session: Session, version_ids: Sequence[int]) -> None:
    """A removal upstream: the versions' files go and their open jobs are cancelled (a builder on one
    is refused at its next heartbeat); the rows stay, marked removed, for the farm's own history."""
    versions = Version.__table__
    for chunk in _chunks(version_ids):
        session.connection().execute(
            update(versions).where(versions.c.id.in_(chunk)).values(_WIPED._asdict())
        )
        for table in (Source.__table__, UpstreamWheel.__table__):
            session.connection().execute(delete(table).where(table.c.version_id.in_(chunk)))
    _cancel(session, version_ids, "removed upstream")


def _remove_files(session: Session, changes: Mapping[str, ProjectChange], applied: Applied) -> None:
    gone = [name for change in changes.values() for r in change.releases.values() for name in r.removed_files]
    lost: set[int] = set()
    for chunk in _chunks(gone):
        for table in (Source.__table__, UpstreamWheel.__table__):
            lost.update(
                session.connection().scalars(
                    delete(table).where(table.c.filename.in_(chunk)).returning(table.c.version_id)
                )
            )
    with_sdist = set(
        _ids(session, select(Source.version_id).where(Source.version_id.in_(bindparam("ids"))), lost)
    )
    # Without an sdist a build cannot start or finish: stop it now rather than at upload.
    _cancel(session, sorted(lost - with_sdist), "sdist removed upstream")
    applied.replan.update(lost)


def _mark_pending(
    session: Session, changes: Mapping[str, ProjectChange], packages: Mapping[str, _PackageRow]
) -> None:
    owed = [
        {"key": PENDING + name, "value": change.spelling}
        for name, change in changes.items()
        if name in packages and change.exists is not False and change.needs_details
    ]
    _insert_many(session, UpstreamState, owed, ["key"])
    drop_pending(session, [name for name, change in changes.items() if change.exists is False])


# -- file details -----------------------------------------------------------------------------------


def record_details(
    session: Session, answers: Sequence[tuple[PendingProject, Mapping[str, Sequence[UpstreamFile]] | None]]
) -> Applied:
    """Record what the JSON API said (release spelling -> files; None if the project is not served).

    Only releases the feed made known and did not remove are recorded; a file the feed added but the
    answer lacks was removed since, and its removal is on its way through the feed.
    """
    applied = Applied()
    versions = _versions(session, [project.package_id for project, _ in answers])
    files: dict[str, tuple[int, UpstreamFile]] = {}
    yanks = []
    for project, releases in answers:
        for spelling, release_files in (releases or {}).items():
            row = versions.get((project.package_id, _canonical_or_none(spelling)))
            if row is None or row.removed:
                continue
            for file in release_files:
                files[file.filename] = (row.id, file)
            yanked = bool(release_files) and all(file.yanked for file in release_files)
            reason = next((file.yanked_reason for file in release_files if file.yanked_reason), None)
            if release_files and (yanked, reason if yanked else None) != (row.yanked, row.yanked_reason):
                yanks.append({"b_id": row.id, "yanked": yanked, "yanked_reason": reason if yanked else None})
                applied.changed.add(project.name)
    _update_by_id(session, Version, yanks)
    _yank_files(session, [{"b_version": yank["b_id"], "yanked": yank["yanked"]} for yank in yanks])
    for table, rows in _file_rows(session, files).items():
        _insert_many(session, table, rows, ["filename"])
        applied.replan.update(row["version_id"] for row in rows)
    by_id = {project.package_id: project.name for project, _ in answers}
    applied.changed.update(by_id[pid] for (pid, _), row in versions.items() if row.id in applied.replan)
    drop_pending(session, [project.name for project, _ in answers])
    return applied


def _file_rows(session: Session, files: Mapping[str, tuple[int, UpstreamFile]]) -> dict[Any, list[dict]]:
    known: set[str] = set()
    for table in (Source, UpstreamWheel):
        known.update(
            _ids(session, select(table.filename).where(table.filename.in_(bindparam("ids"))), list(files))
        )
    rows: dict[Any, list[dict]] = {Source: [], UpstreamWheel: []}
    for filename, (version_id, file) in files.items():
        if filename in known:
            continue
        row = {
            "version_id": version_id,
            "filename": filename,
            "url": file.url,
            "sha256": file.sha256,
            "size": file.size,
            "requires_python": file.requires_python,
            "upload_time": file.upload_time,
            "yanked": file.yanked,
        }
        rows[Source if file.is_sdist else UpstreamWheel].append(row)
    return rows


@functools.lru_cache(maxsize=1 << 16)
def _canonical_or_none(spelling: str) -> str | None:
    try:
        return canonical_version(spelling)
    except InvalidName:
        return None


# -- planning in bulk -------------------------------------------------------------------------------


def facts_of_versions(
    session: Session, version_ids: Sequence[int]
) -> dict[int, tuple[datetime, VersionFacts]]:
    """``jobs.version_facts`` for many versions in four queries: version id -> (released_at, facts)."""
    sdists: dict[int, list[tuple[str, str | None]]] = {}
    wheels: dict[int, list[str]] = {}
    rows = []
    for chunk in _chunks(version_ids):
        rows.extend(
            session.connection().execute(
                select(
                    Version.id,
                    Version.released_at,
                    Version.yanked,
                    Version.quarantined | Package.quarantined | Version.removed | Package.removed,
                    Package.skip_reason,
                    Version.skip_reason,
                )
                .join(Package, Package.id == Version.package_id)
                .where(Version.id.in_(chunk))
            )
        )
        for version_id, filename, requires_python in session.connection().execute(
            select(Source.version_id, Source.filename, Source.requires_python).where(
                Source.version_id.in_(chunk)
            )
        ):
            sdists.setdefault(version_id, []).append((filename, requires_python))
        for version_id, filename in session.connection().execute(
            select(UpstreamWheel.version_id, UpstreamWheel.filename).where(
                UpstreamWheel.version_id.in_(chunk)
            )
        ):
            wheels.setdefault(version_id, []).append(filename)
    facts = {}
    for version_id, released_at, yanked, hidden, package_skip, version_skip in rows:
        own = sdists.get(version_id, [])
        facts[version_id] = (
            released_at,
            VersionFacts(
                sdists=tuple(filename for filename, _ in own),
                upstream_wheels=tuple(wheels.get(version_id, ())),
                requires_python=next((rp for _, rp in own if rp), None),
                yanked=yanked,
                quarantined=bool(hidden),
                package_skip=package_skip,
                version_skip=version_skip,
            ),
        )
    return facts


def write_decisions_many(
    session: Session, decisions: Mapping[int, Mapping[int, Decision]], released: Mapping[int, datetime]
) -> int:
    """``jobs.write_decisions`` for many versions at once (version id -> target id -> decision), by
    the same rule; returns how many jobs became queued. ``released`` gives new jobs their order."""
    existing: dict[tuple[int, int], tuple[int, JobStatus, str | None]] = {}
    for chunk in _chunks(list(decisions)):
        for job_id, version_id, target_id, status, reason in session.connection().execute(
            select(Job.id, Job.version_id, Job.target_id, Job.status, Job.reason).where(
                Job.version_id.in_(chunk)
            )
        ):
            existing[version_id, target_id] = (job_id, status, reason)
    now, inserts, updates, queued = utcnow(), [], [], 0
    for version_id, per_target in decisions.items():
        for target_id, decision in per_target.items():
            status = STATUS_BY_OUTCOME[decision.outcome]
            job = existing.get((version_id, target_id))
            if job is None:
                inserts.append(
                    {
                        "version_id": version_id,
                        "target_id": target_id,
                        "status": status,
                        "reason": decision.reason,
                        "released_at": released[version_id],
                        "updated_at": now,
                    }
                )
            elif (
                job[1] in REPLANNABLE
                or (job[1] is JobStatus.covered and decision.outcome is not Outcome.build)
            ) and (
                job[1],
                job[2],
            ) != (status, decision.reason):
                updates.append(
                    {
                        "b_id": job[0],
                        "b_status": job[1],
                        "status": status,
                        "reason": decision.reason,
                        "updated_at": now,
                    }
                )
            else:
                continue
            queued += status is JobStatus.queued and (job is None or job[1] is not JobStatus.queued)
    _insert_many(session, Job, inserts, ["version_id", "target_id"])
    # The status read above is part of the match: a claim that leased the job since wins.
    jobs = Job.__table__
    _execute_many(
        session,
        update(jobs)
        .where(jobs.c.id == bindparam("b_id"), jobs.c.status == bindparam("b_status"))
        .values(status=bindparam("status"), reason=bindparam("reason"), updated_at=bindparam("updated_at")),
        updates,
    )
    return queued


# -- helpers ----------------------------------------------------------------------------------------


def _packages(session: Session, names: Sequence[str]) -> dict[str, _PackageRow]:
    found = {}
    for chunk in _chunks(names):
        for name, *values in session.connection().execute(
            select(Package.name, Package.id, Package.last_serial, Package.removed, Package.quarantined).where(
                Package.name.in_(chunk)
            )
        ):
            found[name] = _PackageRow(*values)
    return found


def _versions(session: Session, package_ids: Sequence[int]) -> dict[tuple[int, str], _VersionRow]:
    found = {}
    for chunk in _chunks(package_ids):
        for package_id, canonical, *values in session.connection().execute(
            select(
                Version.package_id,
                Version.canonical,
                Version.id,
                Version.removed,
                Version.yanked,
                Version.yanked_reason,
                Version.quarantined,
            ).where(Version.package_id.in_(chunk))
        ):
            found[package_id, canonical] = _VersionRow(*values)
    return found


def _ids(session: Session, query: Any, values: Sequence[Any] | set[Any]) -> list[Any]:
    """``query`` (with an expanding ``ids`` parameter) run over ``values`` a chunk at a time."""
    found: list[Any] = []
    for chunk in _chunks(list(values)):
        found.extend(session.connection().scalars(query, {"ids": chunk}))
    return found


def _cancel(session: Session, version_ids: Sequence[int], reason: str) -> None:
    for chunk in _chunks(version_ids):
        cancel_open_jobs(session, chunk, reason)


def _insert(session: Session, model: Any) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model.__table__)


def _insert_many(session: Session, model: type, rows: list[dict], keys: list[str]) -> None:
    if rows:
        session.connection().execute(
            _insert(session, model).on_conflict_do_nothing(index_elements=keys), rows
        )


def _update_by_id(session: Session, model: Any, rows: list[dict]) -> None:
    if rows:
        names = [key for key in rows[0] if key != "b_id"]
        table: Table = model.__table__
        stmt = update(table).where(table.c.id == bindparam("b_id")).values({n: bindparam(n) for n in names})
        _execute_many(session, stmt, rows)


def _execute_many(session: Session, stmt: Any, rows: list[dict]) -> None:
    if rows:
        session.connection().execute(stmt, rows)


def _chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
