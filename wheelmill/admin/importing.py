"""``wheelmill import``: publish wheels built elsewhere, checked exactly as builder uploads are.

A wheel is accepted only for a version the farm knows and a configured target that can install
it; the checks are the upload's (``wheelmill.wheels``), so an imported wheel is as trustworthy
as a built one. The file is stored before the database lists it, as completion does.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from wheelmill.admin.actions import Result
from wheelmill.db import admin as admin_sql
from wheelmill.db import pending
from wheelmill.db.jobs import cover_other_targets
from wheelmill.errors import UploadRefused
from wheelmill.master.context import Master
from wheelmill.publish.writer import TEMP_PREFIX
from wheelmill.targets import Target
from wheelmill.wheels import WheelInfo, check_filename, check_matches_job, check_size, covers, inspect_wheel

log = logging.getLogger(__name__)


def import_wheel(master: Master, path: Path, log_text: str | None = None) -> Result:
    """Validate and publish one wheel; importing the same file again changes nothing."""
    filename = path.name
    name, version, _, _ = check_filename(filename)
    size = path.stat().st_size
    check_size(size, master.settings.max_upload_bytes)
    info = inspect_wheel(path, filename)
    sha256 = sha256_of(path)
    with master.db.read() as session:
        selected = admin_sql.select_versions(session, name, str(version))
        package, release = selected.package.name, selected.versions[0]
        existing = admin_sql.existing_sha256(session, filename)
    target = _target_for(master, info)
    check_matches_job(info, package, release.version, target)
    if existing == sha256:
        return Result((f"{filename} is already published",), 0)
    if existing is not None:
        raise UploadRefused(
            f"{filename!r} is published with another sha256 ({existing!r}); remove that version first",
            reason="conflict",
        )
    metadata_sha256 = master.files.store(
        package, filename, _copy_beside(master, package, path), info.metadata
    )
    imported = admin_sql.ImportedFile(
        filename, str(target), sha256, size, info.requires_python, metadata_sha256
    )
    log_gzip = gzip.compress(log_text.encode()) if log_text is not None else None
    with master.db.write() as session:
        tid = master.target_ids[str(target)]
        build_id = admin_sql.record_import(
            session, release, tid, imported, len(log_gzip) if log_gzip is not None else None
        )
        _cover_others(master, session, release.id, tid, info)
        if build_id is not None and log_gzip is not None:
            master.logs.save(build_id, log_gzip)
        pending.mark(session, projects=[package], logs=[build_id] if build_id is not None else [])
    master.dirty.wakeup.set()
    log.info("imported %s for %s", filename, target)
    return Result((f"imported {filename} for {target}",), 1)


def _target_for(master: Master, info: WheelInfo) -> Target:
    """The first configured target that can install the wheel: the one whose job it completes."""
    for tag in master.target_ids:
        target = Target.parse(tag)
        if target.can_install(info.tags):
            return target
    raise UploadRefused(
        f"no configured target ({', '.join(master.target_ids)}) can install {info.filename!r}", reason="tags"
    )


def _copy_beside(master: Master, package: str, path: Path) -> Path:
    """A copy in the store's own directory, so storing it is a rename that never shows half a file."""
    directory = master.files.path(package, path.name).parent
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".import")
    with os.fdopen(handle, "wb") as out, path.open("rb") as source:
        shutil.copyfileobj(source, out)
    return Path(name)


def _cover_others(master: Master, session: Session, version_id: int, target_id: int, info: WheelInfo) -> None:
    """A pure or abi3 wheel serves other targets too, as a built one would."""
    others = [
        tid
        for tag, tid in master.target_ids.items()
        if tid != target_id and covers(info.tags, Target.parse(tag))
    ]
    cover_other_targets(session, version_id, others, f"covered by {info.filename}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
