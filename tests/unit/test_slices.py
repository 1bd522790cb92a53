"""The API workers' short scheduler slices, as the kernel reports them for a real process."""

from __future__ import annotations

import re
import subprocess
import sys

from wheelmill.master.slices import API_SLICE_NS

ASK = """
import os
from wheelmill.master.slices import prefer_short_slices
os.nice(3)
print(prefer_short_slices(), os.getpriority(os.PRIO_PROCESS, 0))
print(open("/proc/self/sched").read())
"""


def test_a_worker_asking_for_short_slices_gets_them_and_keeps_its_nice_value() -> None:
    shown = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, check=True).stdout
    taken, rest = shown.split("\n", 1)
    assert taken == "True 3"
    assert re.search(r"^se\.slice\s+:\s+(\d+)$", rest, re.MULTILINE)[1] == str(API_SLICE_NS)  # type: ignore[index]
