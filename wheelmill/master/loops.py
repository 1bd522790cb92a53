"""The master's background loops: follower, reaper and publisher, each run once per farm.

Each loop is a daemon thread that takes its ``SingletonLock`` before working and keeps trying
to take it while another process holds it, so a surviving process takes over from a dead one.
Loops run at a lower CPU priority than the API: a publisher pass or a follower batch can take
seconds of CPU, and a builder's claim should not wait behind it on a busy master.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from wheelmill.db import jobs as queue_sql
from wheelmill.db import pending
from wheelmill.db.locks import SingletonLock
from wheelmill.master import diskguard, publishing
from wheelmill.master.context import Master
from wheelmill.upstream import watch
from wheelmill.upstream.client import UpstreamClient
from wheelmill.upstream.follower import follow_changelog

log = logging.getLogger(__name__)
LOCK_RETRY_SECONDS = 5.0
LOOP_NICENESS = 10  # added to the thread's nice value (Linux gives each thread its own)


class Loop(threading.Thread):
    """Run ``step`` every ``interval`` seconds (or when woken) while holding the named lock."""

    def __init__(
        self,
        master: Master,
        name: str,
        step: Callable[[], None],
        interval: float,
        stop: threading.Event,
        wake: threading.Event | None = None,
    ) -> None:
        super().__init__(name=f"wheelmill-{name}", daemon=True)
        self.lock = SingletonLock(master.db, name)
        self.step = step
        self.interval = interval
        self.stop_event = stop
        self.wake = wake or threading.Event()

    def run(self) -> None:
        _lower_this_threads_priority()
        try:
            while not self.stop_event.is_set():
                if not self.lock.try_acquire():
                    self.stop_event.wait(LOCK_RETRY_SECONDS)
                    continue
                try:
                    self.step()
                except Exception:
                    log.exception("%s failed; trying again in %.0f s", self.name, self.interval)
                self.wake.wait(self.interval)
                self.wake.clear()
        finally:
            self.lock.release()


def _lower_this_threads_priority() -> None:
    thread = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + LOOP_NICENESS)


def start_loops(master: Master, stop: threading.Event) -> list[Loop]:
    settings = master.settings
    client = UpstreamClient(settings.upstream, contact=settings.contact)
    publisher = publishing.make_publisher(master)
    # Unknown: a home page written before this start may show a disk notice no longer true.
    schedule = publishing.SiteSchedule(guard=diskguard.GuardWatch(shown=None))

    def follow() -> None:
        if settings.follow == "all":
            # It marks the pages it changes in the transactions that change them.
            follow_changelog(master.db, client, master.target_ids, skip_yanked=settings.skip_yanked)
        else:
            changed = watch.poll(
                master.db, client, master.target_ids, skip_yanked=settings.skip_yanked
            ).changed
            if changed:  # an unchanged poll leaves the site pages as they are
                with master.db.write() as session:
                    pending.mark(session, projects=changed)
        master.dirty.wakeup.set()

    def still_held(lease_ids: Sequence[str]) -> set[str]:
        with master.db.read() as session:
            return queue_sql.live_leases(session, lease_ids)

    def reap() -> None:
        swept = master.staging.sweep(still_held, idle_seconds=settings.lease_seconds)
        if swept:
            log.info("dropped the uploads of %d ended leases from staging", len(swept))
        with master.db.read() as session:
            if not queue_sql.reap_due(session):
                return
        with master.db.write() as session:
            lost = queue_sql.reap(session, settings.max_attempts)
        if lost:
            log.warning("leases expired on jobs %s: returned to the queue", lost)
            master.dirty.mark()

    def publish() -> None:
        # A short pause lets a burst of completions land before one rewrite covers them all.
        stop.wait(0.2)
        publishing.publish_dirty(master, publisher, schedule)

    loops = [
        Loop(master, "follower", follow, settings.poll_seconds, stop),
        Loop(master, "reaper", reap, max(1.0, settings.lease_seconds / 10), stop),
        # Polls every second for marks other master processes made; a local mark wakes it at once.
        Loop(master, "publisher", publish, 1.0, stop, wake=master.dirty.wakeup),
    ]
    for loop in loops:
        loop.start()
    return loops


def stop_loops(loops: list[Loop], stop: threading.Event, timeout: float = 10) -> None:
    """Stop the loops now: each one waiting out its interval is woken, then joined."""
    stop.set()
    for loop in loops:
        loop.wake.set()
    for loop in loops:
        loop.join(timeout=timeout)
