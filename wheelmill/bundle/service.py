"""Offline bundles on the master: resolve, queue what the farm lacks at high priority, then assemble.

The CLI, the API and the page all come here. A bundle's status is worked out when asked: while
its jobs are open that is one query. When the last one ends, the requirements are resolved again,
because a wheel built for the target may declare other dependencies than its sdist did; rounds
repeat until nothing is missing (then the bundle is written) or something failed (then every
missing wheel is listed with its reason). A bundle is never silently incomplete.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from wheelmill.bundle import resolve as resolver
from wheelmill.bundle.errors import BundleError, UnknownTarget
from wheelmill.bundle.installed import is_present, parse_installed
from wheelmill.bundle.model import Bundle, BundleStore, Item, ItemStatus, State
from wheelmill.bundle.resolve import Pin, WheelLink
from wheelmill.bundle.writer import BundledWheel, Contents, fetch, make_archive, write_bundle
from wheelmill.db import bundles as bundle_sql
from wheelmill.db import catalog
from wheelmill.db.tables import JobStatus
from wheelmill.errors import UpstreamError
from wheelmill.master.context import Master
from wheelmill.planner import plan_versions
from wheelmill.targets import Target
from wheelmill.upstream.client import UpstreamClient

log = logging.getLogger(__name__)

BUNDLE_PRIORITY = 1000  # above the planner's 0: a person is waiting for these builds
_ITEM_STATUS = {
    JobStatus.queued: ItemStatus.queued,
    JobStatus.waiting: ItemStatus.queued,
    JobStatus.leased: ItemStatus.building,
    JobStatus.built: ItemStatus.built,
}


class BundleService:
    def __init__(self, master: Master) -> None:
        self.master = master
        self.store = BundleStore(master.settings.data_dir / "bundles")
        self.store.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def create(self, requirements: str, target: str, installed: str = "") -> Bundle:
        """Check the input, resolve, and queue or assemble; bad input raises, naming the culprit."""
        tag = self._target(target)
        parsed = resolver.parse_requirements(requirements)
        have = parse_installed(installed) if installed.strip() else {}
        bundle = Bundle(
            id=uuid.uuid4().hex,
            target=tag,
            requirements=[str(requirement) for requirement in parsed],
            installed={name: str(version) for name, version in have.items()},
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._lock(bundle.id):
            self._advance(bundle, self._resolve(bundle))
        log.info("bundle %s for %s: %s", bundle.id, tag, bundle.state)
        return bundle

    def get(self, bundle_id: str) -> Bundle:
        """The bundle, brought up to date with the farm's jobs."""
        bundle = self.store.load(bundle_id)
        if bundle.state is State.building:
            with self._lock(bundle_id):
                bundle = self.store.load(bundle_id)  # another request may have advanced it
                if bundle.state is State.building:
                    self._refresh(bundle)
        return bundle

    def archive(self, bundle: Bundle) -> Path:
        return self.store.directory(bundle.id) / bundle.archive_name

    # -- rounds ----------------------------------------------------------------------------------

    def _refresh(self, bundle: Bundle) -> None:
        waiting = bundle.open_items()
        with self.master.db.read() as session:
            states = bundle_sql.job_states(session, [item.job_id for item in waiting if item.job_id])
        for item in waiting:
            if item.job_id in states:
                bundle.replace_item(_item(item.name, item.version, states[item.job_id]))
        if bundle.open_items() or any(item.status is ItemStatus.failed for item in bundle.items):
            self._settle(bundle)
            return
        try:
            pins = self._resolve(bundle)
        except BundleError as exc:  # upstream changed since the bundle was asked for
            bundle.state, bundle.error = State.failed, str(exc)
            self.store.save(bundle)
            return
        self._advance(bundle, pins)

    def _advance(self, bundle: Bundle, pins: list[Pin]) -> None:
        """One round: find a wheel for every pin the target lacks; queue jobs for the rest."""
        have = {name: Version(version) for name, version in bundle.installed.items()}
        target = Target.parse(bundle.target)
        chosen: list[tuple[Pin, WheelLink]] = []
        missing = False
        for pin in pins:
            if is_present(pin.name, pin.version, have):
                continue
            found = best_wheel(target, pin.wheels) or self._locate(bundle, pin, target)
            if isinstance(found, Item):
                bundle.replace_item(found)
                missing = True
            else:
                chosen.append((pin, found))
        if missing:
            self._settle(bundle)
            return
        left_out = [(pin.name, pin.version) for pin in pins if is_present(pin.name, pin.version, have)]
        try:
            self._assemble(bundle, chosen, left_out)
        except BundleError as exc:
            bundle.state, bundle.error = State.failed, str(exc)
        self.store.save(bundle)

    def _settle(self, bundle: Bundle) -> None:
        bundle.state = State.building if bundle.open_items() else State.failed
        self.store.save(bundle)

    def _locate(self, bundle: Bundle, pin: Pin, target: Target) -> WheelLink | Item:
        """A wheel the farm has but the index did not list yet, or the job that will build one."""
        with self.master.db.read() as session:
            version_id = bundle_sql.find_version(session, pin.name, pin.version)
        if version_id is None:
            try:
                self._learn(pin.name)
            except UpstreamError as exc:
                return Item(pin.name, pin.version, ItemStatus.failed, reason=f"upstream: {exc}")
            with self.master.db.read() as session:
                version_id = bundle_sql.find_version(session, pin.name, pin.version)
            if version_id is None:
                return Item(pin.name, pin.version, ItemStatus.failed, reason="upstream does not list it")
        target_id = self.master.target_ids[bundle.target]
        with self.master.db.write() as session:
            link = best_wheel(target, self._links(pin, bundle_sql.known_wheels(session, version_id)))
            if link is not None:
                return link
            job = bundle_sql.job_of(session, version_id, target_id)
            if job is None:
                plan_versions(session, [version_id], {bundle.target: target_id}, skip_yanked=False)
                job = bundle_sql.job_of(session, version_id, target_id)
            assert job is not None, "planning writes a job for every target it is given"
            bundle_sql.prioritise(session, job.job_id, BUNDLE_PRIORITY)
        log.info(
            "bundle %s needs %s %s: job %s is %s", bundle.id, pin.name, pin.version, job.job_id, job.status
        )
        item = _item(pin.name, pin.version, job)
        if item.status is ItemStatus.built:  # the job says built, yet no wheel serves the target
            item.status = ItemStatus.failed
            item.reason = f"built, but the farm has no wheel of it that {bundle.target} can install"
        return item

    def _learn(self, name: str) -> None:
        """Record a package the farm does not follow, so that a job can be written for it."""
        client = UpstreamClient(self.master.settings.upstream, contact=self.master.settings.contact)
        try:
            fetched = client.project(name)
        finally:
            client.close()
        if fetched.snapshot is not None:
            with self.master.db.write() as session:
                catalog.apply_snapshot(session, fetched.snapshot)

    def _links(self, pin: Pin, wheels: Iterable[bundle_sql.KnownWheel]) -> list[WheelLink]:
        base = self.master.settings.resolved_base_url
        return [
            WheelLink(w.filename, w.upstream_url or f"{base}files/{pin.name}/{w.filename}", w.sha256, w.size)
            for w in wheels
        ]

    def _assemble(
        self, bundle: Bundle, chosen: list[tuple[Pin, WheelLink]], left_out: list[tuple[str, str]]
    ) -> None:
        """Download the wheels, write the text files, and keep only the .tar.gz of it all."""
        directory = self.store.directory(bundle.id)
        directory.mkdir(parents=True, exist_ok=True)
        wheels = []
        with tempfile.TemporaryDirectory(prefix="assembling-", dir=directory) as temp:
            work = Path(temp)
            for pin, link in chosen:
                path = fetch(link, work)
                wheels.append(
                    BundledWheel(pin.name, pin.version, path.name, link.sha256, path.stat().st_size)
                )
            contents = Contents(bundle.target, tuple(bundle.requirements), tuple(wheels), tuple(left_out))
            write_bundle(work, contents)
            make_archive(work, directory / bundle.archive_name)
        bundle.state, bundle.wheels, bundle.left_out = State.ready, wheels, left_out
        log.info("bundle %s ready: %d wheels, %d bytes", bundle.id, len(wheels), bundle.total_size)

    # -- helpers ---------------------------------------------------------------------------------

    def _resolve(self, bundle: Bundle) -> list[Pin]:
        settings = self.master.settings
        with tempfile.TemporaryDirectory(prefix="resolving-", dir=self.store.root) as workdir:
            return resolver.resolve(
                [Requirement(line) for line in bundle.requirements],
                Target.parse(bundle.target),
                {name: Version(version) for name, version in bundle.installed.items()},
                resolver.Indexes(farm=settings.resolved_base_url + "simple/", upstream=settings.upstream),
                Path(workdir),
                settings.sandbox,
            )

    def _target(self, text: str) -> str:
        tag = str(Target.parse(text))
        if tag not in self.master.target_ids:
            builds = ", ".join(sorted(self.master.target_ids)) or "nothing"
            raise UnknownTarget(f"the farm has no builder for target {tag!r}; it builds {builds}")
        return tag

    def _lock(self, bundle_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(bundle_id, threading.Lock())


def best_wheel(target: Target, links: Iterable[WheelLink]) -> WheelLink | None:
    """The wheel ``target`` should get: one it can install, a platform wheel before a pure one."""
    installable = []
    for link in links:
        try:
            tags = parse_wheel_filename(link.filename)[3]
        except InvalidWheelFilename:
            continue
        if target.can_install(tags):
            pure = all(tag.platform == "any" for tag in tags)
            installable.append((pure, link.filename, link))
    return min(installable, key=lambda entry: entry[:2])[2] if installable else None


def _item(name: str, version: str, job: bundle_sql.JobState) -> Item:
    status = _ITEM_STATUS.get(job.status, ItemStatus.failed)
    reason = None
    if status is ItemStatus.failed:
        reason = job.reason or job.failure_reason or "no reason recorded"
        if job.status is not JobStatus.failed:  # skipped, covered or cancelled: say which
            reason = f"{job.status}: {reason}"
        if job.failure_detail:
            reason += f" ({job.failure_detail})"
    elif job.status is JobStatus.waiting:  # a transient failure's retry, or upstream details still owed
        reason = f"retrying after {job.failure_reason}" if job.failure_reason else job.reason
    return Item(name, version, status, job_id=job.job_id, reason=reason, build_id=job.build_id)
