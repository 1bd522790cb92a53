"""Retry decisions, as pure functions apart from the code that runs builds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from wheelmill.db.tables import JobStatus

# Failures that say nothing about the package: the builder's network or disk let it down.
TRANSIENT_REASONS = frozenset({"download_failed", "builder_disk_full", "upload_failed"})
TRANSIENT_DELAY = timedelta(minutes=10)


@dataclass(frozen=True)
class NextStep:
    status: JobStatus
    delay: timedelta | None = None


def after_failure(reason: str | None, transient_failures_before: int) -> NextStep:
    """A failed build is final, unless its failure is transient: then it is retried once, later."""
    if reason in TRANSIENT_REASONS and transient_failures_before == 0:
        return NextStep(JobStatus.waiting, TRANSIENT_DELAY)
    return NextStep(JobStatus.failed)


def after_lost_builder(attempts: int, max_attempts: int) -> NextStep:
    """A vanished builder's job goes back to the queue until it has been tried ``max_attempts`` times."""
    return NextStep(JobStatus.failed if attempts >= max_attempts else JobStatus.queued)


def remedy_applies(reason: str | None, remedy: str | None, tried: str | None) -> bool:
    """An undeclared build dependency is provided once; a second failure with it is final."""
    return reason == "undeclared_build_dependency" and bool(remedy) and tried is None
