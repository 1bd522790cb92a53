"""Read models for the publisher: database rows turned into ``wheelmill.publish.model`` records.

A project's records come from a handful of indexed queries whichever number of projects they
cover, so a finished build costs one project's rewrite and a full publish reads hundreds of
projects per round trip. Rows are read as column tuples, not ORM objects: a full publish reads
millions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from packaging.version import InvalidVersion
from packaging.version import Version as PEP440Version
from sqlalchemy import (
    ColumnElement,
    Date,
    Executable,
    Row,
    bindparam,
    case,
    func,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from wheelmill.db import downloads
from wheelmill.db.tables import (
    Build,
    Builder,
    BuildStatus,
    File,
    Job,
    JobStatus,
    Package,
    Source,
    TargetRow,
    UpstreamWheel,
    Version,
    utcnow,
)
from wheelmill.publish.model import (
    BuildCell,
    BuilderRow,
    BuildLogPage,
    FarmFile,
    IndexFile,
    ProjectIndex,
    ProjectPage,
    RecentBuild,
    SearchEntry,
    SiteSummary,
    Stats,
)

_CELL_STATUS = {
    JobStatus.queued: "queued",
    JobStatus.waiting: "queued",
    JobStatus.leased: "building",
    JobStatus.built: "built",
    JobStatus.failed: "failed",
    JobStatus.covered: "covered",
    JobStatus.skipped: "skipped",
    JobStatus.cancelled: "skipped",
}
# A failure of the smoke test means the wheel built but did not import: it was kept out as broken.
_BROKEN_REASON = "smoke_test_failed"
STATS_DAYS = 90  # the time series cover this many days: a farm keeps millions of builds
STATS_BUILDERS = 7  # builders drawn as their own line; the others are summed into one more


class PackageFacts(NamedTuple):
    """The package columns its pages show."""

    id: int
    name: str
    display_name: str
    summary: str | None
    description: str | None
    last_serial: int


_PACKAGE_COLUMNS = (
    Package.id,
    Package.name,
    Package.display_name,
    Package.summary,
    Package.description,
    Package.last_serial,
)
_PUBLISHED = (Package.removed.is_(False), Package.quarantined.is_(False))

# The project queries are built once: building a statement costs more than running it when a
# finished build rewrites one project. Names and ids go in as expanding IN parameters.
_PUBLISHED_NAMED = select(*_PACKAGE_COLUMNS).where(
    *_PUBLISHED, Package.name.in_(bindparam("names", expanding=True))
)
_TARGETS = select(TargetRow.tag).where(TargetRow.enabled).order_by(TargetRow.tag)
_IDS = bindparam("ids", expanding=True)
_VERSIONS = select(
    Version.id, Version.package_id, Version.version, Version.canonical, Version.yanked, Version.yanked_reason
).where(Version.package_id.in_(_IDS), Version.removed.is_(False), Version.quarantined.is_(False))
_ALIASED = aliased(File)  # the file an alias shares its bytes with
_FARM_FILES = (
    select(
        Version.package_id,
        File.version_id,
        File.build_id,
        File.filename,
        File.target,
        File.sha256,
        File.size,
        File.requires_python,
        File.metadata_sha256,
        _ALIASED.filename,
        File.apt_packages,
        File.created_at,
    )
    .join(Version, Version.id == File.version_id)
    .outerjoin(_ALIASED, _ALIASED.id == File.alias_of)
    .where(Version.package_id.in_(_IDS))
)
_UPSTREAM_FILES = union_all(
    *(
        select(
            Version.package_id,
            table.version_id,
            table.filename,
            table.url,
            table.sha256,
            table.size,
            table.upload_time,
            table.requires_python,
            table.yanked,
            UpstreamWheel.core_metadata_sha256 if table is UpstreamWheel else null(),
        )
        .join(Version, Version.id == table.version_id)
        .where(Version.package_id.in_(_IDS))
        for table in (Source, UpstreamWheel)
    )
)
_LATEST_FINISHED_BUILD = (
    select(func.max(Build.id))
    .where(Build.job_id == Job.id, Build.finished_at.is_not(None))
    .correlate(Job)
    .scalar_subquery()
)
_CELLS = (
    select(Version.package_id, Job.version_id, TargetRow.tag, Job.status, Job.reason, _LATEST_FINISHED_BUILD)
    .join(Version, Version.id == Job.version_id)
    .join(TargetRow, TargetRow.id == Job.target_id)
    .where(Version.package_id.in_(_IDS))
)


def _version_key(text: str) -> tuple[int, PEP440Version | str]:
    """PEP 440 order, with unparseable spellings first."""
    try:
        return (1, PEP440Version(text))
    except InvalidVersion:
        return (0, text)


def file_url(package: str, filename: str) -> str:
    return f"/files/{package}/{filename}"


def published_package(session: Session, name: str) -> Package | None:
    """The package if it should have pages: known, not removed, not quarantined."""
    package = session.scalar(select(Package).where(Package.name == name))
    if package is None or package.removed or package.quarantined:
        return None
    return package


def published_named(session: Session, names: Sequence[str]) -> list[PackageFacts]:
    """Those of `names` that are published packages."""
    rows = session.connection().execute(_PUBLISHED_NAMED, {"names": list(names)})
    return [PackageFacts._make(row) for row in rows]


def enabled_targets(session: Session) -> tuple[str, ...]:
    """The targets a project page has a column for."""
    return tuple(session.connection().execute(_TARGETS).scalars())


def project_records(
    session: Session, package: Package, *, merged: bool, upstream_project_url: str | None
) -> tuple[ProjectIndex, ProjectPage]:
    """The simple-index record and the project page record of one package."""
    facts = PackageFacts(
        package.id,
        package.name,
        package.display_name,
        package.summary,
        package.description,
        package.last_serial,
    )
    (records,) = many_project_records(
        session, [facts], enabled_targets(session), merged=merged, tracks=lambda _: upstream_project_url
    )
    return records


def many_project_records(
    session: Session,
    packages: Sequence[PackageFacts],
    targets: tuple[str, ...],
    *,
    merged: bool,
    tracks: Callable[[str], str | None],
) -> list[tuple[ProjectIndex, ProjectPage]]:
    """The records of several packages from one query per table; `tracks` gives the PEP 708 URL."""
    names = {package.id: package.name for package in packages}
    versions = _versions(session, list(names))
    farm = _farm_files(session, names, versions)
    upstream = _upstream_files(session, list(names), versions) if merged else {}
    cells = _cells(session, list(names), versions)
    downloaded = downloads.downloads_by_package(session, names.values())
    records = []
    for package in packages:
        ordered = versions.by_package.get(package.id, [])
        ordered.sort(key=lambda v: versions.rank[v[0]])
        index_files, page_files = farm.get(package.id, ([], []))
        farm_names = {file.filename for file in index_files}
        index_files += [file for file in upstream.get(package.id, ()) if file.filename not in farm_names]
        index_files.sort(key=_by_filename)
        tracked = tracks(package.name)
        index = ProjectIndex(
            name=package.name,
            display_name=package.display_name,
            versions=tuple(text for _, text in ordered),
            files=tuple(index_files),
            last_serial=package.last_serial,
            tracks=tracked,
        )
        page = ProjectPage(
            name=package.name,
            display_name=package.display_name,
            summary=package.summary,
            description=package.description,
            upstream_url=tracked,
            versions=tuple(text for _, text in reversed(ordered)),
            targets=targets,
            cells=tuple(cells.get(package.id, ())),
            files=tuple(file for _, file in sorted(page_files, key=_by_rank_and_filename, reverse=True)),
            apt_packages=tuple(sorted({apt for _, file in page_files for apt in file.apt_packages})),
            downloads=downloaded.get(package.name, 0),
        )
        records.append((index, page))
    return records


def _by_filename(file: IndexFile) -> str:
    return file.filename


def _by_rank_and_filename(item: tuple[int, FarmFile]) -> tuple[int, str]:
    return item[0], item[1].filename


def _rows(session: Session, statement: Executable, package_ids: list[int]) -> Sequence[Row[Any]]:
    """Run a project query as Core: the ORM's per-row bookkeeping costs more than the query
    when a full publish reads millions of rows."""
    return session.connection().execute(statement, {"ids": package_ids}).all()  # one fetchall


class _Versions(NamedTuple):
    """The published versions of some packages."""

    by_package: dict[int, list[tuple[int, str]]]  # package id -> [(version id, upstream spelling)]
    text: dict[int, str]  # version id -> upstream spelling
    rank: dict[int, int]  # version id -> its place in PEP 440 order among its package's versions
    yank: dict[int, str | None]  # version id -> None: not yanked; else the reason ("" for none given)


def _versions(session: Session, package_ids: list[int]) -> _Versions:
    rows = _rows(session, _VERSIONS, package_ids)
    found = _Versions(defaultdict(list), {}, {}, {})
    canonical: dict[int, str] = {}
    for version_id, package_id, text, spelling, yanked, reason in rows:
        found.by_package[package_id].append((version_id, text))
        found.text[version_id] = text
        found.yank[version_id] = (reason or "") if yanked else None
        canonical[version_id] = spelling
    # Ranks only order versions within their package: most packages have one or two versions,
    # and a lone version needs no costly PEP 440 parse. Every later sort compares integers.
    for versions in found.by_package.values():
        if len(versions) == 1:
            found.rank[versions[0][0]] = 0
            continue
        by_key = sorted(versions, key=lambda version: _version_key(canonical[version[0]]))
        found.rank.update((version_id, rank) for rank, (version_id, _) in enumerate(by_key))
    return found


def _farm_files(
    session: Session, names: dict[int, str], versions: _Versions
) -> dict[int, tuple[list[IndexFile], list[tuple[int, FarmFile]]]]:
    """By package id: its served farm files as index entries, and as page rows with their
    version's rank. Files of unpublished versions are left out."""
    found: dict[int, tuple[list[IndexFile], list[tuple[int, FarmFile]]]] = {}
    for row in _rows(session, _FARM_FILES, list(names)):
        package_id, version_id, build, filename, target, sha256, size, requires, meta, alias, apt, at = row
        if version_id not in versions.text:
            continue
        url = file_url(names[package_id], filename)
        index_files, page_files = found.setdefault(package_id, ([], []))
        index_files.append(
            IndexFile(filename, url, sha256, size, at, requires, versions.yank[version_id], meta, True)
        )
        page_file = FarmFile(
            filename,
            url,
            versions.text[version_id],
            target,
            size,
            sha256,
            build,
            tuple(apt or ()),
            alias,  # an alias names the file it shares
        )
        page_files.append((versions.rank[version_id], page_file))
    return found


def _upstream_files(
    session: Session, package_ids: list[int], versions: _Versions
) -> dict[int, list[IndexFile]]:
    """Upstream's sdists and wheels by package id, for merged pages."""
    found: dict[int, list[IndexFile]] = defaultdict(list)
    for row in _rows(session, _UPSTREAM_FILES, package_ids):
        package_id, version_id, filename, url, sha256, size, uploaded, requires, yanked, meta = row
        if version_id not in versions.text:
            continue
        yank = versions.yank[version_id]
        # A file yanked on its own has no reason of its own in the upstream feed.
        yank = yank if yank is not None else ("" if yanked else None)
        found[package_id].append(
            IndexFile(filename, url, sha256, size, uploaded, requires, yank, meta, False)
        )
    return found


def _cell_status(status: JobStatus, reason: str | None) -> str:
    if status is JobStatus.failed and reason == _BROKEN_REASON:
        return "broken"
    return _CELL_STATUS[status]


def _cells(session: Session, package_ids: list[int], versions: _Versions) -> dict[int, list[BuildCell]]:
    """The build matrix of each package: one cell per job, linked to its latest finished build.

    A running build has no log page yet, so a cell links to the attempt before it, if any.
    """
    rows = _rows(session, _CELLS, package_ids)
    found: dict[int, list[BuildCell]] = defaultdict(list)
    for package_id, version_id, tag, status, reason, build_id in rows:
        if version_id in versions.text:
            found[package_id].append(
                BuildCell(versions.text[version_id], tag, _cell_status(status, reason), build_id, reason)
            )
    return found


def package_names(session: Session) -> Iterator[str]:
    """Every name the root index lists, streamed in name order."""
    query = select(Package.name).where(*_PUBLISHED).order_by(Package.name).execution_options(yield_per=5000)
    yield from session.scalars(query)


def last_serial(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(Package.last_serial), 0))) or 0


def site_summary(
    session: Session,
    published: Sequence[SearchEntry],
    builds: Mapping[str, int],
    queue_by_target: Mapping[str, int],
    disk_used_bytes: int,
    disk_free_bytes: int | None,
) -> SiteSummary:
    """The home page's figures. The totals over every project, build and queued job come in
    already counted (``published``, ``builds`` by status, ``queue_by_target``): counting them
    here would cost seconds at a big farm."""
    succeeded, failed = builds.get(BuildStatus.success, 0), builds.get(BuildStatus.failed, 0)
    return SiteSummary(
        packages=len(published),
        versions=sum(entry.versions for entry in published),
        wheels=sum(entry.wheels for entry in published),
        builds=sum(builds.values()),
        success_rate=(succeeded / (succeeded + failed)) if succeeded + failed else None,
        queue_by_target=dict(queue_by_target),
        builders_online=session.scalar(
            select(func.count(Builder.id)).where(Builder.last_seen >= utcnow() - timedelta(minutes=5))
        )
        or 0,
        disk_used_bytes=disk_used_bytes,
        disk_free_bytes=disk_free_bytes,
        recent_builds=recent_builds(session),
    )


def finished_builds_by_status(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> Counter[str]:
    """Builds that finished in [since, until), by status: a range of ``ix_builds_finished_at``."""
    query = select(Build.status, func.count()).where(Build.finished_at.is_not(None)).group_by(Build.status)
    if since is not None:
        query = query.where(Build.finished_at >= since)
    if until is not None:
        query = query.where(Build.finished_at < until)
    return Counter({str(status): count for status, count in session.execute(query)})


def unfinished_builds_by_status(session: Session) -> Counter[str]:
    """Running builds by status, and aborted ones recorded before an abort stamped its finish."""
    query = select(Build.status, func.count()).where(Build.finished_at.is_(None)).group_by(Build.status)
    return Counter({str(status): count for status, count in session.execute(query)})


def recent_builds(session: Session, limit: int = 20) -> tuple[RecentBuild, ...]:
    """The newest builds, running ones included: the home page's list."""
    rows = session.execute(
        select(
            Build.id,
            Package.name,
            Version.version,
            TargetRow.tag,
            Build.status,
            Build.finished_at,
            Build.duration_s,
        )
        .join(Job, Job.id == Build.job_id)
        .join(Version, Version.id == Job.version_id)
        .join(Package, Package.id == Version.package_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .order_by(Build.id.desc())
        .limit(limit)
    )
    return tuple(
        RecentBuild(
            build_id=r.id,
            package=r.name,
            version=r.version,
            target=r.tag,
            status=str(r.status),
            finished_at=r.finished_at,
            duration_s=r.duration_s,
        )
        for r in rows
    )


def _utc_day(session: Session, column: ColumnElement[datetime]) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp column, as SQL both databases run."""
    if session.get_bind().dialect.name == "postgresql":
        column = func.timezone("UTC", column)  # else date() would use the session's time zone
    return func.date(column, type_=Date)


def stats(session: Session, now: datetime | None = None) -> Stats:
    """The statistics page's series over the last ``STATS_DAYS`` days.

    Every query is a range scan of ``ix_builds_finished_at``, so the cost follows the window,
    not the farm's whole history.
    """
    recent = Build.finished_at >= (now or utcnow()) - timedelta(days=STATS_DAYS)
    day = _utc_day(session, Build.finished_at).label("day")
    per_day = session.execute(
        select(
            day,
            func.sum(case((Build.status == BuildStatus.success, 1), else_=0)),
            func.sum(case((Build.status == BuildStatus.failed, 1), else_=0)),
        )
        .where(recent)
        .group_by(day)
        .order_by(day)
    )
    per_builder = session.execute(
        select(Builder.name, day, func.count(Build.id))
        .join(Builder, Builder.id == Build.builder_id)
        .where(recent)
        .group_by(Builder.name, day)
    )
    outcomes = session.execute(
        select(Build.status, func.count(Build.id)).where(recent).group_by(Build.status)
    )
    reasons = session.execute(
        select(Build.failure_reason, func.count(Build.id))
        .where(recent, Build.status == BuildStatus.failed)
        .group_by(Build.failure_reason)
    )
    failure_reasons = {reason or "unknown": count for reason, count in reasons}
    rescued = session.execute(
        select(Job.remedy, func.count(Build.id))
        .join(Job, Job.id == Build.job_id)
        .where(recent, Build.status == BuildStatus.success, Job.remedy.is_not(None))
        .group_by(Job.remedy)
    )
    clients = downloads.installer_breakdown(session, STATS_DAYS, today=(now or utcnow()).date())
    return Stats(
        builds_per_day=tuple((day, ok or 0, failed or 0) for day, ok, failed in per_day),
        builds_per_builder_per_day=_top_series(per_builder.all()),
        outcomes={str(status): count for status, count in outcomes},
        failure_reasons=failure_reasons,
        days=STATS_DAYS,
        downloads_per_day=tuple(downloads.downloads_per_day(session, STATS_DAYS)),
        time_saved_s=downloads.time_saved_seconds(session),
        remedies_rescued={f"{remedy} provided to the build": count for remedy, count in rescued},
        smoke_test_rejected=failure_reasons.get("smoke_test_failed", 0),
        downloads_by_installer=_named(clients.installer_versions),
        downloads_by_python=_named(clients.pythons),
        downloads_by_system=_named(clients.distros or clients.systems),
    )


def _named(counts: list[tuple[str, int]], top: int = 10) -> dict[str, int]:
    """The ``top`` biggest counts; clients that did not say who they are show as "unknown"."""
    return {name or "unknown": count for name, count in counts[:top]}


def _top_series(rows: Sequence[Any]) -> dict[str, tuple[tuple[date, int], ...]]:
    """One series per busiest builder and one for the rest: a chart shows about eight lines."""
    series: dict[str, dict[date, int]] = defaultdict(dict)
    for name, day, count in rows:
        series[name][day] = count
    ranked = sorted(series, key=lambda name: (-sum(series[name].values()), name))
    top = {name: series[name] for name in ranked[:STATS_BUILDERS]}
    if len(ranked) > STATS_BUILDERS:
        others: dict[date, int] = defaultdict(int)
        for name in ranked[STATS_BUILDERS:]:
            for day, count in series[name].items():
                others[day] += count
        top[f"{len(ranked) - STATS_BUILDERS} other builders"] = others
    return {name: tuple(sorted(points.items())) for name, points in top.items()}


def builder_rows(session: Session) -> tuple[BuilderRow, ...]:
    done = dict(
        session.execute(
            select(Build.builder_id, func.count(Build.id))
            .where(Build.status == BuildStatus.success)
            .group_by(Build.builder_id)
        ).all()
    )
    current = {
        row.builder_id: f"{row.name} {row.version}"
        for row in session.execute(
            select(Job.builder_id, Package.name, Version.version)
            .join(Version, Version.id == Job.version_id)
            .join(Package, Package.id == Version.package_id)
            .where(Job.status == JobStatus.leased)
        )
    }
    return tuple(
        BuilderRow(
            name=b.name,
            target=b.target or "",
            state=str(b.state),
            current=current.get(b.id),
            last_seen=b.last_seen,
            os=b.os,
            cpu=b.cpu,
            builds_done=done.get(b.id, 0),
        )
        for b in session.scalars(select(Builder).order_by(Builder.name))
    )


def search_entries(session: Session, names: Collection[str] | None = None) -> list[SearchEntry]:
    """The search rows of every published project, or of those of ``names`` still published."""
    if names is None:
        return _search_entries(session, None)
    found: list[SearchEntry] = []
    ordered = sorted(names)
    for start in range(0, len(ordered), 1000):  # under every database's limit on parameters
        found += _search_entries(session, ordered[start : start + 1000])
    return found


def _search_entries(session: Session, named: Sequence[str] | None) -> list[SearchEntry]:
    """Search rows of the published projects ``named``; of all of them for None, unfiltered."""
    of_named = [] if named is None else [Package.name.in_(named)]
    versions_of_named = [] if named is None else [Version.package_id.in_(select(Package.id).where(*of_named))]
    versions = dict(
        session.execute(
            select(Version.package_id, func.count(Version.id))
            .where(Version.removed.is_(False), *versions_of_named)
            .group_by(Version.package_id)
        ).all()
    )
    wheels = dict(
        session.execute(
            select(Version.package_id, func.count(File.id))
            .join(File, File.version_id == Version.id)
            .where(*versions_of_named)
            .group_by(Version.package_id)
        ).all()
    )
    published = select(Package.id, Package.name, Package.summary).where(*_PUBLISHED, *of_named)
    return [
        SearchEntry(
            name=row.name, summary=row.summary, versions=versions.get(row.id, 0), wheels=wheels.get(row.id, 0)
        )
        for row in session.execute(published.order_by(Package.name))
    ]


def finished_builds(session: Session) -> list[int]:
    """Ids of every finished build, in order: a full publish rewrites each one's page."""
    return list(session.scalars(select(Build.id).where(Build.finished_at.is_not(None)).order_by(Build.id)))


def build_log_record(session: Session, build_id: int, log_text: str) -> BuildLogPage | None:
    """One build's page record, or None for an unknown build."""
    records = build_log_records(session, [build_id], lambda _: log_text)
    return records[0] if records else None


def build_log_records(
    session: Session, build_ids: Sequence[int], log_text: Callable[[int], str]
) -> list[BuildLogPage]:
    """The page records of several builds from two queries; `log_text` reads a build's log."""
    rows = session.execute(
        select(
            Build.id,
            Build.status,
            Build.failure_reason,
            Build.failure_detail,
            Build.started_at,
            Build.duration_s,
            Build.environment,
            Package.name,
            Version.version,
            TargetRow.tag,
            Builder.name.label("builder"),
        )
        .join(Job, Job.id == Build.job_id)
        .join(Version, Version.id == Job.version_id)
        .join(Package, Package.id == Version.package_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .outerjoin(Builder, Builder.id == Build.builder_id)
        .where(Build.id.in_(build_ids))
        .order_by(Build.id)
    ).all()
    files: dict[int, list[str]] = defaultdict(list)
    for build_id, filename in session.execute(
        select(File.build_id, File.filename).where(File.build_id.in_(build_ids)).order_by(File.filename)
    ):
        files[build_id].append(filename)
    return [
        BuildLogPage(
            build_id=row.id,
            package=row.name,
            version=row.version,
            target=row.tag,
            builder=row.builder,
            status=str(row.status),
            failure_reason=row.failure_reason,
            failure_detail=row.failure_detail,
            started_at=row.started_at,
            duration_s=row.duration_s,
            environment={str(k): str(v) for k, v in (row.environment or {}).items()},
            log_text=log_text(row.id),
            files=tuple(files[row.id]),
        )
        for row in rows
    ]
