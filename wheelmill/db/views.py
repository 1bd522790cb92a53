"""Read models for the publisher: database rows turned into ``wheelmill.publish.model`` records.

One project's records come from a handful of indexed queries, so a finished build costs a
rewrite of that project only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from packaging.version import InvalidVersion
from packaging.version import Version as PEP440Version
from sqlalchemy import case, func, select
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


def project_records(
    session: Session, package: Package, *, merged: bool, upstream_project_url: str | None
) -> tuple[ProjectIndex, ProjectPage]:
    """The simple-index record and the project page record of one package."""
    versions = session.scalars(
        select(Version).where(Version.package_id == package.id, Version.removed.is_(False))
    ).all()
    versions = [v for v in versions if not v.quarantined]
    by_id = {v.id: v for v in versions}
    files = session.scalars(select(File).where(File.version_id.in_(by_id), File.broken.is_(None))).all()
    index_files = [
        IndexFile(
            filename=f.filename,
            url=file_url(package.name, f.filename),
            sha256=f.sha256,
            size=f.size,
            upload_time=f.created_at,
            requires_python=f.requires_python,
            yanked=_yank(by_id[f.version_id]),
            core_metadata_sha256=f.metadata_sha256,
            from_farm=True,
        )
        for f in files
    ]
    if merged:
        farm_names = {f.filename for f in files}
        for table in (Source, UpstreamWheel):
            for row in session.scalars(select(table).where(table.version_id.in_(by_id))):
                if row.filename in farm_names:
                    continue
                index_files.append(
                    IndexFile(
                        filename=row.filename,
                        url=row.url,
                        sha256=row.sha256,
                        size=row.size,
                        upload_time=row.upload_time,
                        requires_python=row.requires_python,
                        yanked=_yank(by_id[row.version_id])
                        if row.yanked or by_id[row.version_id].yanked
                        else None,
                        core_metadata_sha256=getattr(row, "core_metadata_sha256", None),
                        from_farm=False,
                    )
                )
    ordered = sorted(versions, key=lambda v: _version_key(v.canonical))
    index = ProjectIndex(
        name=package.name,
        display_name=package.display_name,
        versions=tuple(v.version for v in ordered),
        files=tuple(sorted(index_files, key=lambda f: f.filename)),
        last_serial=package.last_serial,
        tracks=upstream_project_url,
    )
    page = ProjectPage(
        name=package.name,
        display_name=package.display_name,
        summary=package.summary,
        description=package.description,
        upstream_url=upstream_project_url,
        versions=tuple(v.version for v in reversed(ordered)),
        targets=tuple(
            session.scalars(select(TargetRow.tag).where(TargetRow.enabled).order_by(TargetRow.tag))
        ),
        cells=_cells(session, by_id),
        files=tuple(
            FarmFile(
                filename=f.filename,
                url=file_url(package.name, f.filename),
                version=by_id[f.version_id].version,
                target=f.target,
                size=f.size,
                sha256=f.sha256,
                build_id=f.build_id,
                apt_packages=tuple(f.apt_packages or ()),
                broken=f.broken,
            )
            for f in sorted(
                files, key=lambda f: (_version_key(by_id[f.version_id].canonical), f.filename), reverse=True
            )
        ),
        apt_packages=tuple(sorted({pkg for f in files for pkg in (f.apt_packages or ())})),
    )
    return index, page


def _yank(version: Version) -> str | None:
    return (version.yanked_reason or "") if version.yanked else None


def _cells(session: Session, versions: dict[int, Version]) -> tuple[BuildCell, ...]:
    latest_build = (
        select(Build.job_id, func.max(Build.id).label("build_id")).group_by(Build.job_id).subquery()
    )
    rows = session.execute(
        select(Job.version_id, TargetRow.tag, Job.status, Job.reason, latest_build.c.build_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .outerjoin(latest_build, latest_build.c.job_id == Job.id)
        .where(Job.version_id.in_(versions))
    ).all()
    return tuple(
        BuildCell(
            version=versions[row.version_id].version,
            target=row.tag,
            status=_CELL_STATUS[row.status],
            build_id=row.build_id,
            reason=row.reason,
        )
        for row in rows
    )


def package_names(session: Session) -> Iterator[str]:
    """Every name the root index lists, streamed in name order."""
    query = (
        select(Package.name)
        .where(Package.removed.is_(False), Package.quarantined.is_(False))
        .order_by(Package.name)
        .execution_options(yield_per=5000)
    )
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
    recent = session.execute(
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
        .limit(20)
    ).all()
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
        recent_builds=tuple(
            RecentBuild(
                build_id=r.id,
                package=r.name,
                version=r.version,
                target=r.tag,
                status=str(r.status),
                finished_at=r.finished_at,
                duration_s=r.duration_s,
            )
            for r in recent
        ),
    )


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
    query = (
        select(Package.id, Package.name, Package.summary)
        .where(Package.removed.is_(False), Package.quarantined.is_(False))
        .order_by(Package.name)
    )
    for row in session.execute(query):
        yield SearchEntry(
            name=row.name, summary=row.summary, versions=versions.get(row.id, 0), wheels=wheels.get(row.id, 0)
        )


def build_log_record(session: Session, build_id: int, log_text: str) -> BuildLogPage | None:
    row = session.execute(
        select(Build, Package.name, Version.version, TargetRow.tag, Builder.name.label("builder"))
        .join(Job, Job.id == Build.job_id)
        .join(Version, Version.id == Job.version_id)
        .join(Package, Package.id == Version.package_id)
        .join(TargetRow, TargetRow.id == Job.target_id)
        .outerjoin(Builder, Builder.id == Build.builder_id)
        .where(Build.id == build_id)
    ).first()
    if row is None:
        return None
    build = row.Build
    files = session.scalars(select(File.filename).where(File.build_id == build_id)).all()
    return BuildLogPage(
        build_id=build.id,
        package=row.name,
        version=row.version,
        target=row.tag,
        builder=row.builder,
        status=str(build.status),
        failure_reason=build.failure_reason,
        failure_detail=build.failure_detail,
        started_at=build.started_at,
        duration_s=build.duration_s,
        environment={str(k): str(v) for k, v in (build.environment or {}).items()},
        log_text=log_text,
        files=tuple(files),
    )
