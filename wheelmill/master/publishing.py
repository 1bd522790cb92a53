"""Turning database state into the published site: per project on change, everything on demand.

Reads go through ``wheelmill.db.views``; writes through ``wheelmill.publish.Publisher``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable

from wheelmill.db import views
from wheelmill.master.context import Master
from wheelmill.publish.publisher import Publisher

log = logging.getLogger(__name__)


def make_publisher(master: Master) -> Publisher:
    return Publisher(master.settings.resolved_output_dir, base_url=master.settings.resolved_base_url)


def upstream_project_url(master: Master, name: str) -> str:
    return master.settings.upstream.rstrip("/") + f"/{name}/"


def publish_projects(master: Master, publisher: Publisher, names: Iterable[str]) -> None:
    """Rewrite the index and pages of ``names`` (or remove them if they are gone)."""
    for name in names:
        with master.db.read() as session:
            package = views.published_package(session, name)
            if package is None:
                records = None
            else:
                records = views.project_records(
                    session,
                    package,
                    merged=master.settings.merged_index,
                    upstream_project_url=upstream_project_url(master, name),
                )
        if records is None:
            publisher.remove_project(name)
        else:
            publisher.write_project(*records)


def publish_logs(master: Master, publisher: Publisher, build_ids: Iterable[int]) -> None:
    for build_id in build_ids:
        text = master.logs.read_text(build_id)
        with master.db.read() as session:
            record = views.build_log_record(session, build_id, text)
        if record is not None:
            publisher.write_log(record)


def publish_site(master: Master, publisher: Publisher) -> None:
    """The pages that summarise the whole farm: root index, home, builders, search."""
    output = master.settings.resolved_output_dir
    usage = shutil.disk_usage(output)
    with master.db.read() as session:
        publisher.write_root_index(views.package_names(session), views.last_serial(session))
        publisher.write_home(views.site_summary(session, usage.used, usage.free))
        publisher.write_builders(views.builder_rows(session))
        publisher.write_search_index(views.search_entries(session))


def publish_dirty(master: Master, publisher: Publisher) -> bool:
    """Publish what changed since the last call; returns whether there was anything."""
    projects, logs, site = master.dirty.take()
    if projects:
        publish_projects(master, publisher, sorted(projects))
    if logs:
        publish_logs(master, publisher, sorted(logs))
    if site or projects:
        publish_site(master, publisher)
    return bool(projects or logs or site)


def publish_all(
    master: Master, publisher: Publisher, progress: Callable[[int, int], None] | None = None
) -> int:
    """Rewrite every project, log and site page; returns the number of projects."""
    with master.db.read() as session:
        names = list(views.package_names(session))
    for done, name in enumerate(names, 1):
        publish_projects(master, publisher, [name])
        if progress:
            progress(done, len(names))
    publish_site(master, publisher)
    return len(names)
