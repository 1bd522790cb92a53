"""The warden between builder and bubblewrap: the builder sees the sandbox's end as it was, and
nothing of a sandbox outlives its builder, not even what bubblewrap orphaned as it died."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import processes_with
from wheelmill.builder import warden


@pytest.fixture
def lifeline() -> Iterator[tuple[int, int]]:
    """The read end the warden watches and the write end a builder would hold."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def start(lifeline: int, script: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-I", "-S", warden.__file__, str(lifeline), "--", "/bin/sh", "-c", script]
    return subprocess.Popen(argv, stdout=stdout, start_new_session=True, pass_fds=[lifeline])


def unique_sleep() -> str:
    """A sleep's argument that names its process: GNU sleep takes fractional seconds."""
    return f"300.{uuid.uuid4().int % 10**9}"


def test_the_warden_ends_as_its_command_did_and_passes_its_output_on(lifeline: tuple[int, int]) -> None:
    ended = {}
    for script in ("echo built", "exit 3", "kill -TERM $$"):
        warden_process = start(lifeline[0], script, stdout=subprocess.PIPE)
        output, _ = warden_process.communicate(timeout=30)
        ended[script] = (warden_process.returncode, output)
    assert ended == {
        "echo built": (0, b"built\n"),
        "exit 3": (3, b""),
        "kill -TERM $$": (-signal.SIGTERM, b""),
    }


def test_a_process_orphaned_under_the_warden_does_not_outlive_it(lifeline: tuple[int, int]) -> None:
    """As a sandbox's init, left waiting when bubblewrap's outer process died early."""
    marker = unique_sleep()
    warden_process = start(lifeline[0], f"sleep {marker} & exit 0")
    try:
        assert warden_process.wait(timeout=30) == 0
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_the_builders_death_ends_the_sandbox_and_everything_under_it(lifeline: tuple[int, int]) -> None:
    marker = unique_sleep()
    warden_process = start(lifeline[0], f"sleep {marker} & wait")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            warden_process.wait(timeout=1)  # the builder lives: so does the build
        assert processes_with(marker)
        os.close(lifeline[1])  # as the kernel does when the builder is SIGKILLed
        assert warden_process.wait(timeout=10) == -signal.SIGKILL
        assert processes_with(marker) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(warden_process.pid, signal.SIGKILL)
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_builder_gone_before_the_warden_started_starts_nothing(lifeline: tuple[int, int]) -> None:
    marker = unique_sleep()
    os.close(lifeline[1])
    warden_process = start(lifeline[0], f"sleep {marker}")
    assert warden_process.wait(timeout=30) == 1
    assert processes_with(marker) == []
