"""The master's background loops yield the CPU to its API."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from wheelmill.config import Settings
from wheelmill.master.loops import LOOP_NICENESS, Loop
from wheelmill.runner import open_master


def test_a_loop_runs_at_a_lower_priority_than_the_api(tmp_path: Path) -> None:
    master = open_master(Settings(data_dir=tmp_path / "data", targets=["cp311-cp311-linux_armv7l"]))
    stop, seen = threading.Event(), []

    def step() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        stop.set()
        loop.wake.set()  # end its wait for the next pass now

    loop = Loop(master, "publisher", step, 60, stop)
    loop.start()
    loop.join(timeout=30)
    assert not loop.is_alive()
    api = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [api + LOOP_NICENESS]
    master.db.dispose()
