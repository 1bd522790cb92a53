"""Recording upstream facts: snapshots applied twice leave the same rows; spellings become aliases."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from wheelmill.db import catalog
from wheelmill.db.engine import Database
from wheelmill.db.tables import Package, PackageAlias, Source, UpstreamWheel, Version
from wheelmill.errors import InvalidName
from wheelmill.upstream.model import ProjectSnapshot, UpstreamFile


def file(filename: str, *, yanked: str | None = None) -> UpstreamFile:
    return UpstreamFile(
        filename=filename,
        url=f"https://files.example/{filename}",
        sha256="ab" * 32,
        size=100,
        requires_python=">=3.8",
        upload_time=datetime(2024, 1, 1, tzinfo=UTC),
        yanked=yanked is not None,
        yanked_reason=yanked or None,
        core_metadata_sha256=None,
    )


SNAPSHOT = ProjectSnapshot(
    name="Demo_Pure",
    versions=("1.0", "1.0.0-beta"),
    files=(
        file("demo_pure-1.0.tar.gz"),
        file("demo_pure-1.0-py3-none-any.whl"),
        file("Demo_Pure-1.0.0-beta.tar.gz"),
    ),
    last_serial=10,
    summary="a demo",
)


def counts(db: Database) -> tuple[int, ...]:
    with db.read() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Package, PackageAlias, Version, Source, UpstreamWheel)
        )


def test_snapshot_applied_twice_leaves_the_same_rows(db: Database) -> None:
    with db.write() as session:
        first = catalog.apply_snapshot(session, SNAPSHOT)
    assert len(first.new_version_ids) == 2 and first.changed
    before = counts(db)
    with db.write() as session:
        again = catalog.apply_snapshot(session, SNAPSHOT)
    assert again.new_version_ids == [] and not again.changed
    assert counts(db) == before == (1, 1, 2, 2, 1)
    with db.read() as session:
        package = session.scalars(select(Package)).one()
        assert (package.name, package.display_name, package.summary) == ("demo-pure", "Demo_Pure", "a demo")
        spellings = {v.canonical: v.version for v in session.scalars(select(Version))}
        assert spellings == {"1": "1.0", "1b0": "1.0.0-beta"}


def test_versions_and_files_missing_from_a_later_page_are_removed(db: Database) -> None:
    with db.write() as session:
        catalog.apply_snapshot(session, SNAPSHOT)
    later = ProjectSnapshot(
        name="demo-pure",
        versions=("1.0",),
        files=(file("demo_pure-1.0.tar.gz", yanked="bad"),),
        last_serial=12,
    )
    with db.write() as session:
        changes = catalog.apply_snapshot(session, later)
    assert changes.changed
    with db.read() as session:
        versions = {
            v.version: (v.removed, v.yanked, v.yanked_reason) for v in session.scalars(select(Version))
        }
        assert versions == {"1.0": (False, True, "bad"), "1.0.0-beta": (True, False, None)}
        assert session.scalar(select(func.count()).select_from(UpstreamWheel)) == 0


def test_bad_names_and_versions_are_refused(db: Database) -> None:
    with db.write() as session, pytest.raises(InvalidName, match="'-bad-'"):
        catalog.ensure_package(session, "-bad-")
    with db.write() as session:
        package = catalog.ensure_package(session, "ok")
        with pytest.raises(InvalidName, match=r"'not\.a version'"):
            catalog.ensure_version(session, package, "not.a version")
