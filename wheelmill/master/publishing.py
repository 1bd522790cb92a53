"""Turning database state into the published site: per project on change, everything on demand.

Reads go through ``wheelmill.db.views``; writes through ``wheelmill.publish.Publisher``. Records
are read in batches of ``BATCH`` projects or builds, each in its own short read transaction, and
rendered after the transaction ends, so a full publish neither holds a snapshot open for minutes
nor pays one round trip per project.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from wheelmill.config import Settings
from wheelmill.db import pending, views
from wheelmill.db.engine import Database
from wheelmill.db.tables import utcnow
from wheelmill.master import diskguard
from wheelmill.master.context import Master
from wheelmill.master.site_totals import SiteTotals
from wheelmill.publish.model import BuilderRow, SearchEntry, SiteSummary, Stats
from wheelmill.publish.publisher import Publisher, missing_log_pages

log = logging.getLogger(__name__)
BATCH = 500
Progress = Callable[[int, int], None]


def make_publisher(master: Master) -> Publisher:
    settings = master.settings
    return Publisher(
        settings.resolved_output_dir, base_url=settings.resolved_base_url, merged_index=settings.merged_index
    )


def upstream_project_url(master: Master, name: str) -> str:
    """The project's page on the upstream simple index: what PEP 708 says this project tracks."""
    return master.settings.upstream.rstrip("/") + f"/{name}/"


def publish_projects(master: Master, publisher: Publisher, names: Iterable[str]) -> None:
    """Rewrite the index and pages of ``names``, and remove those no longer published."""
    names = sorted(set(names))
    for start in range(0, len(names), BATCH):
        batch = names[start : start + BATCH]
        with master.db.read() as session:
            packages = views.published_named(session, batch)
            records = views.many_project_records(
                session,
                packages,
                views.enabled_targets(session),
                merged=master.settings.merged_index,
                tracks=lambda name: upstream_project_url(master, name),
            )
        for index, page in records:
            publisher.write_project(index, page)
        for gone in set(batch) - {package.name for package in packages}:
            publisher.remove_project(gone)


def publish_logs(master: Master, publisher: Publisher, build_ids: Iterable[int]) -> None:
    """Rewrite the log pages of ``build_ids``."""
    ids = sorted(set(build_ids))
    for start in range(0, len(ids), BATCH):
        with master.db.read() as session:
            records = views.build_log_records(session, ids[start : start + BATCH], master.logs.read_text)
        for record in records:
            publisher.write_log(record)


@dataclass(frozen=True)
class SiteData:
    """What the site-wide pages show, read in one snapshot before any of them is written."""

    last_serial: int
    summary: SiteSummary
    builders: tuple[BuilderRow, ...]
    stats: Stats
    search: list[SearchEntry]


def read_site(master: Master, totals: SiteTotals | None = None) -> SiteData:
    """Everything the site pages need from the database, in one snapshot.

    With the ``totals`` of earlier passes, it re-reads only what changed since; without, it
    reads every project and build: seconds of queries at a big farm's scale.
    """
    totals = totals or SiteTotals()
    usage = shutil.disk_usage(master.settings.resolved_output_dir)
    with master.db.read() as session:
        search = totals.projects.read(session)
        builds = totals.builds.read(session, utcnow())
        queue = totals.queue.read(session)
        summary = views.site_summary(session, search, builds, queue, usage.used, usage.free)
        return SiteData(
            last_serial=views.last_serial(session),
            summary=dataclasses.replace(summary, notice=diskguard.notice(master)),
            builders=views.builder_rows(session),
            stats=views.stats(session),
            search=search,
        )


def write_site(master: Master, publisher: Publisher, site: SiteData, before: SiteData | None = None) -> None:
    """The pages that summarise the whole farm: root index, home, builders, statistics, search.

    The root and search indexes list every project (megabytes, half a second to render at
    100,000 projects): they are rewritten only when they differ from ``before``, the site as the
    last pass wrote it.
    """
    names = [entry.name for entry in site.search]  # the root index lists the published projects
    if before is None or (names, site.last_serial) != ([e.name for e in before.search], before.last_serial):
        publisher.write_root_index(names, site.last_serial)
    publisher.write_home(site.summary)
    publisher.write_builders(site.builders)
    publisher.write_stats(site.stats)
    if before is None or site.search != before.search:
        publisher.write_search_index(site.search)
    # The home page links its recent builds; a running or lost build was never marked for a page.
    recent = site.summary.recent_builds
    publish_logs(master, publisher, [b.build_id for b in recent if not publisher.has_log(b.build_id)])


def publish_site(master: Master, publisher: Publisher, schedule: SiteSchedule | None = None) -> None:
    """Read and write the site-wide pages; with the publisher loop's ``schedule``, reading and
    writing only what changed since its last pass."""
    schedule = schedule or SiteSchedule()
    if schedule.totals.due_for_renewal():
        schedule.totals = SiteTotals()
    site = read_site(master, schedule.totals)
    write_site(master, publisher, site, schedule.site)
    schedule.site = site


@dataclass
class SiteSchedule:
    """When the site-wide pages were last written, how long that took, and their running totals.

    They cover every package. The totals make a pass read only what changed, but rewriting the
    root and search indexes, when they change, still grows with the farm (0.5 s at 100,000
    projects). A steady stream of builds rewrites them at most every ``interval`` seconds, and at
    most ``share`` of the time, so that the passes never crowd out the project pages and the
    builders' calls: the home page lags more on a bigger farm instead. A disk guard that trips
    or clears makes them due at once.
    """

    interval: float = 15.0
    share: float = 0.1
    written_at: float = float("-inf")
    took: float = 0.0  # seconds the last rewrite took
    guard: diskguard.GuardWatch = field(default_factory=diskguard.GuardWatch)  # the notice's state
    totals: SiteTotals = field(default_factory=SiteTotals)
    site: SiteData | None = None  # as the last pass wrote it

    def due(self, now: float) -> bool:
        return now - self.written_at >= max(self.interval, self.took / self.share)

    def written(self, started: float, ended: float) -> None:
        self.written_at, self.took = started, ended - started


def publish_dirty(master: Master, publisher: Publisher, schedule: SiteSchedule | None = None) -> bool:
    """Publish every page marked out of date, all in one pass; returns whether there was any.

    Marks made while a pass runs wait for the next one, so a burst of completions costs one
    rewrite of the site-wide pages, not one per build. Marks are cleared only once their pages
    are written: a crash in between means a rewrite, never a stale page.
    """
    schedule = schedule or SiteSchedule()
    if schedule.guard.check(master):  # the disk guard's notice is on the home page: show it now
        schedule.written_at = float("-inf")
    taken = master.dirty.take()
    started = time.monotonic()
    if taken.projects:
        publish_projects(master, publisher, taken.projects)
        schedule.totals.projects.mark(taken.projects)
    if taken.logs:
        publish_logs(master, publisher, taken.logs)
    if taken.site and schedule.due(started):
        site_started = time.monotonic()
        publish_site(master, publisher, schedule)
        schedule.written(site_started, time.monotonic())
    elif taken.site:  # not yet due: a site mark stays for a later pass
        if not any(kind == "site" for kind, _, _ in taken.marks):
            with master.db.write() as session:  # implied by this pass's marks, it must outlive them
                pending.mark(session)
        taken = dataclasses.replace(taken, marks=tuple(m for m in taken.marks if m[0] != "site"))
    master.dirty.done(taken)
    if taken.projects or taken.logs:
        log.info(
            "published %d projects and %d build logs in %.2f s",
            len(taken.projects),
            len(taken.logs),
            time.monotonic() - started,
        )
    return bool(taken.marks)


def publish_all(
    master: Master,
    publisher: Publisher,
    progress: Progress | None = None,
    workers: int | None = None,
    *,
    rewrite_logs: bool = False,
) -> int:
    """Rewrite every project's pages and the site pages; write the build log pages that are missing.

    A log page is written when its build finishes (its pending mark) and never changes after, so
    a full publish writes only those missing (a new output directory, a lost page) unless
    ``rewrite_logs`` asks for all of them, as after an upgrade that changed their template. Logs
    come first so that the build matrices of the project pages never link to a missing page.

    ``progress`` gets (pages done, pages to do), logs and projects together. Returns the number
    of projects. Pages whose bytes do not change are left alone.
    """
    with master.db.read() as session:
        names = list(views.package_names(session))
    build_ids = _log_pages_to_write(master, publisher, rewrite_logs)
    with ThreadPoolExecutor(1, thread_name_prefix="wheelmill-site") as reader:
        # The site pages' queries run while the workers render; the pages are written after
        # them, so the root index never lists a project whose pages are not there yet.
        site = reader.submit(read_site, master)
        # One phase at a time, so no project page is written before the log pages it links to.
        _in_workers(master, [(_worker_logs, build_ids), (_worker_projects, names)], progress, workers)
        write_site(master, publisher, site.result())
    return len(names)


def publish_missing_logs(
    master: Master, publisher: Publisher, progress: Progress | None = None, workers: int | None = None
) -> int:
    """Write the log pages of finished builds that have none; returns how many were written."""
    build_ids = _log_pages_to_write(master, publisher, rewrite=False)
    _in_workers(master, [(_worker_logs, build_ids)], progress, workers)
    return len(build_ids)


def _log_pages_to_write(master: Master, publisher: Publisher, rewrite: bool) -> list[int]:
    with master.db.read() as session:
        build_ids = views.finished_builds(session)
    return build_ids if rewrite else missing_log_pages(publisher.output_dir, build_ids)


def _in_workers(
    master: Master,
    phases: list[tuple[Callable[[list[Any]], int], list[Any]]],
    progress: Progress | None,
    workers: int | None,
) -> None:
    """Run each phase's batches in ``workers`` processes (one per CPU by default), phase by phase.

    Each process has its own database connection: rendering is CPU-bound Python, and while one
    process waits on the file system another renders.
    """
    total, done = sum(len(items) for _, items in phases), 0
    context = multiprocessing.get_context("spawn")  # no forked copies of this process's threads
    with ProcessPoolExecutor(
        workers or os.cpu_count(), mp_context=context, initializer=_start_worker, initargs=(master.settings,)
    ) as pool:
        for work, items in phases:
            batches = [pool.submit(work, items[i : i + BATCH]) for i in range(0, len(items), BATCH)]
            for batch in as_completed(batches):
                done += batch.result()
                if progress:
                    progress(done, total)


_worker: tuple[Master, Publisher] | None = None  # a publish_all worker process's own master


def _start_worker(settings: Settings) -> None:
    global _worker
    master = Master.create(settings, Database(settings.resolved_database_url), {})
    _worker = master, make_publisher(master)


def _worker_projects(names: list[str]) -> int:
    assert _worker is not None
    publish_projects(*_worker, names)
    return len(names)


def _worker_logs(build_ids: list[int]) -> int:
    assert _worker is not None
    publish_logs(*_worker, build_ids)
    return len(build_ids)
