"""The database tables. Only ``wheelmill.db`` reads and writes them.

Times are stored as timezone-aware UTC. States are string enums so rows read well in psql.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JobStatus(enum.StrEnum):
    queued = "queued"  # open: a builder may claim it
    waiting = "waiting"  # open, but not before not_before (a retry); the reaper requeues it
    leased = "leased"  # a builder holds a lease on it
    built = "built"  # a build succeeded
    failed = "failed"  # final failure
    covered = "covered"  # a wheel for another target (or upstream's) serves this one
    skipped = "skipped"  # not built, for skip_reason
    cancelled = "cancelled"  # the version went away upstream or an admin removed it


OPEN_JOB_STATES = (JobStatus.queued, JobStatus.waiting, JobStatus.leased)


class BuildStatus(enum.StrEnum):
    running = "running"
    success = "success"
    failed = "failed"
    lost = "lost"  # the lease expired: the builder vanished
    aborted = "aborted"  # cancelled by the master


class BuilderState(enum.StrEnum):
    active = "active"
    paused = "paused"  # keeps its lease, claims nothing new
    draining = "draining"  # finishes its build, then claims nothing
    killed = "killed"  # abort the build now
    revoked = "revoked"  # token no longer valid


def _enum(cls: type[enum.StrEnum]) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        length=16,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Package(Base):
    __tablename__ = "packages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # PEP 503 canonical
    display_name: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)  # an admin said: do not build
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_serial: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PackageAlias(Base):
    """Other spellings of a package's name seen upstream (``Demo_Pure`` for ``demo-pure``)."""

    __tablename__ = "package_aliases"
    alias: Mapped[str] = mapped_column(String(200), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), index=True)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("package_id", "canonical"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))  # upstream spelling, e.g. 1.0.0-beta
    canonical: Mapped[str] = mapped_column(String(100))  # PEP 440 canonical, e.g. 1.0b0
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text)
    # Who set the yank: "upstream" (the follower may change it) or "admin" (the follower leaves it).
    yanked_by: Mapped[str | None] = mapped_column(String(16))
    skip_reason: Mapped[str | None] = mapped_column(Text)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)


class Source(Base):
    """An upstream sdist of a version: what builders build from."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300), unique=True)
    url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    requires_python: Mapped[str | None] = mapped_column(String(200))
    upload_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)


class UpstreamWheel(Base):
    """A built file upstream has for a version: it may cover a target, and merged pages list it."""

    __tablename__ = "upstream_wheels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300), unique=True)
    url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    requires_python: Mapped[str | None] = mapped_column(String(200))
    upload_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    core_metadata_sha256: Mapped[str | None] = mapped_column(String(64))


class TargetRow(Base):
    __tablename__ = "targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), unique=True)  # cp311-cp311-linux_armv7l
    python_version: Mapped[str] = mapped_column(String(10))
    platform: Mapped[str] = mapped_column(String(100))
    cflags: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class TargetSkip(Base):
    """An admin's "do not build this on that target", kept so the planner remembers it: for new
    versions of the package (``version_id`` NULL) or for one version whatever replans it."""

    __tablename__ = "target_skips"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)


class Job(Base):
    """One version x one target. Open jobs form the queue."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("version_id", "target_id"),
        # The claim reads this index in order and stops at the first row: O(log n).
        Index(
            "ix_jobs_claim",
            "target_id",
            text("priority DESC"),
            text("released_at DESC"),
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_lease_expires",
            "lease_expires",
            postgresql_where=text("status = 'leased'"),
            sqlite_where=text("status = 'leased'"),
        ),
        Index(
            "ix_jobs_not_before",
            "not_before",
            postgresql_where=text("status = 'waiting'"),
            sqlite_where=text("status = 'waiting'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.queued)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # admins and bundles raise it
    released_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True)
    )  # copy of the version's, for ordering
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # builds started
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped / covered / cancelled / failed
    lease_id: Mapped[str | None] = mapped_column(String(36), unique=True)  # fencing token
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    builder_id: Mapped[int | None] = mapped_column(ForeignKey("builders.id", ondelete="SET NULL"))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remedy: Mapped[str | None] = mapped_column(Text)  # extra build requirement to provide on retry
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Builder(Base):
    __tablename__ = "builders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the token
    state: Mapped[BuilderState] = mapped_column(_enum(BuilderState), default=BuilderState.active)
    target: Mapped[str | None] = mapped_column(String(100))
    os: Mapped[str | None] = mapped_column(Text)
    cpu: Mapped[str | None] = mapped_column(Text)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    load: Mapped[float | None] = mapped_column(Float)
    phase: Mapped[str | None] = mapped_column(String(50))
    versions: Mapped[dict | None] = mapped_column(JSON)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Build(Base):
    """One attempt at a job."""

    __tablename__ = "builds"
    __table_args__ = (Index("ix_builds_finished_at", "finished_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    builder_id: Mapped[int | None] = mapped_column(ForeignKey("builders.id", ondelete="SET NULL"), index=True)
    lease_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[BuildStatus] = mapped_column(_enum(BuildStatus), default=BuildStatus.running)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Float)
    failure_reason: Mapped[str | None] = mapped_column(String(50))
    failure_detail: Mapped[str | None] = mapped_column(Text)
    environment: Mapped[dict | None] = mapped_column(JSON)
    log_size: Mapped[int | None] = mapped_column(BigInteger)


class File(Base):
    """A wheel the farm serves: built here, imported, or an alias of one (same bytes, other platform)."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"), index=True)
    filename: Mapped[str] = mapped_column(String(300), unique=True)
    target: Mapped[str] = mapped_column(String(100))  # the target whose job it completed
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    requires_python: Mapped[str | None] = mapped_column(String(200))
    metadata_sha256: Mapped[str | None] = mapped_column(String(64))
    alias_of: Mapped[int | None] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    apt_packages: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UpstreamState(Base):
    """Key/value progress of the follower: the last applied serial, per-project ETags."""

    __tablename__ = "upstream_state"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FeedFile(Base):
    """A file the changelog announced whose URL, sha256 and size are not recorded yet.

    The planner decides from these names alone (an sdist to build, wheel tags that cover a target);
    the row goes once the JSON API's details of the file are recorded in sources or upstream_wheels.
    """

    __tablename__ = "feed_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300), unique=True)
    sdist: Mapped[bool] = mapped_column(Boolean)


class DetailsOwed(Base):
    """A project whose JSON API answer the follower still owes: file details, requires-python, yank
    reasons. Drained newest release first, the order in which builders claim jobs."""

    __tablename__ = "details_owed"
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    spelling: Mapped[str] = mapped_column(String(200))  # as the feed last spelled it: the JSON API's URL
    newest: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # its newest release


class Watch(Base):
    """A package followed in watch mode."""

    __tablename__ = "watches"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # canonical
    etag: Mapped[str | None] = mapped_column(Text)
    last_serial: Mapped[int] = mapped_column(BigInteger, default=0)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PendingPage(Base):
    """A page the publisher must rewrite: an outbox shared by every master process.

    Marks are written after the change they describe has committed; the publisher (in whichever
    process holds its lock) deletes a mark only after rewriting the page, and only if it was not
    marked again meanwhile.
    """

    __tablename__ = "pending_pages"
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # project | log | site
    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # name, build id, or "" for site
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IngestedLog(Base):
    """How far ``wheelmill logs ingest`` has read an access log, so reading it again counts only new lines.

    A log is known by its first line, not its path: rotation renames and compresses it.
    """

    __tablename__ = "ingested_logs"
    first_line_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # where it was last read, for an operator
    bytes_read: Mapped[int] = mapped_column(BigInteger)  # uncompressed, whole lines only
    lines_read: Mapped[int] = mapped_column(BigInteger)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileDownloads(Base):
    """Successful downloads of one wheel on one UTC day: a rollup, never a row per request."""

    __tablename__ = "file_downloads"
    filename: Mapped[str] = mapped_column(String(300), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    # From the filename, not a join to files: counts outlive a removed file.
    package: Mapped[str] = mapped_column(String(200), index=True)
    downloads: Mapped[int] = mapped_column(BigInteger)


class ClientDownloads(Base):
    """Wheel downloads per UTC day by the kind of client, as its User-Agent describes it ("" = unsaid)."""

    __tablename__ = "client_downloads"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    installer: Mapped[str] = mapped_column(String(50), primary_key=True)  # pip, uv, curl
    installer_version: Mapped[str] = mapped_column(String(50), primary_key=True)
    python: Mapped[str] = mapped_column(String(10), primary_key=True)  # 3.11
    system: Mapped[str] = mapped_column(String(50), primary_key=True)  # Linux, Darwin, Windows
    distro: Mapped[str] = mapped_column(String(100), primary_key=True)  # Raspbian GNU/Linux 12
    downloads: Mapped[int] = mapped_column(BigInteger)
