"""Whole-index mode: follow every project through PyPI's changelog, and plan from the feed alone.

Each batch of the feed is folded per project, applied in one transaction with the serial it reaches,
and planned in that same transaction: the feed names every file, which is enough to tell a
buildable version from a binary-only one and to judge upstream wheels' tags against each target.

What the feed leaves out (each file's URL, sha256 and size, requires-python, a yank's reason) comes
from one JSON API request per project, in a drain that runs after the feed, newest release first,
rate-limited and resumable (the projects owed are rows in the database). A version whose build
needs them waits for them (``Outcome.wait``): once recorded it is queued, or skipped when its
requires-python excludes the target. Applying 175,000 projects' answers cannot fit in a follower
pass, and need not: builders take the newest releases first, the drain's order. An answer older
than what the feed already said about the project is a stale cached copy: it is not recorded, and
the project stays owed until the next run.

``python -m wheelmill.upstream.follower --database-url URL --upstream SIMPLE_URL --once`` runs it by
itself (the master runs ``follow_changelog`` in its follower loop).
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from wheelmill.db import details, feed, pending
from wheelmill.db import jobs as queue_sql
from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.planner import plan_versions
from wheelmill.targets import Target
from wheelmill.upstream.changelog import Changelog
from wheelmill.upstream.client import RetryableError, UpstreamClient, json_body, raise_for_status
from wheelmill.upstream.events import Entry, ProjectChange, fold, parse
from wheelmill.upstream.model import UpstreamFile
from wheelmill.upstream.pacing import Pacer

log = logging.getLogger(__name__)
DETAILS_CHUNK = 200  # projects per JSON API round and per transaction recording their files
DETAILS_SECONDS = 240.0  # JSON API drain per follower pass, so the feed is read again soon
DETAILS_RATE = 20.0  # JSON API requests per second at most
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class FollowResult:
    pages_marked: int = 0  # project pages marked for the publisher (a page may count more than once)
    jobs_queued: int = 0  # jobs that became queued
    events: int = 0  # feed entries applied, ignored ones included
    serial: int = 0  # the serial the feed is applied up to (stored in the database)
    upstream_serial: int = 0  # upstream's newest serial, as last learned (stored in the database)
    details_fetched: int = 0  # JSON API answers recorded
    details_pending: int = 0  # projects still owed details: the next run goes on with them


@dataclass(frozen=True)
class ReleaseFiles:
    """A project's files per release (upstream spelling), as the JSON API showed them at ``last_serial``."""

    last_serial: int
    releases: dict[str, tuple[UpstreamFile, ...]]


def follow_changelog(
    db: Database,
    client: UpstreamClient,
    targets: dict[str, int],
    *,
    skip_yanked: bool,
    batch_size: int = 50_000,
    details_seconds: float | None = DETAILS_SECONDS,
    details_rate: float | None = DETAILS_RATE,
    workers: int = 4,
    on_progress: Callable[[FollowResult], None] | None = None,
) -> FollowResult:
    """Apply and plan the feed from the stored serial to its end, then drain the details owed for
    up to ``details_seconds`` (None: all of them).

    An upstream that keeps failing raises ``UpstreamError``: what was committed stays, and the next
    call resumes from it.
    """
    changelog = Changelog(client)
    result = _start(db, changelog)
    for batch in _folded_batches(changelog, result.serial, batch_size):
        _apply_batch(db, batch, targets, skip_yanked, result)
        if on_progress:
            on_progress(result)
    drain_details(
        db,
        client,
        targets,
        skip_yanked=skip_yanked,
        seconds=details_seconds,
        rate=details_rate,
        workers=workers,
        result=result,
        on_progress=on_progress,
    )
    return result


def _start(db: Database, changelog: Changelog) -> FollowResult:
    """Where the feed resumes, after recording upstream's newest serial: the lag /metrics and
    ``wheelmill status`` report is known before a long catch-up, not only after it."""
    upstream = changelog.last_serial()
    with db.write() as session:
        feed.save_upstream_serial(session, upstream)
        return FollowResult(serial=feed.stored_serial(session), upstream_serial=upstream)


@dataclass(frozen=True)
class _Batch:
    """Feed entries folded per project, and the serial they reach."""

    events: int
    serial: int
    changes: dict[str, ProjectChange]


def _folded_batches(changelog: Changelog, serial: int, batch_size: int) -> Iterator[_Batch]:
    """The feed from ``serial`` on in folded batches. The next batch is fetched, parsed and folded in a
    thread while the caller applies this one: the database's writes (which release the GIL) overlap
    upstream's answer and the folding. A batch made ahead of a failed apply is dropped; the caller
    resumes from its stored serial."""

    def batches() -> Iterator[_Batch]:
        entries: list[Entry] = []
        for page in changelog.pages(serial):
            entries += page
            while len(entries) >= batch_size:
                yield _batch(entries[:batch_size])
                del entries[:batch_size]
        if entries:
            yield _batch(entries)

    source = batches()
    ahead = ThreadPoolExecutor(1, thread_name_prefix="wheelmill-changelog")
    try:
        upcoming = ahead.submit(next, source, None)
        while (batch := upcoming.result()) is not None:
            upcoming = ahead.submit(next, source, None)
            yield batch
    finally:  # a caller that stops early does not wait for a batch it no longer wants
        ahead.shutdown(wait=False, cancel_futures=True)


def _batch(entries: Sequence[Entry]) -> _Batch:
    return _Batch(len(entries), entries[-1][4], fold(parse(entry) for entry in entries))


def _apply_batch(
    db: Database, batch: _Batch, targets: dict[str, int], skip_yanked: bool, result: FollowResult
) -> None:
    with db.write() as session:
        applied = feed.apply_changes(session, batch.changes)
        queued = plan_versions(
            session, applied.replan, targets, skip_yanked=skip_yanked, created=applied.created
        )
        feed.save_serial(session, batch.serial)
        if batch.serial > result.upstream_serial:  # upstream moved on since the pass started
            feed.save_upstream_serial(session, batch.serial)
        _mark_pages(session, applied.changed, result)
    result.events += batch.events
    result.upstream_serial = max(result.upstream_serial, batch.serial)
    result.serial = batch.serial
    result.jobs_queued += queued
    log.debug(
        "applied %d events up to serial %d (%d projects)", batch.events, batch.serial, len(batch.changes)
    )


def drain_details(
    db: Database,
    client: UpstreamClient,
    targets: dict[str, int],
    *,
    skip_yanked: bool,
    seconds: float | None = DETAILS_SECONDS,
    rate: float | None = DETAILS_RATE,
    workers: int = 4,
    result: FollowResult | None = None,
    on_progress: Callable[[FollowResult], None] | None = None,
) -> FollowResult:
    """Fetch and record the details owed, newest release first, a chunk at a time, until none is
    owed or ``seconds`` have passed (None: no limit); at most ``rate`` requests a second (None: no
    limit). The next chunk's requests run while this one is written, so the database and upstream
    work at the same time. What was recorded stays if upstream fails: the rest stays owed."""
    result = result or FollowResult()
    deadline = None if seconds is None else time.monotonic() + seconds
    pacer = Pacer(rate, burst=workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="wheelmill-details")

    def start(
        after: details.OwedProject | None,
    ) -> list[tuple[details.OwedProject, Future[ReleaseFiles | None]]]:
        if deadline is not None and time.monotonic() >= deadline:
            return []
        with db.read() as session:
            owed = details.owed_projects(session, after, DETAILS_CHUNK)
        return [(project, pool.submit(_paced, pacer, client, project.spelling)) for project in owed]

    try:
        inflight = start(None)
        while inflight:
            upcoming = start(inflight[-1][0])
            answers = []
            for project, future in inflight:
                files = future.result()
                if files is not None and files.last_serial < project.last_serial:
                    log.warning(
                        "%s: upstream sent a stale copy (serial %d, the feed is at %d); its files stay "
                        "owed and are fetched again on the next run",
                        project.name,
                        files.last_serial,
                        project.last_serial,
                    )
                    continue
                answers.append((project, None if files is None else files.releases))
            with db.write() as session:
                applied = details.record_details(session, answers)
                result.jobs_queued += plan_versions(session, applied.replan, targets, skip_yanked=skip_yanked)
                _mark_pages(session, applied.changed, result)
            result.details_fetched += len(answers)
            if on_progress:
                on_progress(result)
            inflight = upcoming
    finally:
        pool.shutdown(cancel_futures=True)
    with db.read() as session:
        result.details_pending = details.count_owed(session)
    return result


def _mark_pages(session: Session, projects: set[str], result: FollowResult) -> None:
    """Tell the publisher in the transaction that changed the pages: a follower killed right after a
    commit leaves no page stale, and the names need not be held until the end of the feed."""
    if projects:
        pending.mark(session, projects=projects)
        result.pages_marked += len(projects)


def _paced(pacer: Pacer, client: UpstreamClient, name: str) -> ReleaseFiles | None:
    pacer.wait()
    return release_files(client, name)


def release_files(client: UpstreamClient, name: str) -> ReleaseFiles | None:
    """Every release's files of ``name`` from the JSON API (``/pypi/NAME/json``); None if not served
    (removed, quarantined, or nothing visible). A malformed answer is retried, never recorded."""

    def fetch() -> ReleaseFiles | None:
        response = client.http.get(f"{client.json_url}{name}/json")
        if response.status_code == 404:
            return None
        raise_for_status(response)
        body = json_body(response)
        try:
            serials = [int(body["last_serial"])]
            if "X-PyPI-Last-Serial" in response.headers:
                serials.append(int(response.headers["X-PyPI-Last-Serial"]))
            releases = {
                str(version): tuple(f for f in map(_file, files) if f is not None)
                for version, files in body["releases"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RetryableError(f"{response.request.url} is not a JSON API project answer: {exc!r}") from exc
        # Trust the older of the two serials: either may come from a stale cache.
        return ReleaseFiles(min(serials), releases)

    return client.with_backoff(f"GET JSON API of {name!r}", fetch)


def _file(entry: dict[str, Any]) -> UpstreamFile | None:
    filename, sha256, url = str(entry["filename"]), str(entry["digests"]["sha256"]), str(entry["url"])
    if "/" in filename or not _SHA256.fullmatch(sha256) or not url.startswith(("https://", "http://")):
        log.warning("ignoring upstream file %r: bad name, sha256 %r or URL %r", filename, sha256, url)
        return None
    uploaded = entry.get("upload_time_iso_8601")
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=sha256,
        size=int(entry["size"]),
        requires_python=entry.get("requires_python") or None,
        upload_time=datetime.fromisoformat(uploaded.replace("Z", "+00:00")) if uploaded else None,
        yanked=bool(entry.get("yanked")),
        yanked_reason=entry.get("yanked_reason") or None,
        core_metadata_sha256=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wheelmill.upstream.follower", description="Follow the whole upstream index."
    )
    parser.add_argument("--database-url", required=True, help="SQLAlchemy URL of the farm's database")
    parser.add_argument(
        "--upstream", required=True, help="upstream simple index URL, e.g. https://pypi.org/simple/"
    )
    parser.add_argument("--target", action="append", default=[], help="target to plan jobs for (repeatable)")
    parser.add_argument("--contact", default="", help="operator contact sent in the User-Agent")
    parser.add_argument(
        "--skip-yanked", action="store_true", help="do not build versions yanked when discovered"
    )
    parser.add_argument("--batch-size", type=int, default=50_000, help="feed events per transaction")
    parser.add_argument(
        "--details-rate", type=float, default=DETAILS_RATE, help="JSON API requests per second at most"
    )
    parser.add_argument("--once", action="store_true", help="follow to the end of the feed once, then exit")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between runs without --once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = Database(args.database_url)
    upgrade(db)
    with db.write() as session:
        targets = queue_sql.ensure_targets(session, [Target.parse(tag) for tag in args.target])
    client = UpstreamClient(args.upstream, contact=args.contact)
    try:
        while True:
            result = follow_changelog(
                db,
                client,
                targets,
                skip_yanked=args.skip_yanked,
                batch_size=args.batch_size,
                details_seconds=None if args.once else DETAILS_SECONDS,
                details_rate=args.details_rate,
            )
            log.info(
                "serial %d: %d events, %d project pages marked, %d jobs queued, %d details owed",
                result.serial,
                result.events,
                result.pages_marked,
                result.jobs_queued,
                result.details_pending,
            )
            if args.once:
                return 0
            time.sleep(args.interval)
    finally:
        client.close()
        db.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
