"""Staging keeps a lease's uploads until its build completes; the sweep drops what ended leases left."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from wheelmill.master.uploads import Staging

HOUR = 3600.0


def leave_uploads(staging: Staging, lease_id: str, age_seconds: float) -> Path:
    """A lease directory holding one upload, last written ``age_seconds`` ago."""
    directory = staging.lease_dir(lease_id)
    directory.mkdir(parents=True)
    wheel = directory / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    then = time.time() - age_seconds
    for path in (wheel, directory):
        os.utime(path, (then, then))
    return directory


def test_the_sweep_drops_only_idle_uploads_of_leases_no_builder_holds(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging")
    held = leave_uploads(staging, "held", age_seconds=2 * HOUR)  # a long build, still going
    reaped = leave_uploads(staging, "reaped", age_seconds=2 * HOUR)  # its builder was lost
    streaming = leave_uploads(staging, "streaming", age_seconds=2 * HOUR)
    (streaming / ".demo-1.0-py3-none-any.whl.part").write_bytes(b"still arriving")
    asked: list[Sequence[str]] = []

    def still_held(lease_ids: Sequence[str]) -> set[str]:
        asked.append(sorted(lease_ids))
        return {"held"} & set(lease_ids)

    assert staging.sweep(still_held, idle_seconds=HOUR) == ["reaped"]
    assert held.is_dir() and streaming.is_dir() and not reaped.exists()
    assert asked == [["held", "reaped"]]  # an upload written a moment ago is not even asked about


def test_a_sweep_with_nothing_idle_asks_the_database_nothing(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging")
    assert staging.sweep(never_asked, idle_seconds=HOUR) == []  # no staging yet
    leave_uploads(staging, "fresh", age_seconds=1)
    assert staging.sweep(never_asked, idle_seconds=HOUR) == []


def never_asked(lease_ids: Sequence[str]) -> set[str]:
    raise AssertionError(f"asked about {lease_ids} with nothing idle")
