"""What the stand-in upstream holds: projects, their releases and files, and what the public sees."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelmill.errors import WheelmillError
from wheelmill.testing.changelog import Changelog
from wheelmill.testing.metadata import CoreMetadata


class UpstreamConflict(WheelmillError):
    """PyPI would refuse this change to the stand-in upstream."""


@dataclass(frozen=True)
class UpstreamFile:
    """One uploaded file (an sdist or a wheel) of a release."""

    filename: str
    project: NormalizedName
    content: bytes = field(repr=False)
    packagetype: str  # "sdist" or "bdist_wheel", as PyPI's JSON API says
    python_version: str  # "source" for an sdist, the wheel's python tag otherwise
    upload_time: datetime  # UTC, naive, as PyPI stores it
    core_metadata: bytes | None = field(default=None, repr=False)  # PEP 658, wheels only

    @property
    def path(self) -> str:
        """The file's URL path on the stand-in (join it to ``StandInUpstream.url``)."""
        return f"/files/{self.project}/{self.filename}"

    @property
    def size(self) -> int:
        return len(self.content)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @cached_property
    def md5(self) -> str:
        return hashlib.md5(self.content, usedforsecurity=False).hexdigest()

    @cached_property
    def blake2b_256(self) -> str:
        return hashlib.blake2b(self.content, digest_size=32).hexdigest()

    @cached_property
    def core_metadata_sha256(self) -> str | None:
        return None if self.core_metadata is None else hashlib.sha256(self.core_metadata).hexdigest()


@dataclass
class Release:
    """One version of a project; PyPI keys it by PEP 440 equality but shows the uploaded spelling."""

    metadata: CoreMetadata
    files: dict[str, UpstreamFile] = field(default_factory=dict)
    yanked: bool = False
    yanked_reason: str = ""
    quarantined: bool = False

    @property
    def version(self) -> str:
        return self.metadata.version

    @cached_property
    def parsed_version(self) -> Version:
        return Version(self.metadata.version)

    def sorted_files(self) -> list[UpstreamFile]:
        return [self.files[name] for name in sorted(self.files)]


@dataclass
class Project:
    """A project: its display name is the spelling of the latest upload, as on PyPI."""

    name: str
    releases: dict[Version, Release] = field(default_factory=dict)
    quarantined: bool = False
    last_serial: int = 0  # serial of the newest changelog entry for this project
    previous: Project | None = field(default=None, repr=False)  # the state before the last change

    @property
    def canonical_name(self) -> NormalizedName:
        return canonicalize_name(self.name)

    def remember(self) -> None:
        """Keep a copy of the current state: a stale cache serves it after the next change."""
        releases = {
            key: dataclasses.replace(release, files=dict(release.files))
            for key, release in self.releases.items()
        }
        self.previous = dataclasses.replace(self, releases=releases, previous=None)

    def visible_releases(self) -> list[Release]:
        """Releases the public sees, oldest version first."""
        if self.quarantined:
            return []
        shown = [release for release in self.releases.values() if not release.quarantined]
        return sorted(shown, key=lambda release: release.parsed_version)

    def latest(self) -> Release | None:
        """The release PyPI's JSON API describes: newest final, else newest pre-release, yanked last."""
        candidates = self.visible_releases()
        unyanked = [release for release in candidates if not release.yanked]
        finals = [release for release in unyanked if not release.parsed_version.is_prerelease]
        for choice in (finals, unyanked, candidates):
            if choice:
                return choice[-1]
        return None

    def visible_file(self, filename: str) -> UpstreamFile | None:
        for release in self.visible_releases():
            if filename in release.files:
                return release.files[filename]
        return None


@dataclass
class UpstreamState:
    """Everything the stand-in serves; the HTTP threads read it under ``lock`` while a test changes it."""

    projects: dict[NormalizedName, Project] = field(default_factory=dict)
    changelog: Changelog = field(default_factory=Changelog)
    lock: threading.RLock = field(default_factory=threading.RLock)
