"""What a bundle's page says about each item still being built."""

from __future__ import annotations

import pytest

from wheelmill.bundle.service import _item
from wheelmill.db.bundles import JobState
from wheelmill.db.tables import JobStatus


@pytest.mark.parametrize(
    ("reason", "failure_reason", "said"),
    [
        ("awaiting upstream file details", None, "awaiting upstream file details"),
        ("transient failure", "download_failed", "retrying after download_failed"),
    ],
)
def test_a_waiting_item_says_what_it_waits_for(reason: str, failure_reason: str | None, said: str) -> None:
    state = JobState(1, JobStatus.waiting, reason, None, failure_reason, None)

    item = _item("demo", "1.0", state)

    assert (str(item.status), item.reason) == ("queued", said)
