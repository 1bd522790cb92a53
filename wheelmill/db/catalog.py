"""Packages, versions and upstream files: what the follower records about upstream.

Every function is idempotent: applying the same upstream fact twice leaves the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from packaging.utils import InvalidName as PackagingInvalidName
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion
from packaging.version import Version as PEP440Version
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from wheelmill.db.feed import ADMIN, UPSTREAM
from wheelmill.db.tables import Package, PackageAlias, Source, UpstreamWheel, Version, utcnow
from wheelmill.errors import InvalidName
from wheelmill.upstream.model import ProjectSnapshot, UpstreamFile


@dataclass
class SnapshotChanges:
    """What applying a snapshot changed: new versions to plan, and whether pages need rewriting."""

    package_id: int
    name: str
    new_version_ids: list[int] = field(default_factory=list)
    changed: bool = False


def canonical_name(spelling: str) -> str:
    """PEP 503 normalised form of a PEP 508 project name; anything else is an InvalidName."""
    try:
        return canonicalize_name(spelling, validate=True)
    except PackagingInvalidName as exc:
        raise InvalidName(f"package name {spelling!r} is not valid (PEP 508)") from exc


def canonical_version(spelling: str) -> str:
    """PEP 440 canonical form; ``1.0``, ``1.0.0`` and ``1.0.0.0`` are one version, as on PyPI."""
    try:
        PEP440Version(spelling)
    except InvalidVersion as exc:
        raise InvalidName(f"version {spelling!r} is not a valid PEP 440 version") from exc
    return canonicalize_version(spelling)


def find_package(session: Session, name: str) -> Package | None:
    return session.scalar(select(Package).where(Package.name == canonicalize_name(name)))


def ensure_package(session: Session, spelling: str) -> Package:
    """The package for ``spelling``, created if new; other spellings are kept as aliases."""
    canonical = canonical_name(spelling)
    package = find_package(session, canonical)
    if package is None:
        package = Package(name=canonical, display_name=spelling)
        session.add(package)
        session.flush()
    elif package.removed:
        package.removed = False
    if spelling != canonical and session.get(PackageAlias, spelling) is None:
        session.add(PackageAlias(alias=spelling, package_id=package.id))
    return package


def ensure_version(
    session: Session, package: Package, spelling: str, released_at: datetime | None = None
) -> tuple[Version, bool]:
    """The version row for ``spelling`` (matched canonically) and whether it was created."""
    canonical = canonical_version(spelling)
    version = session.scalar(
        select(Version).where(Version.package_id == package.id, Version.canonical == canonical)
    )
    if version is not None:
        if version.removed:
            version.removed = False
            return version, True
        return version, False
    version = Version(
        package_id=package.id, version=spelling, canonical=canonical, released_at=released_at or utcnow()
    )
    session.add(version)
    session.flush()
    return version, True


def file_columns(file: UpstreamFile) -> dict[str, object]:
    """What upstream published about a file, as the columns of its row (Source or UpstreamWheel)."""
    columns = {
        "url": file.url,
        "sha256": file.sha256,
        "size": file.size,
        "requires_python": file.requires_python,
        "upload_time": file.upload_time,
        "yanked": file.yanked,
    }
    if not file.is_sdist:
        columns["core_metadata_sha256"] = file.core_metadata_sha256
    return columns


def record_file(session: Session, version: Version, file: UpstreamFile) -> bool:
    """Record an upstream sdist or wheel; returns whether anything changed."""
    table = Source if file.is_sdist else UpstreamWheel
    row = session.scalar(select(table).where(table.filename == file.filename))
    values = {"version_id": version.id, **file_columns(file)}
    if row is None:
        session.add(table(filename=file.filename, **values))
        return True
    changed = any(getattr(row, key) != value for key, value in values.items() if key != "upload_time")
    for key, value in values.items():
        setattr(row, key, value)
    return changed


def apply_snapshot(session: Session, snapshot: ProjectSnapshot) -> SnapshotChanges:
    """Make the database agree with one upstream project page.

    Versions and files missing from the page are marked removed; new ones are added.
    """
    package = ensure_package(session, snapshot.name)
    changes = SnapshotChanges(package_id=package.id, name=package.name)
    if snapshot.summary is not None and package.summary != snapshot.summary:
        package.summary = snapshot.summary
        changes.changed = True
    if snapshot.description is not None:
        package.description = snapshot.description
    package.last_serial = max(package.last_serial, snapshot.last_serial)

    spellings = {canonical_version(v): v for v in snapshot.versions}
    files_by_version: dict[str, list[UpstreamFile]] = {}
    for file in snapshot.files:
        version = file.canonical_version or _legacy_sdist_version(file.filename, spellings)
        if version is not None:
            files_by_version.setdefault(version, []).append(file)
    for canonical in files_by_version:
        spellings.setdefault(canonical, canonical)

    seen_versions: set[int] = set()
    for canonical, spelling in spellings.items():
        files = files_by_version.get(canonical, [])
        released = min((f.upload_time for f in files if f.upload_time), default=None)
        version, created = ensure_version(session, package, spelling, released)
        seen_versions.add(version.id)
        yanked = bool(files) and all(f.yanked for f in files)
        reason = next((f.yanked_reason for f in files if f.yanked_reason), None)
        held = version.yanked_by == ADMIN  # an admin's yank outlives what upstream says
        if not held and (version.yanked, version.yanked_reason) != (yanked, reason if yanked else None):
            version.yanked, version.yanked_reason = yanked, reason if yanked else None
            version.yanked_by = UPSTREAM if yanked else None
            changes.changed = True
        for file in files:
            changes.changed |= record_file(session, version, file)
        if created:
            changes.new_version_ids.append(version.id)
            changes.changed = True

    changes.changed |= _remove_missing(session, package, seen_versions, {f.filename for f in snapshot.files})
    return changes


def _legacy_sdist_version(filename: str, spellings: dict[str, str]) -> str | None:
    """The version of an old sdist whose name predates PEP 625 (``Demo-1.0.0-beta.tar.gz``),
    matched against the versions upstream lists, since the name alone is ambiguous."""
    stem = filename.removesuffix(".tar.gz").removesuffix(".zip").lower()
    return next(
        (canonical for canonical, spelling in spellings.items() if stem.endswith("-" + spelling.lower())),
        None,
    )


def _remove_missing(
    session: Session, package: Package, keep_versions: set[int], keep_files: set[str]
) -> bool:
    version_ids = session.scalars(select(Version.id).where(Version.package_id == package.id)).all()
    gone = [vid for vid in version_ids if vid not in keep_versions]
    changed = False
    if gone:
        result = session.execute(
            update(Version).where(Version.id.in_(gone), Version.removed.is_(False)).values(removed=True)
        )
        changed = result.rowcount > 0
    for table in (Source, UpstreamWheel):
        stale = session.scalars(
            select(table).where(table.version_id.in_(version_ids), table.filename.not_in(keep_files))
        ).all()
        for row in stale:
            session.delete(row)
            changed = True
    return changed


def mark_package_removed(session: Session, name: str) -> Package | None:
    package = find_package(session, name)
    if package is not None:
        package.removed = True
    return package
