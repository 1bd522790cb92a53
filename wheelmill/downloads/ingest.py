"""``logs ingest``: add the wheel downloads in access logs to the daily rollups, each line once.

Each chunk of a log is tallied in memory, then its counts and the log's new position are written in
one transaction: an ingest stopped half-way resumes where it stopped, and reading a log again (or a
grown, rotated or compressed copy of it) counts only lines it has not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wheelmill.db import downloads as downloads_sql
from wheelmill.db import pending
from wheelmill.db.engine import Database
from wheelmill.downloads.logfile import Chunk, LogFile, LogUnreadable, open_log
from wheelmill.downloads.parse import MalformedLine, parse_line
from wheelmill.downloads.useragent import parse_user_agent
from wheelmill.errors import WheelmillError

# Called as each log starts, with its path and size on disk; returns what to call as it is read,
# with the bytes on disk read so far.
StartLog = Callable[[Path, int], Callable[[int], None]]


class ConcurrentIngest(WheelmillError):
    """Another ingest is reading this log at the same time."""


@dataclass
class Summary:
    """What an ingest did, over all the logs it read."""

    lines: int = 0  # new lines read
    downloads: int = 0  # wheel downloads counted
    malformed: int = 0  # lines skipped as not in the combined format
    unchanged: list[Path] = field(default_factory=list)  # logs with no new line since the last ingest
    unreadable: list[str] = field(default_factory=list)  # why each log that could not be read failed


@dataclass
class Tally:
    """One chunk's counts, ready for the rollup tables."""

    files: Counter[downloads_sql.FileKey] = field(default_factory=Counter)
    clients: Counter[downloads_sql.ClientKey] = field(default_factory=Counter)
    downloads: int = 0
    malformed: int = 0


def tally(lines: Iterable[bytes]) -> Tally:
    """Count a chunk's downloads in memory, so the database gets a row per file and day, not per hit."""
    result = Tally()
    for raw in lines:
        try:
            hit = parse_line(raw.decode("utf-8", "replace"))
        except MalformedLine:
            result.malformed += 1
            continue
        if hit is not None:
            result.files[hit.filename, hit.package, hit.day] += 1
            result.clients[(hit.day, *parse_user_agent(hit.agent))] += 1
    result.downloads = sum(result.files.values())
    return result


def ingest_logs(db: Database, paths: Iterable[Path], start_log: StartLog | None = None) -> Summary:
    """Ingest each log in turn. An unreadable log is reported in the summary, and the others still read."""
    summary = Summary()
    for path in paths:
        try:
            with open_log(path) as log:
                if log is None or not _ingest(db, log, summary, start_log):
                    summary.unchanged.append(path)
        except LogUnreadable as exc:
            summary.unreadable.append(str(exc))
    return summary


def _ingest(db: Database, log: LogFile, summary: Summary, start_log: StartLog | None) -> bool:
    """Read ``log`` from where the last ingest stopped; False when it had nothing new."""
    with db.read() as session:
        start = downloads_sql.bytes_read(session, log.key)
    advance = start_log(log.path, log.size) if start_log else None
    read_any = False
    for chunk in log.chunks(start):
        _add(db, log, start, chunk, summary)
        start = chunk.end
        read_any = True
        if advance:
            advance(chunk.progress)
    if advance:
        advance(log.size)  # read to its end, or nothing new: either way this log is done
    return read_any


def _add(db: Database, log: LogFile, start: int, chunk: Chunk, summary: Summary) -> None:
    counts = tally(chunk.lines)
    with db.write() as session:
        added = downloads_sql.add_chunk(
            session,
            key=log.key,
            path=str(log.path.resolve()),
            start=start,
            end=chunk.end,
            lines=len(chunk.lines),
            files=counts.files,
            clients=counts.clients,
        )
        if added:  # project pages show downloads, the statistics page charts them
            pending.mark(session, projects={package for _, package, _ in counts.files})
    if not added:
        raise ConcurrentIngest(
            f"another ingest is reading {str(log.path)!r}; its counts stand, run again later"
        )
    summary.lines += len(chunk.lines)
    summary.downloads += counts.downloads
    summary.malformed += counts.malformed
