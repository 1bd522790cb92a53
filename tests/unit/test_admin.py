"""Admin actions on SQLite and PostgreSQL: skip, unskip, rebuild, yank, remove, import and audit."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from wheelmill.admin import actions
from wheelmill.admin.audit import audit
from wheelmill.admin.importing import import_wheel
from wheelmill.config import Settings
from wheelmill.db import builders as builder_sql
from wheelmill.db import catalog, pending
from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import FeedFile, File, Job, JobStatus, Package, Source, TargetRow, Version
from wheelmill.errors import AuthError, InvalidName, NotFound, UploadRefused
from wheelmill.master.context import Master
from wheelmill.planner import plan_versions
from wheelmill.targets import Target
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import make_wheel

X86 = "cp311-cp311-linux_x86_64"
ARM = "cp311-cp311-linux_armv7l"


@pytest.fixture
def master(db: Database, tmp_path: Path) -> Master:
    settings = Settings(data_dir=tmp_path / "data", database_url=str(db.url), targets=[X86, ARM])
    with db.write() as session:
        target_ids = queue_sql.ensure_targets(session, [Target.parse(X86), Target.parse(ARM)])
    return Master.create(settings, db, target_ids)


def add_version(master: Master, name: str, version: str) -> None:
    with master.db.write() as session:
        package = catalog.ensure_package(session, name)
        row, _ = catalog.ensure_version(session, package, version, datetime(2024, 1, 1, tzinfo=UTC))
        session.add(
            Source(
                version_id=row.id,
                filename=f"{name}-{version}.tar.gz",
                url="http://x/",
                sha256="0" * 64,
                size=1,
            )
        )
        session.flush()
        plan_versions(session, [row.id], master.target_ids, skip_yanked=False)


def jobs(master: Master, name: str = "demo") -> dict[tuple[str, str], tuple[str, str | None]]:
    """(version, target) -> (status, reason)."""
    with master.db.read() as session:
        rows = session.execute(
            select(Version.version, TargetRow.tag, Job.status, Job.reason)
            .join(Job, Job.version_id == Version.id)
            .join(TargetRow, TargetRow.id == Job.target_id)
            .join(Package, Package.id == Version.package_id)
            .where(Package.name == name)
        ).all()
    return {(version, tag): (str(status), reason) for version, tag, status, reason in rows}


def wheel_file(tmp_path: Path, version: str, tag: str = "py3-none-any", name: str = "demo") -> Path:
    built = make_wheel(CoreMetadata(name=name, version=version), tag)
    path = tmp_path / built.filename
    path.write_bytes(built.content)
    return path


def test_skip_and_unskip_a_package_replans_its_jobs(master: Master) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "demo", "2.0")
    for _ in range(2):  # idempotent
        actions.skip(master, "demo", "needs CUDA")
    reason = "package skipped by an admin: needs CUDA"
    assert set(jobs(master).values()) == {("skipped", reason)}
    with master.db.read() as session:
        assert pending.take(session).projects == {"demo"}

    result = actions.unskip(master, "Demo")
    assert result.messages == ("unskipped demo: 4 jobs queued",)
    assert set(jobs(master).values()) == {("queued", None)}


def test_skip_one_version_on_one_target(master: Master) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "demo", "2.0")
    actions.skip(master, "demo==1.0", "crashes the compiler", target=ARM)
    skipped = ("skipped", f"skipped on {ARM} by an admin: crashes the compiler")
    assert jobs(master)[("1.0", ARM)] == skipped
    assert jobs(master)[("1.0", X86)] == ("queued", None)
    assert jobs(master)[("2.0", ARM)] == ("queued", None)
    with master.db.write() as session:  # a replan (the follower saw a new file, say) keeps the skip
        plan_versions(
            session, [v.id for v in session.scalars(select(Version))], master.target_ids, skip_yanked=False
        )
    assert jobs(master)[("1.0", ARM)] == skipped
    actions.unskip(master, "demo==1.0", target=ARM)
    assert jobs(master)[("1.0", ARM)] == ("queued", None)


def test_a_package_skipped_on_one_target_stays_skipped_there_for_new_versions(master: Master) -> None:
    add_version(master, "demo", "1.0")
    actions.skip(master, "demo", "needs NEON", target=ARM)
    actions.skip(master, "demo", "needs NEON intrinsics", target=ARM)  # a new reason replaces the old

    add_version(master, "demo", "2.0")

    skipped = ("skipped", f"skipped on {ARM} by an admin: needs NEON intrinsics")
    assert jobs(master) == {
        ("1.0", ARM): skipped,
        ("2.0", ARM): skipped,
        ("1.0", X86): ("queued", None),
        ("2.0", X86): ("queued", None),
    }
    actions.unskip(master, "demo")  # without a target: every skip of the package, on any target
    add_version(master, "demo", "3.0")
    assert {status for status, _ in jobs(master).values()} == {"queued"}


def test_skip_needs_a_reason_and_a_known_package(master: Master) -> None:
    add_version(master, "demo", "1.0")
    with pytest.raises(InvalidName, match="needs a reason"):
        actions.skip(master, "demo", "  ")
    with pytest.raises(NotFound, match="no package 'nothing'"):
        actions.skip(master, "nothing", "x")
    with pytest.raises(NotFound, match=r"no version '9\.0' of 'demo'"):
        actions.rebuild(master, "demo==9.0")


def test_rebuild_requeues_built_and_failed_jobs_first_in_line(master: Master) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "other", "1.0")
    with master.db.write() as session:
        for job in session.scalars(select(Job)):
            job.status = JobStatus.built
    result = actions.rebuild(master, "demo==1.0", target=X86)
    assert result.changed == 1
    assert jobs(master)[("1.0", X86)][0] == "queued"
    with master.db.write() as session:
        builder_sql.create_token(session, "b1")
        builder = builder_sql.get_builder(session, "b1")
        session.flush()
        claim = queue_sql.claim(session, master.target_ids[X86], builder.id, 60)
    assert claim is not None and claim.package == "demo"
    assert actions.rebuild(master, "demo==1.0", target=X86).changed == 0  # it is leased now: left alone


def test_rebuild_leaves_a_job_awaiting_its_sdists_details_to_the_follower(master: Master) -> None:
    """A version the changelog announced but whose sdist URL and hash are not known yet cannot build:
    a rebuild must not queue it, or every claim on the target would trip over it."""
    with master.db.write() as session:
        package = catalog.ensure_package(session, "demo")
        row, _ = catalog.ensure_version(session, package, "1.0", datetime(2024, 1, 1, tzinfo=UTC))
        session.add(FeedFile(version_id=row.id, filename="demo-1.0.tar.gz", sdist=True))
        session.flush()
        plan_versions(session, [row.id], master.target_ids, skip_yanked=False)
    assert jobs(master)[("1.0", X86)] == ("waiting", "awaiting upstream file details")

    assert actions.rebuild(master, "demo==1.0").changed == 0

    assert jobs(master)[("1.0", X86)] == ("waiting", "awaiting upstream file details")
    with master.db.write() as session:
        builder_sql.create_token(session, "b1")
        builder = builder_sql.get_builder(session, "b1")
        session.flush()
        assert queue_sql.claim(session, master.target_ids[X86], builder.id, 60) is None


def test_yank_and_unyank(master: Master) -> None:
    add_version(master, "demo", "1.0")
    assert actions.yank(master, "demo==1.0", "broken on ARM").changed == 1
    assert actions.yank(master, "demo==1.0", "broken on ARM").messages == ("yanked demo 1.0 (already)",)
    with master.db.read() as session:
        assert session.execute(select(Version.yanked, Version.yanked_reason)).one() == (True, "broken on ARM")
    actions.unyank(master, "demo==1.0")
    with master.db.read() as session:
        assert session.execute(select(Version.yanked, Version.yanked_reason)).one() == (False, None)
    with pytest.raises(InvalidName, match="NAME==VERSION"):
        actions.yank(master, "demo")


def test_import_publishes_a_checked_wheel_and_covers_other_targets(master: Master, tmp_path: Path) -> None:
    add_version(master, "demo", "1.0")
    wheel = wheel_file(tmp_path, "1.0")
    result = import_wheel(master, wheel, log_text="built by hand on a Pi\n")
    assert result.messages == (f"imported {wheel.name} for {X86}",)
    assert master.files.path("demo", wheel.name).read_bytes() == wheel.read_bytes()
    assert wheel.exists()  # the operator's copy stays
    assert jobs(master) == {
        ("1.0", X86): ("built", "imported by an admin"),
        ("1.0", ARM): ("covered", f"covered by {wheel.name}"),
    }
    with master.db.read() as session:
        build_id = session.scalar(select(File.build_id))
    assert build_id is not None and "by hand" in master.logs.read_text(build_id)
    assert import_wheel(master, wheel).messages == (f"{wheel.name} is already published",)


def test_import_refuses_what_an_upload_would(master: Master, tmp_path: Path) -> None:
    add_version(master, "demo", "1.0")
    with pytest.raises(NotFound, match=r"no version '2\.0'"):
        import_wheel(master, wheel_file(tmp_path, "2.0"))
    with pytest.raises(UploadRefused, match="can install"):
        import_wheel(master, wheel_file(tmp_path, "1.0", tag="cp312-cp312-win_amd64"))
    tampered = wheel_file(tmp_path, "1.0")
    tampered.write_bytes(tampered.read_bytes()[:-40])
    with pytest.raises(UploadRefused, match="zip"):
        import_wheel(master, tampered)
    assert not (master.settings.resolved_output_dir / "files" / "demo").exists() or not any(
        p.suffix == ".whl" for p in (master.settings.resolved_output_dir / "files" / "demo").iterdir()
    )


def test_remove_a_version_deletes_its_wheels_and_cancels_its_jobs(master: Master, tmp_path: Path) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "demo", "2.0")
    wheel = wheel_file(tmp_path, "1.0")
    import_wheel(master, wheel)
    result = actions.remove(master, "demo==1.0", "licence problem")
    assert result.messages == ("removed demo 1.0: 1 files deleted",)
    assert not master.files.exists("demo", wheel.name)
    assert jobs(master)[("1.0", ARM)] == ("covered", f"covered by {wheel.name}")  # closed jobs keep history
    assert jobs(master)[("2.0", X86)] == ("queued", None)
    with master.db.read() as session:
        assert session.scalar(select(File.id)) is None
        assert session.scalar(select(Version.skip_reason).where(Version.version == "1.0")) == (
            "removed by an admin: licence problem"
        )
    assert actions.remove(master, "demo==1.0", "licence problem").changed == 0


def test_audit_finds_missing_extra_and_damaged_files_and_fix_removes_extras(
    master: Master, tmp_path: Path
) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "demo", "2.0")
    first, second = wheel_file(tmp_path, "1.0"), wheel_file(tmp_path, "2.0")
    import_wheel(master, first)
    import_wheel(master, second)
    master.files.path("demo", first.name).unlink()
    master.files.path("demo", second.name).write_bytes(b"not the wheel")
    extra = master.files.path("demo", "demo-0.1-py3-none-any.whl")
    extra.write_bytes(b"left over")
    os.utime(extra, (0, 0))  # long ago: not a wheel whose build is completing right now

    found = audit(master)
    assert found.missing == [f"demo/{first.name}"]
    assert found.mismatched == [f"demo/{second.name}"]
    assert found.extra == ["demo/demo-0.1-py3-none-any.whl"]
    assert found.stale_pages == ["demo"]  # nothing was published in this test
    assert found.rebuild == {"demo==1.0", "demo==2.0"}

    audit(master, fix=True)
    assert not extra.exists()
    assert audit(master).extra == []
    with master.db.read() as session:
        assert "demo" in pending.take(session).projects


def test_add_follows_a_package_and_puts_a_known_version_first_in_line(master: Master) -> None:
    add_version(master, "demo", "1.0")
    add_version(master, "demo", "2.0")

    assert actions.add(master, "Demo").messages == ("watching demo",)
    assert actions.add(master, "demo").messages == ("watching demo (already)",)
    first = actions.add(master, "demo==1.0")
    assert first.messages[-1] == "2 open jobs of demo 1.0 moved to the front"  # one per target
    with master.db.write() as session:
        builder_sql.create_token(session, "pi-1")
        builder = builder_sql.get_builder(session, "pi-1")
        claimed = queue_sql.claim(session, master.target_ids[X86], builder.id, 60)
    assert claimed is not None and claimed.version == "1.0"  # ahead of the newer 2.0
    unknown = actions.add(master, "demo==9.9")
    assert unknown.changed == 0 and "9.9 is not known yet" in unknown.messages[-1]
    with pytest.raises(InvalidName):
        actions.add(master, "not a name!")


def test_a_revoked_token_no_longer_authenticates(master: Master) -> None:
    with master.db.write() as session:
        token = builder_sql.create_token(session, "pi-1")
    with master.db.read() as session:
        assert builder_sql.authenticate(session, token).name == "pi-1"
    with master.db.write() as session:
        builder_sql.revoke_token(session, "pi-1")
    with master.db.read() as session, pytest.raises(AuthError):
        builder_sql.authenticate(session, token)
    with master.db.write() as session:  # a new token brings the builder back
        fresh = builder_sql.create_token(session, "pi-1")
    with master.db.read() as session:
        assert builder_sql.authenticate(session, fresh).name == "pi-1"
