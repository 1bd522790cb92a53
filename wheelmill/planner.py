"""Writing the planner's decisions as jobs, for the versions the follower just learned about.

Work is found from what changed (new version ids), never by scanning the database; the one walk
over existing versions is for a target added to the configuration, and it goes in batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from wheelmill.db import plans
from wheelmill.db.engine import Database
from wheelmill.db.tables import FeedFile, Source, TargetRow, UpstreamWheel, Version
from wheelmill.errors import NotFound
from wheelmill.planning import decide
from wheelmill.targets import Target

PLAN_CHUNK = 2_000  # versions decided per round of queries


def plan_versions(
    session: Session,
    version_ids: Iterable[int],
    targets: dict[str, int],
    *,
    skip_yanked: bool,
    created: AbstractSet[int] = frozenset(),
) -> int:
    """Decide build/skip/covered/wait for each version x target, a few queries per chunk of versions;
    returns how many jobs became queued. Versions ``created`` in this transaction (by the follower)
    have neither detailed files nor jobs, which spares looking for them."""
    session.flush()  # the facts are read with Core statements: the caller's ORM changes must be in
    parsed = [(Target.parse(tag), tid) for tag, tid in targets.items()]
    ordered = sorted(set(version_ids))
    queued = 0
    for start in range(0, len(ordered), PLAN_CHUNK):
        facts = plans.facts_of_versions(session, ordered[start : start + PLAN_CHUNK], created)
        decisions = {
            version_id: {tid: decide(each, target, skip_yanked=skip_yanked) for target, tid in parsed}
            for version_id, (_, each) in facts.items()
        }
        released = {version_id: released_at for version_id, (released_at, _) in facts.items()}
        queued += plans.write_decisions_many(session, decisions, released, created)
    return queued


def plan_target_backfill(
    db: Database, target_id: int, batch_size: int = 5_000, *, skip_yanked: bool = False
) -> int:
    """Plan a newly configured target over every existing version with upstream files, one
    transaction per ``batch_size`` versions so builders are not held up; returns jobs queued."""
    with db.read() as session:
        tag = session.scalar(select(TargetRow.tag).where(TargetRow.id == target_id))
    if tag is None:
        raise NotFound(f"no target with id {target_id!r}")
    has_files = or_(
        exists().where(Source.version_id == Version.id),
        exists().where(UpstreamWheel.version_id == Version.id),
        exists().where(FeedFile.version_id == Version.id),
    )
    queued, after = 0, 0
    while True:
        with db.write() as session:
            ids = session.scalars(
                select(Version.id)
                .where(Version.id > after, Version.removed.is_(False), has_files)
                .order_by(Version.id)
                .limit(batch_size)
            ).all()
            if not ids:
                return queued
            queued += plan_versions(session, ids, {tag: target_id}, skip_yanked=skip_yanked)
        after = ids[-1]
