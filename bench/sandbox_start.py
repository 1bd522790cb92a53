"""What starting a sandbox costs, and whether a builder killed as one starts leaves it behind.

    python bench/sandbox_start.py [--runs 30] [--kills 100] [--load 4]

A: the wall time of a sandboxed ``/bin/true`` (``Sandbox.run``: cgroups, bubblewrap, the warden
   and the launcher), median of ``--runs``.
B: a builder-like process starts a sandboxed ``sleep``; it is SIGKILLed the moment bubblewrap
   appears, plus a random 0 to 10 ms: the window before the sandbox's launcher ties the build to
   its builder. Each kill is followed by a look for any process of that sandbox still alive. The
   window is narrow and widens on a busy machine, so ``--load`` busy processes (at a lower
   priority) run meanwhile. Target: no sandbox left behind.

The last line is JSON: the figures, the target and whether it was met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import command_name, processes_with
from wheelmill.builder.sandbox import Limits, make_sandbox

BUILDER = """
import sys
from pathlib import Path
from wheelmill.builder.sandbox import Limits, make_sandbox
argv = ["/bin/sh", "-c", "sleep 300 # " + sys.argv[2]]
make_sandbox("required").run(argv, workdir=Path(sys.argv[1]), env={}, limits=Limits())
"""
KILL_JITTER_S = 0.010
SETTLE_S = 5.0


def start_cost(runs: int, workdir: Path) -> float:
    """Median milliseconds of a sandboxed /bin/true, start to reaped."""
    sandbox = make_sandbox("required")
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        sandbox.run(["/bin/true"], workdir=workdir, env={}, limits=Limits(timeout_s=60))
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def kill_at_start(workdir: Path) -> bool:
    """Kill a builder as its sandbox starts; whether anything of that sandbox outlived it."""
    marker = f"wheelmill-bench-{uuid.uuid4().hex}"
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, str(workdir), marker])
    while not any(command_name(pid) == "bwrap" for pid in processes_with(marker)):
        if builder.poll() is not None:
            raise RuntimeError("the builder ended before its sandbox started")
    time.sleep(random.uniform(0, KILL_JITTER_S))
    builder.kill()
    builder.wait()
    deadline = time.monotonic() + SETTLE_S
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_with(marker)
    for pid in left:  # the next attempt starts on a clean machine
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(left)


@contextmanager
def busy(processes: int) -> Iterator[None]:
    """Niced busy loops: a loaded machine, as in CI, where the start window is widest."""
    loops = [
        subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", "while True: pass"])
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--load", type=int, default=4, help="busy processes during the kills")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wheelmill-sandbox-start-") as tmp:
        workdir = Path(tmp)
        median_ms = start_cost(args.runs, workdir)
        print(f"sandboxed /bin/true: median {median_ms:.1f} ms over {args.runs} runs")
        left = 0
        with busy(args.load), Progress() as progress:
            task = progress.add_task("killing builders as their sandboxes start", total=args.kills)
            for _ in range(args.kills):
                left += kill_at_start(workdir)
                progress.advance(task)
        print(f"builders killed as their sandbox started: {args.kills}; sandboxes left behind: {left}")
    figures = {"start_median_ms": round(median_ms, 1), "kills": args.kills, "sandboxes_left": left}
    print(
        json.dumps(
            {"figures": figures, "targets": {"sandboxes_left": 0}, "met": {"sandboxes_left": left == 0}}
        )
    )


if __name__ == "__main__":
    main()
