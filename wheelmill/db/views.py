"""Read models for the publisher: database rows turned into ``wheelmill.publish.model`` records.

A project's records come from five indexed queries whichever number of projects they cover, so
a finished build costs one project's rewrite and a full publish reads hundreds of projects per
round trip. Rows are read as column tuples, not ORM objects: a full publish reads millions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from packaging.version import InvalidVersion
from packaging.version import Version as PEP440Version
from sqlalchemy import ColumnElement, Date, case, func, null, select
from sqlalchemy.orm import Session

from wheelmill.db.jobs import queue_depth
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


def _version_key(text: str) -> tuple[int, PEP440Version | str]:
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


def published_packages(session: Session, *, after: str, limit: int) -> list[PackageFacts]:
    """The next `limit` published packages whose names sort after `after`.

    Keyset pages over the unique name index: a full publish reads the catalogue in short
    transactions instead of holding one snapshot open for minutes.
    """
    rows = session.execute(
        select(*_PACKAGE_COLUMNS).where(*_PUBLISHED, Package.name > after).order_by(Package.name).limit(limit)
    )
    return [PackageFacts._make(row) for row in rows]


def published_named(session: Session, names: Sequence[str]) -> list[PackageFacts]:
    """Those of `names` that are published packages."""
    rows = session.execute(select(*_PACKAGE_COLUMNS).where(*_PUBLISHED, Package.name.in_(names)))
    return [PackageFacts._make(row) for row in rows]


def published_count(session: Session) -> int:
    return session.scalar(select(func.count(Package.id)).where(*_PUBLISHED)) or 0


def enabled_targets(session: Session) -> tuple[str, ...]:
    """The targets a project page has a column for."""
    return tuple(session.scalars(select(TargetRow.tag).where(TargetRow.enabled).order_by(TargetRow.tag)))


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
    ids = [package.id for package in packages]
    versions = _versions(session, ids)
    farm = _farm_files(session, ids, versions)
    upstream = _upstream_files(session, ids, versions) if merged else {}
    cells = _cells(session, ids, versions)
    records = []
    for package in packages:
        ordered = sorted(versions.by_package.get(package.id, ()), key=lambda v: v.key)
        files = farm.get(package.id, [])
        tracked = tracks(package.name)
        index_files = [_index_file(package.name, row, versions.yank[row.version_id]) for row in files]
        farm_names = {row.filename for row in files}
        index_files += [f for f in upstream.get(package.id, ()) if f.filename not in farm_names]
        index = ProjectIndex(
            name=package.name,
            display_name=package.display_name,
            versions=tuple(v.version for v in ordered),
            files=tuple(sorted(index_files, key=lambda f: f.filename)),
            last_serial=package.last_serial,
            tracks=tracked,
        )
        page = ProjectPage(
            name=package.name,
            display_name=package.display_name,
            summary=package.summary,
            description=package.description,
            upstream_url=tracked,
            versions=tuple(v.version for v in reversed(ordered)),
            targets=targets,
            cells=tuple(cells.get(package.id, ())),
            files=_farm_page_files(package.name, files, versions),
            apt_packages=tuple(sorted({apt for row in files for apt in (row.apt_packages or ())})),
        )
        records.append((index, page))
    return records


class _VersionRow(NamedTuple):
    id: int
    version: str
    key: tuple[int, PEP440Version | str]


class _Versions(NamedTuple):
    """The published versions of some packages: by package, and each one's text and yank."""

    by_package: dict[int, list[_VersionRow]]
    text: dict[int, str]
    key: dict[int, tuple[int, PEP440Version | str]]
    yank: dict[int, str | None]  # None: not yanked; else the reason ("" for none given)


def _versions(session: Session, package_ids: list[int]) -> _Versions:
    rows = session.execute(
        select(
            Version.id,
            Version.package_id,
            Version.version,
            Version.canonical,
            Version.yanked,
            Version.yanked_reason,
        ).where(
            Version.package_id.in_(package_ids), Version.removed.is_(False), Version.quarantined.is_(False)
        )
    )
    found = _Versions(defaultdict(list), {}, {}, {})
    for row in rows:
        key = _version_key(row.canonical)
        found.by_package[row.package_id].append(_VersionRow(row.id, row.version, key))
        found.text[row.id] = row.version
        found.key[row.id] = key
        found.yank[row.id] = (row.yanked_reason or "") if row.yanked else None
    return found


def _farm_files(session: Session, package_ids: list[int], versions: _Versions) -> dict[int, list[Any]]:
    """Served farm files by package id, those of unpublished versions left out."""
    rows = session.execute(
        select(
            Version.package_id,
            File.id,
            File.version_id,
            File.build_id,
            File.filename,
            File.target,
            File.sha256,
            File.size,
            File.requires_python,
            File.metadata_sha256,
            File.alias_of,
            File.apt_packages,
            File.created_at,
        )
        .join(Version, Version.id == File.version_id)
        .where(Version.package_id.in_(package_ids), File.broken.is_(None))
    )
    found: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        if row.version_id in versions.text:
            found[row.package_id].append(row)
    return found


def _index_file(package: str, row: Any, yank: str | None) -> IndexFile:
    return IndexFile(
        filename=row.filename,
        url=file_url(package, row.filename),
        sha256=row.sha256,
        size=row.size,
        upload_time=row.created_at,
        requires_python=row.requires_python,
        yanked=yank,
        core_metadata_sha256=row.metadata_sha256,
        from_farm=True,
    )


def _farm_page_files(package: str, files: list[Any], versions: _Versions) -> tuple[FarmFile, ...]:
    """The project page's files, newest version first; an alias names the file it shares bytes with."""
    names = {row.id: row.filename for row in files}
    ordered = sorted(files, key=lambda row: (versions.key[row.version_id], row.filename), reverse=True)
    return tuple(
        FarmFile(
            filename=row.filename,
            url=file_url(package, row.filename),
            version=versions.text[row.version_id],
            target=row.target,
            size=row.size,
            sha256=row.sha256,
            build_id=row.build_id,
            apt_packages=tuple(row.apt_packages or ()),
            broken=None,
            alias_of=names.get(row.alias_of) if row.alias_of is not None else None,
        )
        for row in ordered
    )


def _upstream_files(
    session: Session, package_ids: list[int], versions: _Versions
) -> dict[int, list[IndexFile]]:
    """Upstream's sdists and wheels by package id, for merged pages."""
    found: dict[int, list[IndexFile]] = defaultdict(list)
    for table in (Source, UpstreamWheel):
        metadata = UpstreamWheel.core_metadata_sha256 if table is UpstreamWheel else null()
        rows = session.execute(
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
                metadata,
            )
            .join(Version, Version.id == table.version_id)
            .where(Version.package_id.in_(package_ids))
        )
        for package_id, version_id, filename, url, sha256, size, uploaded, requires, yanked, meta in rows:
            if version_id not in versions.text:
                continue
            yank = versions.yank[version_id]
            found[package_id].append(
                IndexFile(
                    filename=filename,
                    url=url,
                    sha256=sha256,
                    size=size,
                    upload_time=uploaded,
                    requires_python=requires,
                    # A file yanked on its own has no reason of its own in the upstream feed.
                    yanked=yank if yank is not None else ("" if yanked else None),
                    core_metadata_sha256=meta,
                    from_farm=False,
                )
            )
    return found


def _cells(session: Session, package_ids: list[int], versions: _Versions) -> dict[int, list[BuildCell]]:
    """The build matrix of each package: one cell per job, linked to its latest finished build.

    A running build has no log page yet, so a cell links to the attempt before it, if any.
    """
    latest = (
        select(func.max(Build.id))
        .where(Build.job_id == Job.id, Build.finished_at.is_not(None))
        .correlate(Job)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Version.package_id, Job.version_id, TargetRow.tag, Job.status, Job.reason, latest)
        .join(Version, Version.id == Job.version_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .where(Version.package_id.in_(package_ids))
    )
    found: dict[int, list[BuildCell]] = defaultdict(list)
    for package_id, version_id, tag, status, reason, build_id in rows:
        if version_id in versions.text:
            found[package_id].append(
                BuildCell(versions.text[version_id], tag, _CELL_STATUS[status], build_id, reason)
            )
    return found


def package_names(session: Session) -> Iterator[str]:
    """Every name the root index lists, streamed in name order."""
    query = select(Package.name).where(*_PUBLISHED).order_by(Package.name).execution_options(yield_per=5000)
    yield from session.scalars(query)


def last_serial(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(Package.last_serial), 0))) or 0


def site_summary(session: Session, disk_used_bytes: int, disk_free_bytes: int | None) -> SiteSummary:
    outcome = session.execute(
        select(
            func.count(Build.id),
            func.sum(case((Build.status == BuildStatus.success, 1), else_=0)),
            func.sum(case((Build.status == BuildStatus.failed, 1), else_=0)),
        )
    ).one()
    total, succeeded, failed = outcome[0], outcome[1] or 0, outcome[2] or 0
    return SiteSummary(
        packages=session.scalar(select(func.count(Package.id)).where(Package.removed.is_(False))) or 0,
        versions=session.scalar(select(func.count(Version.id)).where(Version.removed.is_(False))) or 0,
        wheels=session.scalar(select(func.count(File.id)).where(File.broken.is_(None))) or 0,
        builds=total,
        success_rate=(succeeded / (succeeded + failed)) if succeeded + failed else None,
        queue_by_target=queue_depth(session),
        builders_online=session.scalar(
            select(func.count(Builder.id)).where(Builder.last_seen >= utcnow() - timedelta(minutes=5))
        )
        or 0,
        disk_used_bytes=disk_used_bytes,
        disk_free_bytes=disk_free_bytes,
        recent_builds=recent_builds(session),
    )


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
    return Stats(
        builds_per_day=tuple((day, ok or 0, failed or 0) for day, ok, failed in per_day),
        builds_per_builder_per_day=_top_series(per_builder.all()),
        outcomes={str(status): count for status, count in outcomes},
        failure_reasons={reason or "unknown": count for reason, count in reasons},
    )


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


def search_entries(session: Session) -> Iterator[SearchEntry]:
    versions = dict(
        session.execute(
            select(Version.package_id, func.count(Version.id))
            .where(Version.removed.is_(False))
            .group_by(Version.package_id)
        ).all()
    )
    wheels = dict(
        session.execute(
            select(Version.package_id, func.count(File.id))
            .join(File, File.version_id == Version.id)
            .group_by(Version.package_id)
        ).all()
    )
    query = select(Package.id, Package.name, Package.summary).where(*_PUBLISHED).order_by(Package.name)
    for row in session.execute(query):
        yield SearchEntry(
            name=row.name, summary=row.summary, versions=versions.get(row.id, 0), wheels=wheels.get(row.id, 0)
        )


def finished_builds_after(session: Session, after: int, limit: int) -> list[int]:
    """Ids of finished builds above `after`, in order: keyset pages for rewriting every log page."""
    return list(
        session.scalars(
            select(Build.id)
            .where(Build.id > after, Build.finished_at.is_not(None))
            .order_by(Build.id)
            .limit(limit)
        )
    )


def finished_build_count(session: Session) -> int:
    return session.scalar(select(func.count(Build.id)).where(Build.finished_at.is_not(None))) or 0


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
