"""The master's parts, built once at start-up and handed to routes and loops."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from pathlib import Path

from wheelmill.config import Settings
from wheelmill.db import pending
from wheelmill.db.engine import Database
from wheelmill.master.auth import TokenCache
from wheelmill.master.disk import DiskCheck
from wheelmill.master.uploads import Staging
from wheelmill.publish.filestore import FileStore


class LogStore:
    """Build logs, gzip-compressed, one file per build under ``data_dir/logs``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, build_id: int) -> Path:
        return self.root / str(build_id // 1000) / f"{build_id}.log.gz"

    def save(self, build_id: int, log_gzip: bytes) -> None:
        path = self.path(build_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_bytes(log_gzip)
        temp.replace(path)

    def read_text(self, build_id: int) -> str:
        try:
            return gzip.decompress(self.path(build_id).read_bytes()).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


DONE_CHUNK = 100


class Dirty:
    """What the publisher must rewrite, kept in the database so every master process shares it.

    ``mark`` runs after the change it describes has committed; ``wakeup`` lets a publisher in
    this process start at once instead of at its next poll.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.wakeup = threading.Event()

    def mark(self, project: str | None = None, log: int | None = None) -> None:
        with self.db.write() as session:
            pending.mark(
                session, projects=[project] if project else [], logs=[log] if log is not None else []
            )
        self.wakeup.set()

    def take(self) -> pending.Pending:
        self.wakeup.clear()
        with self.db.read() as session:
            return pending.take(session)

    def done(self, taken: pending.Pending) -> None:
        # A transaction per hundred marks: on SQLite each one holds the write lock, and builders'
        # claims wait behind it (a thousand marks in one held it for ~11 ms).
        for start in range(0, len(taken.marks), DONE_CHUNK):
            with self.db.transaction() as tx:
                pending.done(tx, taken.marks[start : start + DONE_CHUNK])


@dataclass
class Master:
    settings: Settings
    db: Database
    target_ids: dict[str, int]
    files: FileStore
    staging: Staging
    logs: LogStore
    dirty: Dirty
    tokens: TokenCache
    disk: DiskCheck

    @classmethod
    def create(cls, settings: Settings, db: Database, target_ids: dict[str, int]) -> Master:
        data = settings.data_dir
        return cls(
            settings=settings,
            db=db,
            target_ids=target_ids,
            files=FileStore(settings.resolved_output_dir),
            staging=Staging(data / "staging"),
            logs=LogStore(data / "logs"),
            dirty=Dirty(db),
            tokens=TokenCache(db),
            disk=DiskCheck(settings),
        )
