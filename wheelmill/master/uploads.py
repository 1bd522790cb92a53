"""Receiving one wheel from a builder: stream to staging, verify, keep for the completion call.

The checks run as small steps in order (filename, size and hash, archive, job match), each
raising ``UploadRefused`` with the rule that broke. Nothing reaches the output directory here:
the completion call publishes staged files and records them in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelmill.errors import UploadRefused
from wheelmill.targets import Target
from wheelmill.wheels import WheelInfo, check_filename, check_matches_job, check_size, inspect_wheel


@dataclass(frozen=True)
class StagedWheel:
    """A verified wheel waiting in staging for its build to complete."""

    path: Path
    filename: str
    sha256: str
    size: int
    metadata: bytes
    requires_python: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class JobIdentity:
    """What an upload must match: the leased job's package, upstream version and target."""

    lease_id: str
    package: str
    version: str
    target: Target


class Staging:
    """Per-lease directories holding verified uploads; dropped when the lease ends."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def lease_dir(self, lease_id: str) -> Path:
        return self.root / lease_id

    async def receive(
        self,
        job: JobIdentity,
        filename: str,
        body: AsyncIterator[bytes],
        *,
        declared_sha256: str,
        declared_size: int,
        limit: int,
    ) -> StagedWheel:
        check_filename(filename)
        check_size(declared_size, limit)
        directory = self.lease_dir(job.lease_id)
        directory.mkdir(parents=True, exist_ok=True)
        existing = self.staged(job.lease_id, filename)
        partial = directory / f".{filename}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise UploadRefused(
                            f"{filename!r} is larger than the limit of {limit} bytes", reason="size"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if size != declared_size:
                raise UploadRefused(
                    f"{filename!r}: received {size} bytes, Content-Length said {declared_size}", reason="size"
                )
            if digest.hexdigest() != declared_sha256.lower():
                raise UploadRefused(
                    f"{filename!r}: sha256 is {digest.hexdigest()!r}, X-Sha256 said {declared_sha256!r}",
                    reason="hash",
                )
            if existing is not None and existing.sha256 == digest.hexdigest():
                partial.unlink()
                return existing  # the same file again: nothing to do
            info = inspect_wheel(partial, filename)
            check_matches_job(info, job.package, job.version, job.target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return self._keep(partial, info, digest.hexdigest(), size)

    def _keep(self, partial: Path, info: WheelInfo, sha256: str, size: int) -> StagedWheel:
        final = partial.with_name(info.filename)
        record = {
            "sha256": sha256,
            "size": size,
            "requires_python": info.requires_python,
            "tags": sorted(str(tag) for tag in info.tags),
        }
        final.with_name(info.filename + ".metadata").write_bytes(info.metadata)
        final.with_name(info.filename + ".json").write_text(json.dumps(record))
        os.replace(partial, final)
        return self.staged(partial.parent.name, info.filename)  # type: ignore[return-value]

    def staged(self, lease_id: str, filename: str) -> StagedWheel | None:
        path = self.lease_dir(lease_id) / filename
        if not path.is_file():
            return None
        record = json.loads(path.with_name(filename + ".json").read_text())
        return StagedWheel(
            path=path,
            filename=filename,
            sha256=record["sha256"],
            size=record["size"],
            metadata=path.with_name(filename + ".metadata").read_bytes(),
            requires_python=record["requires_python"],
            tags=tuple(record["tags"]),
        )

    def drop(self, lease_id: str) -> None:
        directory = self.lease_dir(lease_id)
        if directory.exists():  # most failed builds uploaded nothing: skip rmtree's cost
            shutil.rmtree(directory, ignore_errors=True)

    def sweep(self, still_held: Callable[[Sequence[str]], set[str]], idle_seconds: float) -> list[str]:
        """Drop the directories of leases that ended without dropping theirs; return their ids.

        A lease the reaper took back from a lost builder leaves its uploads here, and so does a
        master stopped between a completion's commit and its drop: years of those fill a disk.
        A directory written to within ``idle_seconds`` is kept whatever ``still_held`` says, so
        an upload still streaming into it is never cut (its completion is refused anyway).
        """
        if not self.root.is_dir():
            return []
        cutoff = time.time() - idle_seconds
        idle = [entry.name for entry in self.root.iterdir() if _last_write(entry) < cutoff]
        if not idle:
            return []
        ended = sorted(set(idle) - still_held(idle))
        for lease_id in ended:
            self.drop(lease_id)
        return ended


def _last_write(directory: Path) -> float:
    """When anything in a lease directory last changed (a streaming upload updates its part file).

    A directory that a completion drops while this looks reads as just written: left for the next
    sweep, which will not find it.
    """
    try:
        return max([directory.stat().st_mtime, *(entry.stat().st_mtime for entry in directory.iterdir())])
    except (FileNotFoundError, NotADirectoryError):
        return time.time()
