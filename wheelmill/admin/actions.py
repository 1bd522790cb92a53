"""Steering what the farm builds and publishes: add, skip, unskip, rebuild, yank, unyank, remove.

The CLI and the admin API both call these, so an action behaves the same from either. Each one is
one transaction through ``wheelmill.db.admin``, marks the project's pages in the same transaction
(the publisher cannot miss the change), and is idempotent: running it again changes nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from wheelmill.db import admin as admin_sql
from wheelmill.db import pending
from wheelmill.errors import InvalidName, NotFound
from wheelmill.master.context import Master
from wheelmill.planner import plan_versions
from wheelmill.upstream import watch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What an action did, as sentences for the operator; ``changed`` counts the rows it changed."""

    messages: tuple[str, ...]
    changed: int = 0


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME==VERSION``, as the commands take them."""
    name, _, version = spec.partition("==")
    if not name.strip() or (version == "" and "==" in spec):
        raise InvalidName(f"expected NAME or NAME==VERSION, got {spec!r}")
    return name.strip(), version.strip() or None


def add(master: Master, spec: str) -> Result:
    """Follow a package; with ``==VERSION``, build that version before anything else."""
    name, version = parse_spec(spec)
    added = watch.add_watches(master.db, [name])
    messages = [f"watching {canonicalize_name(name)}" + ("" if added else " (already)")]
    if version is None:
        return Result(tuple(messages), len(added))
    with master.db.write() as session:
        try:
            selected = admin_sql.select_versions(session, name, version)
        except NotFound:
            messages.append(f"{version} is not known yet; run this again after the follower's next poll")
            return Result(tuple(messages), len(added))
        raised = admin_sql.raise_priority(session, selected.version_ids)
    messages.append(f"{raised} open jobs of {selected.package.name} {version} moved to the front")
    return Result(tuple(messages), len(added) + raised)


def skip(master: Master, spec: str, reason: str, target: str | None = None) -> Result:
    """Stop building a package or version (on one target, or all); built wheels stay published."""
    if not reason.strip():
        raise InvalidName("a skip needs a reason: it is shown on the project page")
    name, version = parse_spec(spec)
    with master.db.write() as session:
        selected = admin_sql.select_versions(session, name, version)
        if target is None:
            admin_sql.set_skip_reason(session, selected, reason)
            targets = master.target_ids
        else:
            targets = {target: admin_sql.target_id(session, target)}
            admin_sql.remember_target_skip(session, selected, targets[target], reason)
        plan_versions(session, selected.version_ids, targets, skip_yanked=_skip_yanked(master))
        changed = len(selected.versions)
        pending.mark(session, projects=[selected.package.name])
    master.dirty.wakeup.set()
    log.info("skipped %s%s: %s", spec, f" on {target}" if target else "", reason)
    where = f" on {target}" if target else ""
    return Result((f"skipped {_what(selected)}{where}: {reason}",), changed)


def unskip(master: Master, spec: str, target: str | None = None) -> Result:
    """Undo ``skip`` (without a target: every skip of the selection, on any target); the planner decides
    again, so the jobs are queued unless another rule skips them."""
    name, version = parse_spec(spec)
    with master.db.write() as session:
        selected = admin_sql.select_versions(session, name, version)
        if target is None:
            admin_sql.set_skip_reason(session, selected, None)
            targets = master.target_ids
        else:
            targets = {target: admin_sql.target_id(session, target)}
        admin_sql.forget_target_skips(session, selected, targets[target] if target else None)
        queued = plan_versions(session, selected.version_ids, targets, skip_yanked=_skip_yanked(master))
        pending.mark(session, projects=[selected.package.name])
    master.dirty.wakeup.set()
    return Result((f"unskipped {_what(selected)}: {queued} jobs queued",), queued)


def rebuild(master: Master, spec: str, target: str | None = None) -> Result:
    """Queue a version's jobs again at the front of the queue, even if they were built or failed."""
    name, version = parse_spec(spec)
    with master.db.write() as session:
        selected = admin_sql.select_versions(session, name, version)
        tid = admin_sql.target_id(session, target) if target else None
        queued = admin_sql.requeue(session, selected.version_ids, tid)
        pending.mark(session, projects=[selected.package.name])
    master.dirty.wakeup.set()
    log.info("rebuild of %s requested: %d jobs queued", spec, queued)
    return Result((f"{queued} jobs of {_what(selected)} queued for a rebuild",), queued)


def yank(master: Master, spec: str, reason: str = "") -> Result:
    """Mark a version yanked (PEP 592): pip skips it unless pinned exactly."""
    return _set_yanked(master, spec, reason)


def unyank(master: Master, spec: str) -> Result:
    return _set_yanked(master, spec, None)


def _set_yanked(master: Master, spec: str, reason: str | None) -> Result:
    name, version = parse_spec(spec)
    if version is None:
        raise InvalidName(f"yank and unyank take one version: NAME==VERSION, got {spec!r}")
    with master.db.write() as session:
        selected = admin_sql.select_versions(session, name, version)
        changed = admin_sql.set_yanked(session, selected.versions, reason)
        pending.mark(session, projects=[selected.package.name])
    master.dirty.wakeup.set()
    verb = "unyanked" if reason is None else "yanked"
    return Result((f"{verb} {_what(selected)}" + ("" if changed else " (already)"),), changed)


def remove(master: Master, spec: str, reason: str) -> Result:
    """Take a package or version off the farm: jobs cancelled, wheels deleted, pages rewritten.

    The database forgets the files first, then they are deleted: a crash in between leaves
    unlisted files that ``audit --fix`` removes, never a listed file that does not exist.
    """
    if not reason.strip():
        raise InvalidName("a removal needs a reason: it is kept as the skip reason")
    name, version = parse_spec(spec)
    with master.db.write() as session:
        selected = admin_sql.select_versions(session, name, version)
        filenames = admin_sql.remove(session, selected, reason)
        pending.mark(session, projects=[selected.package.name])
    for filename in filenames:
        master.files.remove(selected.package.name, filename)
    if version is None:
        watch.remove_watches(master.db, [selected.package.name])
    master.dirty.wakeup.set()
    log.info("removed %s (%d files): %s", spec, len(filenames), reason)
    return Result((f"removed {_what(selected)}: {len(filenames)} files deleted",), len(filenames))


def _what(selected: admin_sql.Selected) -> str:
    if selected.named_version:
        return f"{selected.package.name} {selected.versions[0].version}"
    return selected.package.name


def _skip_yanked(master: Master) -> bool:
    return master.settings.skip_yanked
