"""What the follower learns from upstream, as plain values the database layer records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)


@dataclass(frozen=True)
class UpstreamFile:
    """One release file upstream lists for a project."""

    filename: str
    url: str
    sha256: str
    size: int
    requires_python: str | None
    upload_time: datetime | None
    yanked: bool
    yanked_reason: str | None
    core_metadata_sha256: str | None

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith((".tar.gz", ".zip"))

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def canonical_version(self) -> str | None:
        """The version the filename names, canonicalised; None for files we cannot parse (eggs, exe)."""
        try:
            if self.is_wheel:
                return canonicalize_version(parse_wheel_filename(self.filename)[1])
            if self.is_sdist:
                return canonicalize_version(parse_sdist_filename(self.filename)[1])
        except (InvalidWheelFilename, InvalidSdistFilename):
            return None
        return None


@dataclass(frozen=True)
class ProjectSnapshot:
    """A project as one PEP 691 page shows it, at ``last_serial``."""

    name: str  # the spelling upstream uses
    versions: tuple[str, ...]  # PEP 700, upstream spellings
    files: tuple[UpstreamFile, ...]
    last_serial: int
    summary: str | None = None
    description: str | None = None
