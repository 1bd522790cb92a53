"""``wheelmill logs ingest``: a progress bar per log while it is read, then what was counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wheelmill.db.engine import Database
from wheelmill.downloads.ingest import ingest_logs


def run_ingest(db: Database, paths: list[Path], console: Console) -> int:
    """Ingest ``paths``; 0 when every log was read, 1 when one could not be."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console) as progress:

        def start_log(path: Path, size: int) -> Callable[[int], None]:
            task = progress.add_task(path.name, total=size)
            return lambda done: progress.update(task, completed=done)

        summary = ingest_logs(db, paths, start_log)
    read = len(paths) - len(summary.unchanged) - len(summary.unreadable)
    print(
        f"read {summary.lines:,} new lines from {read} of {len(paths)} logs: "
        f"{summary.downloads:,} wheel downloads counted, {summary.malformed:,} malformed lines skipped"
    )
    for path in summary.unchanged:
        print(f"{path}: nothing new since the last ingest")
    for problem in summary.unreadable:
        console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
    return 1 if summary.unreadable else 0
