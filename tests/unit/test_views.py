"""Read models: database rows to the records the publisher renders, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from wheelmill.db import views
from wheelmill.db.engine import Database
from wheelmill.db.tables import (
    Build,
    Builder,
    BuildStatus,
    ClientDownloads,
    File,
    Job,
    JobStatus,
    Package,
    Source,
    TargetRow,
    UpstreamWheel,
    Version,
)
from wheelmill.publish.model import ProjectIndex, ProjectPage

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
V7 = "cp311-cp311-linux_armv7l"
V6 = "cp311-cp311-linux_armv6l"
ENVIRONMENT = {
    "os": "Raspberry Pi OS 12",
    "kernel": "6.1.0",
    "python": "CPython 3.11.2",
    "pip": "23.0",
    "setuptools": "66.1",
    "compiler": "gcc (Debian 12.2.0-14) 12.2.0",
    "sandbox": "bubblewrap",
}
LEASES = itertools.count()


class Farm(NamedTuple):
    db: Database
    built: int  # demo 1.0's successful build
    failed: int  # demo 2.0's failed build


def add(session: Session, *rows: object) -> None:
    session.add_all(rows)
    session.flush()


def builder(session: Session, name: str) -> Builder:
    row = Builder(name=name, token_hash=name.ljust(64, "0"), target=V7)
    add(session, row)
    return row


def build(
    session: Session, job: Job, who: Builder, status: BuildStatus, finished: datetime | None, **kw: object
) -> Build:
    row = Build(
        job_id=job.id,
        builder_id=who.id,
        lease_id=f"lease-{next(LEASES)}",
        status=status,
        started_at=(finished or NOW) - timedelta(minutes=2),
        finished_at=finished,
        duration_s=120.0 if finished else None,
        **kw,
    )
    add(session, row)
    return row


@pytest.fixture
def farm(db: Database) -> Farm:
    """demo 1.0 (built for armv7l, aliased as armv6l) and 2.0 (failed, then building), plus
    an sdist and an upstream wheel each; `other` with one version and no build; `gone` removed."""
    with db.write() as session:
        v7, v6 = (
            TargetRow(tag=V7, python_version="3.11", platform="linux_armv7l"),
            TargetRow(tag=V6, python_version="3.11", platform="linux_armv6l"),
        )
        demo = Package(name="demo", display_name="Demo", summary="<b>demo</b>", last_serial=7)
        other = Package(name="other", display_name="Other", last_serial=3)
        gone = Package(name="gone", display_name="gone", removed=True)
        add(session, v7, v6, demo, other, gone)
        one = Version(package_id=demo.id, version="1.0", canonical="1")
        two = Version(package_id=demo.id, version="2.0", canonical="2", yanked=True, yanked_reason="bad <b>")
        hidden = Version(package_id=demo.id, version="3.0", canonical="3", quarantined=True)
        lone = Version(package_id=other.id, version="0.1", canonical="0.1")
        add(session, one, two, hidden, lone)
        for version in (one, two, hidden, lone):
            name = "other" if version is lone else "demo"
            add(
                session,
                Source(
                    version_id=version.id,
                    filename=f"{name}-{version.version}.tar.gz",
                    url=f"https://files.example.org/{name}-{version.version}.tar.gz",
                    sha256="5" * 64,
                    size=500,
                    requires_python=">=3.9",
                ),
            )
        add(
            session,
            UpstreamWheel(
                version_id=one.id,
                filename="demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                url="https://files.example.org/demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                sha256="6" * 64,
                size=600,
                core_metadata_sha256="7" * 64,
            ),
        )
        pi1, pi2 = builder(session, "pi-1"), builder(session, "pi-2")
        job_one = Job(version_id=one.id, target_id=v7.id, status=JobStatus.built, released_at=NOW)
        job_one6 = Job(version_id=one.id, target_id=v6.id, status=JobStatus.queued, released_at=NOW)
        job_two = Job(version_id=two.id, target_id=v7.id, status=JobStatus.leased, released_at=NOW)
        add(session, job_one, job_one6, job_two)
        build(session, job_two, pi1, BuildStatus.failed, NOW - timedelta(days=200), failure_reason="ancient")
        built = build(session, job_one, pi1, BuildStatus.success, NOW, environment=ENVIRONMENT)
        failed = build(
            session,
            job_two,
            pi2,
            BuildStatus.failed,
            NOW - timedelta(days=1),
            failure_reason="missing-header",
            failure_detail="foo.h: <No such file>",
        )
        build(session, job_two, pi1, BuildStatus.running, None)
        wheel = File(
            version_id=one.id,
            build_id=built.id,
            filename=f"demo-1.0-{V7}.whl",
            target=V7,
            sha256="a" * 64,
            size=1234,
            requires_python=">=3.9",
            metadata_sha256="b" * 64,
            apt_packages=["libfoo1"],
            created_at=NOW,
        )
        add(session, wheel)
        alias = File(
            version_id=one.id,
            build_id=built.id,
            filename=f"demo-1.0-{V6}.whl",
            target=V7,
            sha256="a" * 64,
            size=1234,
            metadata_sha256="b" * 64,
            alias_of=wheel.id,
            apt_packages=["libfoo1"],
            created_at=NOW,
        )
        add(session, alias)
    return Farm(db, built.id, failed.id)


def records(farm: Farm, name: str, merged: bool) -> tuple[ProjectIndex, ProjectPage]:
    with farm.db.read() as session:
        package = views.published_package(session, name)
        assert package is not None
        return views.project_records(
            session, package, merged=merged, upstream_project_url=f"https://up/{name}/"
        )


def test_merged_index_lists_upstream_files_beside_the_farm(farm: Farm) -> None:
    index, _ = records(farm, "demo", merged=True)
    assert index.versions == ("1.0", "2.0")  # the quarantined 3.0 is hidden
    assert [(f.filename, f.from_farm) for f in index.files] == [
        ("demo-1.0-cp311-cp311-linux_armv6l.whl", True),
        ("demo-1.0-cp311-cp311-linux_armv7l.whl", True),
        ("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", False),
        ("demo-1.0.tar.gz", False),
        ("demo-2.0.tar.gz", False),
    ]
    files = {f.filename: f for f in index.files}
    assert files["demo-1.0-cp311-cp311-linux_armv6l.whl"].sha256 == "a" * 64
    assert (
        files["demo-1.0-cp311-cp311-linux_armv7l.whl"].url
        == "/files/demo/demo-1.0-cp311-cp311-linux_armv7l.whl"
    )
    assert files["demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"].core_metadata_sha256 == "7" * 64
    assert files["demo-2.0.tar.gz"].yanked == "bad <b>" and files["demo-1.0.tar.gz"].yanked is None
    assert index.tracks == "https://up/demo/" and index.last_serial == 7


def test_farm_only_index_and_a_project_without_builds(farm: Farm) -> None:
    index, _ = records(farm, "demo", merged=False)
    assert all(f.from_farm for f in index.files) and len(index.files) == 2
    lone, page = records(farm, "other", merged=False)
    assert lone.files == () and lone.versions == ("0.1",) and page.cells == ()
    with farm.db.read() as session:
        assert views.published_package(session, "gone") is None
        assert views.published_package(session, "unknown") is None
        assert [p.name for p in views.published_named(session, ["demo", "gone", "unknown"])] == ["demo"]
        assert list(views.package_names(session)) == ["demo", "other"]


def test_a_wheel_the_smoke_test_kept_out_shows_as_broken_with_its_error(farm: Farm) -> None:
    with farm.db.write() as session:
        lone = session.scalars(select(Version).where(Version.version == "0.1")).one()
        job = Job(version_id=lone.id, target_id=1, status=JobStatus.failed, released_at=NOW,
                  reason="smoke_test_failed")  # fmt: skip
        add(session, job)
        error = "ImportError: libfoo.so.1: cannot open shared object file"
        failed = build(session, job, builder(session, "pi-3"), BuildStatus.failed, NOW,
                       failure_reason="smoke_test_failed", failure_detail=error)  # fmt: skip
    _, page = records(farm, "other", merged=True)
    cells = [(c.status, c.build_id, c.reason) for c in page.cells]
    assert cells == [("broken", failed.id, "smoke_test_failed")]
    assert page.files == ()  # kept out of the index
    with farm.db.read() as session:
        log_page = views.build_log_record(session, failed.id, "")
    assert log_page is not None and log_page.failure_detail == error


def test_project_page_matrix_files_and_apt_line(farm: Farm) -> None:
    _, page = records(farm, "demo", merged=True)
    assert page.versions == ("2.0", "1.0") and page.targets == (V6, V7)
    cells = {(c.version, c.target): c for c in page.cells}
    assert cells["1.0", V7].status == "built" and cells["1.0", V7].build_id == farm.built
    assert cells["1.0", V6].status == "queued" and cells["1.0", V6].build_id is None
    # 2.0 is building again: its cell links the last finished attempt, whose page exists.
    assert cells["2.0", V7].status == "building" and cells["2.0", V7].build_id == farm.failed
    assert [(f.filename, f.alias_of) for f in page.files] == [
        (f"demo-1.0-{V7}.whl", None),
        (f"demo-1.0-{V6}.whl", f"demo-1.0-{V7}.whl"),
    ]
    assert page.files[0].size == 1234 and page.files[0].sha256 == "a" * 64
    assert page.apt_packages == ("libfoo1",)


def test_many_records_match_one_at_a_time(farm: Farm) -> None:
    with farm.db.read() as session:
        batch = sorted(views.published_named(session, ["other", "demo"]))
        assert [p.name for p in batch] == ["demo", "other"]
        many = views.many_project_records(
            session, batch, views.enabled_targets(session), merged=True, tracks=lambda n: f"https://up/{n}/"
        )
    assert many == [records(farm, "demo", merged=True), records(farm, "other", merged=True)]


def test_build_log_record_has_the_environment_and_failure(farm: Farm) -> None:
    with farm.db.read() as session:
        good = views.build_log_record(session, farm.built, "log <text>")  # type: ignore[attr-defined]
        bad = views.build_log_record(session, farm.failed, "")  # type: ignore[attr-defined]
        assert views.build_log_record(session, 10_000, "") is None
    assert good is not None and bad is not None
    assert dict(good.environment) == ENVIRONMENT
    assert good.files == (f"demo-1.0-{V6}.whl", f"demo-1.0-{V7}.whl")
    assert (good.builder, good.status, good.log_text) == ("pi-1", "success", "log <text>")
    assert (bad.failure_reason, bad.failure_detail) == ("missing-header", "foo.h: <No such file>")


def test_stats_cover_the_last_90_days(farm: Farm) -> None:
    with farm.db.read() as session:
        stats = views.stats(session, now=NOW + timedelta(hours=1))
    yesterday, today = date(2024, 5, 31), date(2024, 6, 1)
    assert stats.builds_per_day == ((yesterday, 0, 1), (today, 1, 0))  # the 200-day-old build is out
    assert stats.builds_per_builder_per_day == {"pi-1": ((today, 1),), "pi-2": ((yesterday, 1),)}
    assert stats.outcomes == {"success": 1, "failed": 1}
    assert stats.failure_reasons == {"missing-header": 1}


def test_stats_sum_quiet_builders(db: Database) -> None:
    with db.write() as session:
        target = TargetRow(tag=V7, python_version="3.11", platform="linux_armv7l")
        package = Package(name="p", display_name="p")
        add(session, target, package)
        version = Version(package_id=package.id, version="1", canonical="1")
        add(session, version)
        job = Job(version_id=version.id, target_id=target.id, released_at=NOW)
        add(session, job)
        for number in range(views.STATS_BUILDERS + 2):
            who = builder(session, f"b{number}")
            for _ in range(number + 1):
                build(session, job, who, BuildStatus.success, NOW - timedelta(seconds=1))
    with db.read() as session:
        series = views.stats(session, now=NOW).builds_per_builder_per_day
    assert next(iter(series)) == f"b{views.STATS_BUILDERS + 1}"  # the busiest first
    assert "b0" not in series and series["2 other builders"] == ((date(2024, 6, 1), 3),)


def test_stats_count_rescues_per_remedy_smoke_rejections_and_who_downloads(db: Database) -> None:
    with db.write() as session:
        target = TargetRow(tag=V7, python_version="3.11", platform="linux_armv7l")
        package = Package(name="p", display_name="p")
        add(session, target, package)
        who = builder(session, "pi-1")
        for number, (remedy, status, reason) in enumerate(
            [
                ("numpy", BuildStatus.success, None),
                ("numpy", BuildStatus.success, None),
                ("cython", BuildStatus.success, None),
                ("cython", BuildStatus.failed, "compiler_error"),  # not rescued
                (None, BuildStatus.success, None),  # no remedy needed
                (None, BuildStatus.failed, "smoke_test_failed"),
            ]
        ):
            version = Version(package_id=package.id, version=str(number), canonical=str(number))
            add(session, version)
            job = Job(version_id=version.id, target_id=target.id, released_at=NOW, remedy=remedy)
            add(session, job)
            build(session, job, who, status, NOW - timedelta(hours=1), failure_reason=reason)
        today = NOW.date()
        columns = ("installer", "installer_version", "python", "system", "distro", "downloads")
        for values in [
            ("pip", "24.0", "3.11", "Linux", "Raspbian GNU/Linux 12", 7),
            ("uv", "0.5.1", "3.11", "Linux", "Debian GNU/Linux 12", 3),
            ("pip", "24.0", "3.9", "Linux", "Raspbian GNU/Linux 12", 2),
            ("curl", "", "", "", "", 1),
        ]:
            add(session, ClientDownloads(day=today, **dict(zip(columns, values, strict=True))))
    with db.read() as session:
        stats = views.stats(session, now=NOW)
    assert stats.remedies_rescued == {"numpy provided to the build": 2, "cython provided to the build": 1}
    assert stats.smoke_test_rejected == 1
    assert stats.downloads_by_installer == {"pip 24.0": 9, "uv 0.5.1": 3, "curl": 1}
    assert stats.downloads_by_python == {"3.11": 10, "3.9": 2, "unknown": 1}
    assert stats.downloads_by_system == {"Raspbian GNU/Linux 12": 9, "Debian GNU/Linux 12": 3, "unknown": 1}


def test_recent_builds_and_finished_build_pages(farm: Farm) -> None:
    with farm.db.read() as session:
        recent = views.recent_builds(session)
        finished = views.finished_builds(session)
    assert len(finished) == 3 and finished == sorted(finished)  # the running build has no page yet
    assert [b.status for b in recent] == ["running", "failed", "success", "failed"]
