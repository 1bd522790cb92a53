"""Writing the planner's decisions as jobs, for the versions the follower just learned about.

Work is found from what changed (new version ids), never by scanning the database.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from wheelmill.db import jobs as queue_sql
from wheelmill.planning import decide
from wheelmill.targets import Target


def plan_versions(
    session: Session, version_ids: Iterable[int], targets: dict[str, int], *, skip_yanked: bool
) -> int:
    """Decide build/skip/covered for each version x target; returns how many jobs are queued."""
    parsed = {Target.parse(tag): tid for tag, tid in targets.items()}
    queued = 0
    for version_id in version_ids:
        version, facts = queue_sql.version_facts(session, version_id)
        decisions = {tid: decide(facts, target, skip_yanked=skip_yanked) for target, tid in parsed.items()}
        queued += queue_sql.write_decisions(session, version, decisions)
    return queued
