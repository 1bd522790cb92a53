"""The master's parts, built once at start-up and handed to routes and loops."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from pathlib import Path

from wheelmill.config import Settings
from wheelmill.db.engine import Database
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


@dataclass
class Dirty:
    """What the publisher must rewrite: projects, build logs, and the site-wide pages."""

    projects: set[str] = field(default_factory=set)
    logs: set[int] = field(default_factory=set)
    site: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    wakeup: threading.Event = field(default_factory=threading.Event)

    def mark(self, project: str | None = None, log: int | None = None) -> None:
        with self.lock:
            if project is not None:
                self.projects.add(project)
            if log is not None:
                self.logs.add(log)
            self.site = True
        self.wakeup.set()

    def take(self) -> tuple[set[str], set[int], bool]:
        with self.lock:
            taken = (self.projects, self.logs, self.site)
            self.projects, self.logs, self.site = set(), set(), False
            self.wakeup.clear()
        return taken


@dataclass
class Master:
    settings: Settings
    db: Database
    target_ids: dict[str, int]
    files: FileStore
    staging: Staging
    logs: LogStore
    dirty: Dirty = field(default_factory=Dirty)

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
        )
