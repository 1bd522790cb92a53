"""How much room the farm has: the free space the disk guard, status and /metrics look at."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from wheelmill.config import Settings

CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class DiskState:
    free_bytes: int  # the least free space of the output and data directories
    min_free_bytes: int

    @property
    def low(self) -> bool:
        return self.min_free_bytes > 0 and self.free_bytes < self.min_free_bytes


def disk_state(settings: Settings) -> DiskState:
    """Free space where wheels land (output) and where they are staged and logged (data)."""
    paths = {settings.resolved_output_dir, settings.data_dir}
    free = min(shutil.disk_usage(_existing(path)).free for path in paths)
    return DiskState(free, settings.min_free_bytes)


class DiskCheck:
    """Whether the disk is low, looked at most once a second: statvfs and resolving two paths cost
    more than a claim's SQL, and every claim asks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._low = False
        self._checked_until = float("-inf")

    def low(self) -> bool:
        now = time.monotonic()
        if now >= self._checked_until:
            self._low = disk_state(self.settings).low
            self._checked_until = now + CHECK_SECONDS
        return self._low


def _existing(path: Path) -> Path:
    """The nearest existing directory: before the first publish the output directory may not exist."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
