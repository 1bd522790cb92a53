"""``wheelmill audit``: the database, the wheels on disk and the simple pages, checked against each other.

It finds files the database lists that are missing or whose bytes do not match their sha256,
files on disk nobody lists, and simple pages that are missing, stale (a listed file absent from
the page) or left over from a package no longer published. ``fix`` deletes the unlisted files and
marks the affected projects for the publisher, which rewrites or removes their pages; missing and
damaged wheels are reported with the command that rebuilds them.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import is_normalized_name

from wheelmill.admin.importing import sha256_of
from wheelmill.db import admin as admin_sql
from wheelmill.db import pending, views
from wheelmill.master.context import Master
from wheelmill.publish.writer import TEMP_PREFIX

# A completing build stores its wheel a moment before the database lists it: a file younger
# than this may be one of those, and deleting it would lose a wheel about to be listed.
GRACE_SECONDS = 600


@dataclass
class Findings:
    missing: list[str] = field(default_factory=list)  # listed, not on disk: "package/file"
    mismatched: list[str] = field(default_factory=list)  # on disk with other bytes than listed
    extra: list[str] = field(default_factory=list)  # on disk, listed nowhere
    stale_pages: list[str] = field(default_factory=list)  # project whose page lacks a listed file
    extra_pages: list[str] = field(default_factory=list)  # pages of a project not published
    rebuild: set[str] = field(default_factory=set)  # NAME==VERSION specs to rebuild

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched or self.extra or self.stale_pages or self.extra_pages)


def audit(master: Master, *, fix: bool = False) -> Findings:
    """Compare everything; with ``fix``, repair what can be repaired without a build."""
    output = master.settings.resolved_output_dir
    files_root, simple_root = output / "files", output / "simple"
    findings = Findings()
    listed: dict[str, dict[str, str]] = defaultdict(dict)  # package -> filename -> sha256
    pages: dict[str, set[str]] = {}  # package -> filenames its simple page lists
    with master.db.read() as session:
        for row in admin_sql.published_files(session):
            listed[row.package][row.filename] = row.sha256
            _check_file(files_root / row.package / row.filename, row, findings)
            if row.package not in pages:
                pages[row.package] = _page_files(simple_root / row.package)
            if not row.version_removed and row.filename not in pages[row.package]:
                findings.stale_pages.append(row.package)
        published = set(views.package_names(session))
    findings.stale_pages = sorted(set(findings.stale_pages))
    extras = _unlisted(files_root, listed)
    findings.extra = [str(path.relative_to(files_root)) for path in extras]
    findings.extra_pages = sorted(entry.name for entry in _dirs(simple_root) if entry.name not in published)
    if fix:
        _fix(master, extras, findings)
    return findings


def _check_file(path: Path, row: admin_sql.ListedFile, findings: Findings) -> None:
    where = f"{row.package}/{row.filename}"
    if not path.is_file():
        findings.missing.append(where)
    elif sha256_of(path) != row.sha256:
        findings.mismatched.append(where)
    else:
        return
    findings.rebuild.add(f"{row.package}=={row.version}")


def _page_files(page_dir: Path) -> set[str]:
    try:
        document = json.loads((page_dir / "index.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return set()
    return {entry.get("filename", "") for entry in document.get("files", [])}


def _unlisted(files_root: Path, listed: dict[str, dict[str, str]]) -> list[Path]:
    """Wheels and metadata files on disk that no files row of a published package names."""
    found = []
    for directory in _dirs(files_root):
        names = listed.get(directory.name, {})
        for path in sorted(directory.iterdir()):
            wheel = path.name.removesuffix(".metadata")
            if path.is_file() and not path.name.startswith(TEMP_PREFIX) and wheel not in names:
                found.append(path)
    return found


def _fix(master: Master, extras: list[Path], findings: Findings) -> None:
    cutoff = time.time() - GRACE_SECONDS
    for path in extras:
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
    # Only canonical names can be pages the publisher wrote; anything else is reported, not touched.
    projects = [name for name in findings.stale_pages + findings.extra_pages if is_normalized_name(name)]
    with master.db.write() as session:
        pending.mark(session, projects=projects)
    master.dirty.wakeup.set()


def _dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
