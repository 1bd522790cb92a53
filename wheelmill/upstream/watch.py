"""Watch-list mode: follow a chosen set of projects through their PEP 691 pages.

Each poll of a project sends its last ETag, so an unchanged project costs one 304. A page whose
``_last-serial`` is older than one already recorded is a stale cached copy and is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name
from sqlalchemy import select
from sqlalchemy.orm import Session

from wheelmill.db import catalog
from wheelmill.db.engine import Database
from wheelmill.db.jobs import cancel_open_jobs
from wheelmill.db.tables import Version, Watch, utcnow
from wheelmill.errors import UpstreamError
from wheelmill.planner import plan_versions
from wheelmill.upstream.client import UpstreamClient

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    changed: list[str] = field(default_factory=list)  # canonical names whose pages must be rewritten
    jobs_queued: int = 0
    errors: list[str] = field(default_factory=list)


def add_watches(db: Database, names: Sequence[str]) -> list[str]:
    """Add names to the watch list (canonicalised); returns the names added."""
    added = []
    with db.write() as session:
        for name in names:
            canonical = catalog.canonical_name(name)
            if session.get(Watch, canonical) is None:
                session.add(Watch(name=canonical))
                added.append(canonical)
    return added


def remove_watches(db: Database, names: Sequence[str]) -> list[str]:
    removed = []
    with db.write() as session:
        for name in names:
            watch = session.get(Watch, canonicalize_name(name))
            if watch is not None:
                session.delete(watch)
                removed.append(watch.name)
    return removed


def list_watches(db: Database) -> list[Watch]:
    with db.read() as session:
        rows = session.scalars(select(Watch).order_by(Watch.name)).all()
        session.expunge_all()
        return list(rows)


def poll(db: Database, client: UpstreamClient, targets: dict[str, int], *, skip_yanked: bool) -> PollResult:
    """Poll every watched project once, record what changed and plan jobs for new versions."""
    result = PollResult()
    for watch in list_watches(db):
        try:
            _poll_one(db, client, watch, targets, skip_yanked, result)
        except UpstreamError as exc:
            log.error("following %s failed: %s", watch.name, exc)
            result.errors.append(f"{watch.name}: {exc}")
    return result


def _poll_one(
    db: Database,
    client: UpstreamClient,
    watch: Watch,
    targets: dict[str, int],
    skip_yanked: bool,
    result: PollResult,
) -> None:
    fetched = client.project(watch.name, watch.etag)
    if fetched.status == 304:
        return
    if fetched.snapshot is None:  # 404: gone upstream (removed or quarantined)
        with db.write() as session:
            package = catalog.mark_package_removed(session, watch.name)
            if package is not None:
                ids = session.scalars(select(Version.id).where(Version.package_id == package.id)).all()
                cancel_open_jobs(session, ids, "removed upstream")
                result.changed.append(package.name)
            _save_watch(session, watch.name, None, watch.last_serial)
        return
    snapshot = fetched.snapshot
    if snapshot.last_serial < watch.last_serial:
        log.warning(
            "%s: upstream sent a stale page (serial %s < %s); will retry",
            watch.name,
            snapshot.last_serial,
            watch.last_serial,
        )
        return
    info = client.project_info(watch.name) or {}
    snapshot = type(snapshot)(
        name=snapshot.name,
        versions=snapshot.versions,
        files=snapshot.files,
        last_serial=snapshot.last_serial,
        summary=info.get("summary"),
        description=info.get("description"),
    )
    with db.write() as session:
        changes = catalog.apply_snapshot(session, snapshot)
        removed = session.scalars(
            select(Version.id).where(Version.package_id == changes.package_id, Version.removed)
        ).all()
        cancel_open_jobs(session, removed, "removed upstream")
        # Every version is re-planned: an sdist may have arrived for a binary-only one.
        all_versions = session.scalars(
            select(Version.id).where(Version.package_id == changes.package_id, Version.removed.is_(False))
        ).all()
        result.jobs_queued += plan_versions(session, all_versions, targets, skip_yanked=skip_yanked)
        _save_watch(session, watch.name, fetched.etag, snapshot.last_serial)
    if changes.changed or changes.new_version_ids:
        result.changed.append(changes.name)
    log.info(
        "%s: serial %s, %d new versions", changes.name, snapshot.last_serial, len(changes.new_version_ids)
    )


def _save_watch(session: Session, name: str, etag: str | None, serial: int) -> None:
    watch = session.get(Watch, name)
    if watch is not None:
        watch.etag, watch.last_serial, watch.checked_at = etag, serial, utcnow()
