"""`wheelmill monitor` in a real terminal (a pty): it shows the fleet and its keys steer builders."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.farm import Farm, wait_until
from tests.helpers import client_env

pytestmark = pytest.mark.slow


def read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        assert time.monotonic() < deadline, f"the monitor never showed {wanted!r}; it showed {seen[-2000:]!r}"
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 65536)
    return seen


def test_monitor_keys_pause_resume_drain_and_kill_the_selected_builder(tmp_path: Path) -> None:
    farm = Farm(tmp_path, "http://127.0.0.1:9/simple/")
    farm.cli("token", "create", "--builder", "pi-1")
    main, terminal = pty.openpty()
    env = {**client_env(), "TERM": "xterm", "COLUMNS": "140", "LINES": "50"}
    monitor = subprocess.Popen(
        [sys.executable, "-m", "wheelmill", "--config", str(farm.config), "monitor", "--refresh", "0.3"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    try:
        read_until(main, b"pi-1")
        os.write(main, b"p")
        wait_until(lambda: farm.query("SELECT state FROM builders") == [("paused",)], "the pause", monitor)
        read_until(main, b"pi-1 is now paused")
        os.write(main, b"r")
        wait_until(lambda: farm.query("SELECT state FROM builders") == [("active",)], "the resume", monitor)
        os.write(main, b"d")
        wait_until(lambda: farm.query("SELECT state FROM builders") == [("draining",)], "the drain", monitor)
        os.write(main, b"x")
        read_until(main, b"kill pi-1 and abort its build? y/n")
        os.write(main, b"n")  # anything but y cancels
        read_until(main, b"kill cancelled")
        assert farm.query("SELECT state FROM builders") == [("draining",)]
        os.write(main, b"x")
        read_until(main, b"y/n")
        os.write(main, b"y")
        wait_until(lambda: farm.query("SELECT state FROM builders") == [("killed",)], "the kill", monitor)
        os.write(main, b"q")
        assert monitor.wait(timeout=10) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()
        os.close(main)
        os.close(terminal)
