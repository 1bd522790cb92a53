"""Retry decisions: transient failures once, lost builders up to a limit, remedies once."""

from wheelmill.db.tables import JobStatus
from wheelmill.retry import TRANSIENT_DELAY, after_failure, after_lost_builder, remedy_applies


def test_a_failed_build_is_final_unless_transient_and_first() -> None:
    assert after_failure("compiler_error", 0).status is JobStatus.failed
    first = after_failure("download_failed", 0)
    assert (first.status, first.delay) == (JobStatus.waiting, TRANSIENT_DELAY)
    assert after_failure("download_failed", 1).status is JobStatus.failed


def test_a_lost_builders_job_is_retried_up_to_the_limit() -> None:
    assert after_lost_builder(1, 3).status is JobStatus.queued
    assert after_lost_builder(3, 3).status is JobStatus.failed


def test_a_missing_build_dependency_is_provided_once() -> None:
    assert remedy_applies("undeclared_build_dependency", "numpy", None)
    assert not remedy_applies("undeclared_build_dependency", "numpy", "numpy")  # tried already: final
    assert not remedy_applies("undeclared_build_dependency", None, None)
    assert not remedy_applies("compiler_error", "numpy", None)
