"""``StandInUpstream``: a PyPI on 127.0.0.1 whose projects and history a test sets up in a few lines.

Every change appends the changelog entries PyPI's journal would (see shared/upstream-events.md), so
a follower reading the feed sees what it would see on PyPI.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from wheelmill.errors import NotFound
from wheelmill.testing.faults import Fault, FaultPlan
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.model import Project, Release, UpstreamConflict, UpstreamFile, UpstreamState
from wheelmill.testing.routes import Router
from wheelmill.testing.sdists import SdistKind, make_sdist
from wheelmill.testing.server import RequestRecord, UpstreamServer
from wheelmill.testing.wheels import make_wheel


class StandInUpstream:
    """The stand-in upstream index; ``with StandInUpstream() as up:`` serves it for the block."""

    def __init__(self, *, changelog_page_size: int = 50_000, port: int = 0) -> None:
        self._state = UpstreamState()
        self._used_filenames: set[str] = set()  # PyPI never lets a file name be used twice
        self._faults = FaultPlan()
        self.requests: list[RequestRecord] = []  # (method, path, headers) of every request served
        self._server = UpstreamServer(Router(self._state, changelog_page_size), self._faults, self.requests)
        self._server.port = port

    # -- serving ---------------------------------------------------------------------------------

    def start(self) -> StandInUpstream:
        """Serve on 127.0.0.1; after a stop(), on the same port again (an outage, then recovery)."""
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> StandInUpstream:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._server.port:
            raise RuntimeError("the stand-in upstream has no address until start()")
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    @property
    def serial(self) -> int:
        """The serial of the newest changelog entry."""
        with self._state.lock:
            return self._state.changelog.last_serial

    def fail_next(
        self, path_prefix: str, fault: Fault | str, times: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next ``times`` requests whose path starts with ``path_prefix`` with ``fault``.

        ``method`` narrows it, e.g. ``fail_next("/pypi", "xmlrpc-fault", method="POST")`` leaves the
        JSON API alone. A "stale" fault changes only answers that carry a serial.
        """
        self._faults.add(path_prefix, fault, times, method)

    # -- uploads ---------------------------------------------------------------------------------

    def add_release(
        self,
        name: str,
        version: str,
        kind: SdistKind | str | None = SdistKind.PURE,
        *,
        requires_python: str | None = None,
        dependencies: Iterable[str] = (),
        summary: str = "",
        description: str = "",
        upload_time: datetime | None = None,
    ) -> UpstreamFile | None:
        """Upload a new release with an sdist of ``kind`` (none if None); returns the sdist.

        ``name`` becomes the project's display name, used in later changelog entries, even when the
        project exists under another spelling: PyPI does that on upload. Other calls only look it up.
        """
        meta = CoreMetadata(name, version, summary, description, requires_python, tuple(dependencies))
        when = _utc(upload_time)
        with self._state.lock:
            project = self._project_for_upload(name, when)
            if Version(version) in project.releases:
                raise UpstreamConflict(f"{project.name} already has a release {version!r}")
            project.remember()
            release = project.releases[Version(version)] = Release(meta)
            self._event(project, version, "new release", when)
            return None if kind is None else self._store_sdist(project, release, kind, when)

    def add_sdist(
        self,
        name: str,
        version: str,
        kind: SdistKind | str = SdistKind.PURE,
        *,
        upload_time: datetime | None = None,
    ) -> UpstreamFile:
        """Upload an sdist to an existing release (PyPI allows one per release)."""
        when = _utc(upload_time)
        with self._state.lock:
            project, release = self._release(name, version)
            project.remember()
            return self._store_sdist(project, release, kind, when)

    def add_wheel(
        self, name: str, version: str, tag: str = "py3-none-any", *, upload_time: datetime | None = None
    ) -> UpstreamFile:
        """Upload a wheel built upstream, with compressed tag set ``tag``, to an existing release."""
        when = _utc(upload_time)
        with self._state.lock:
            project, release = self._release(name, version)
            wheel = make_wheel(dataclasses.replace(release.metadata, name=project.name), tag)
            file = UpstreamFile(
                wheel.filename,
                project.canonical_name,
                wheel.content,
                "bdist_wheel",
                wheel.python_tag,
                when,
                wheel.core_metadata,
            )
            project.remember()
            return self._store(project, release, file, f"add {wheel.python_tag} file {file.filename}")

    def add_wheel_file(self, path: Path, *, upload_time: datetime | None = None) -> UpstreamFile:
        """Upload a real wheel built elsewhere (setuptools, say), creating its project and release.

        Builds resolve their build dependencies from upstream; tests put those wheels here, taken
        from a local cache, so a test farm builds with no index but this one.
        """
        name, version, _, tags = parse_wheel_filename(path.name)
        content = path.read_bytes()
        with zipfile.ZipFile(path) as archive:
            entry = next(
                n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1
            )
            core_metadata = archive.read(entry)
        when = _utc(upload_time)
        with self._state.lock:
            project, release = self._release_for_upload(name, version, when)
            python_tag = next(iter(tags)).interpreter
            file = UpstreamFile(
                path.name, project.canonical_name, content, "bdist_wheel", python_tag, when, core_metadata
            )
            project.remember()
            return self._store(project, release, file, f"add {python_tag} file {file.filename}")

    def add_sdist_file(self, path: Path, *, upload_time: datetime | None = None) -> UpstreamFile:
        """Upload a real sdist made elsewhere (a project's, from PyPI), creating its project and release.

        Benchmarks build real projects this way, from a local cache, with no index but this one.
        """
        name, version = parse_sdist_filename(path.name)
        content = path.read_bytes()
        when = _utc(upload_time)
        with self._state.lock:
            project, release = self._release_for_upload(name, version, when)
            if any(each.packagetype == "sdist" for each in release.files.values()):
                raise UpstreamConflict(
                    f"{project.name} {release.version} already has an sdist: PyPI allows one"
                )
            file = UpstreamFile(path.name, project.canonical_name, content, "sdist", "source", when)
            project.remember()
            return self._store(project, release, file, f"add source file {file.filename}")

    # -- other changes ---------------------------------------------------------------------------

    def yank(self, name: str, version: str, reason: str = "") -> None:
        self._change_release(name, version, "yank release", yanked=True, yanked_reason=reason)

    def unyank(self, name: str, version: str) -> None:
        self._change_release(name, version, "unyank release", yanked=False, yanked_reason="")

    def quarantine_release(self, name: str, version: str) -> None:
        self._change_release(name, version, "release quarantined", quarantined=True)

    def clear_release_quarantine(self, name: str, version: str) -> None:
        self._change_release(name, version, "release quarantine cleared", quarantined=False)

    def quarantine_project(self, name: str) -> None:
        self._change_project(name, "project quarantined", quarantined=True)

    def clear_project_quarantine(self, name: str) -> None:
        self._change_project(name, "project quarantine cleared", quarantined=False)

    def remove_file(self, name: str, filename: str) -> None:
        with self._state.lock:
            project = self._project(name)
            release = next((r for r in project.releases.values() if filename in r.files), None)
            if release is None:
                raise NotFound(f"{project.name} has no file {filename!r}")
            project.remember()
            del release.files[filename]
            self._event(project, release.version, f"remove file {filename}")

    def remove_release(self, name: str, version: str) -> None:
        with self._state.lock:
            project, release = self._release(name, version)
            project.remember()
            del project.releases[release.parsed_version]
            self._event(project, release.version, "remove release")

    def remove_project(self, name: str) -> None:
        with self._state.lock:
            project = self._state.projects.pop(self._project(name).canonical_name)
            self._event(project, None, "remove project")

    def add_role(self, name: str, role: str, user: str) -> None:
        """An ownership change: a changelog entry and nothing else."""
        with self._state.lock:
            self._event(self._project(name), None, f"add {role} {user}")

    # -- the raw feed ----------------------------------------------------------------------------

    def record_event(self, name: str, version: str | None, action: str, timestamp: int | None = None) -> int:
        """Append one changelog entry as given (any timestamp, even earlier ones); returns its serial."""
        with self._state.lock:
            serial = self._state.changelog.append(name, version, _timestamp(timestamp), action)
            project = self._state.projects.get(canonicalize_name(name))
            if project is not None:
                project.last_serial = serial
            return serial

    def extend_changelog(self, entries: Iterable[tuple[str, str | None, int, str]]) -> int:
        """Append raw (name, version, timestamp, action) entries, projects untouched (for benchmarks)."""
        with self._state.lock:
            return self._state.changelog.extend(entries)

    def load_changelog(self, entries: Iterable[tuple[str, str | None, int, str]]) -> int:
        """Append raw entries and apply each to the projects as the change it names, with tiny
        placeholder files: a feed and a JSON API that agree at benchmark scale (a million entries in
        seconds; real uploads would build a million archives). Returns the last serial."""
        with self._state.lock:
            for name, version, timestamp, action in entries:
                serial = self._state.changelog.append(name, version, timestamp, action)
                self._load_one(name, version, timestamp, action, serial)
            return self._state.changelog.last_serial

    # -- helpers ---------------------------------------------------------------------------------

    def _event(
        self, project: Project, version: str | None, action: str, when: datetime | None = None
    ) -> None:
        serial = self._state.changelog.append(project.name, version, _timestamp(when), action)
        project.last_serial = serial

    def _project(self, name: str) -> Project:
        project = self._state.projects.get(canonicalize_name(name))
        if project is None:
            raise NotFound(f"the stand-in upstream has no project {name!r}")
        return project

    def _release(self, name: str, version: str) -> tuple[Project, Release]:
        project = self._project(name)
        release = project.releases.get(Version(version))
        if release is None:
            raise NotFound(f"{project.name} has no release {version!r}")
        return project, release

    def _release_for_upload(self, name: str, version: Version, when: datetime) -> tuple[Project, Release]:
        """The project and release a file built elsewhere belongs to, created as an upload would."""
        project = self._project_for_upload(
            self._state.projects[name].name if name in self._state.projects else name, when
        )
        release = project.releases.get(version)
        if release is None:
            release = project.releases[version] = Release(CoreMetadata(project.name, str(version)))
            self._event(project, str(version), "new release", when)
        return project, release

    def _project_for_upload(self, name: str, when: datetime) -> Project:
        key = canonicalize_name(name, validate=True)
        project = self._state.projects.get(key)
        if project is None:
            project = self._state.projects[key] = Project(name)
            self._event(project, None, "create", when)
        # PyPI takes the uploader's spelling of an equivalent name as the project's name from now on.
        project.name = name
        return project

    def _store_sdist(
        self, project: Project, release: Release, kind: SdistKind | str, when: datetime
    ) -> UpstreamFile:
        if any(each.packagetype == "sdist" for each in release.files.values()):
            raise UpstreamConflict(f"{project.name} {release.version} already has an sdist: PyPI allows one")
        filename, content = make_sdist(dataclasses.replace(release.metadata, name=project.name), kind)
        file = UpstreamFile(filename, project.canonical_name, content, "sdist", "source", when)
        return self._store(project, release, file, f"add source file {filename}")

    def _store(self, project: Project, release: Release, file: UpstreamFile, action: str) -> UpstreamFile:
        if file.filename in self._used_filenames:
            raise UpstreamConflict(f"file name {file.filename!r} was used before: PyPI never reuses one")
        self._used_filenames.add(file.filename)
        release.files[file.filename] = file
        self._event(project, release.version, action, file.upload_time)
        return file

    def _change_release(self, name: str, version: str, action: str, **changes: object) -> None:
        with self._state.lock:
            project, release = self._release(name, version)
            project.remember()
            for field, value in changes.items():
                setattr(release, field, value)
            self._event(project, release.version, action)

    def _load_one(self, name: str, version: str | None, timestamp: int, action: str, serial: int) -> None:
        key = canonicalize_name(name)
        projects = self._state.projects
        if action == "remove project":
            projects.pop(key, None)
            return
        if action == "create":
            projects.setdefault(key, Project(name)).name = name
        project = projects.get(key)
        if project is None:
            return
        project.last_serial = serial
        if action in ("project quarantined", "project quarantine cleared"):
            project.quarantined = action == "project quarantined"
        if version is None:
            return
        release = project.releases.get(Version(version))
        words = action.split(" ")
        if action == "new release" or (release is None and words[0] == "add"):
            release = project.releases[Version(version)] = Release(CoreMetadata(project.name, version))
        if release is None:
            return
        if len(words) == 4 and words[0] == "add" and words[2] == "file":
            packagetype = "sdist" if words[1] == "source" else "bdist_wheel"
            uploaded = datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)
            file = UpstreamFile(words[3], key, words[3].encode(), packagetype, words[1], uploaded)
            release.files[file.filename] = file
            self._used_filenames.add(file.filename)
        elif words[:2] == ["remove", "file"]:
            release.files.pop(words[-1], None)
        elif action == "remove release":
            del project.releases[release.parsed_version]
        elif action in ("yank release", "unyank release"):
            release.yanked = action == "yank release"
        elif action in ("release quarantined", "release quarantine cleared"):
            release.quarantined = action == "release quarantined"

    def _change_project(self, name: str, action: str, **changes: object) -> None:
        with self._state.lock:
            project = self._project(name)
            project.remember()
            for field, value in changes.items():
                setattr(project, field, value)
            self._event(project, None, action)


def _utc(moment: datetime | None) -> datetime:
    """A naive UTC datetime, as PyPI stores upload times; a naive input is taken as UTC already."""
    if moment is None:
        return datetime.now(UTC).replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _timestamp(moment: datetime | int | None) -> int:
    if moment is None:
        return int(datetime.now(UTC).timestamp())
    if isinstance(moment, int):
        return moment
    return int(moment.replace(tzinfo=UTC).timestamp())
