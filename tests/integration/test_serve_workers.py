"""``serve`` with several API worker processes: one port, one queue, no job handed out twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from tests.helpers import client_env
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
HOST_TARGET = "cp311-cp311-linux_x86_64"
JOBS = 6


@pytest.fixture
def farm(upstream: StandInUpstream, tmp_path: Path, db_url: str) -> Iterator[Farm]:
    names = [f"pkg{number}" for number in range(JOBS)]
    for name in names:
        upstream.add_release(name, "1.0", kind="pure")
    made = Farm(
        tmp_path, upstream.simple_url, database_url=db_url, watch=names, targets=[HOST_TARGET], workers=2
    )
    yield made
    made.close()


def workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_share_the_queue_and_stop_with_the_master(farm: Farm) -> None:
    master = farm.serve()
    workers = workers_of(master.pid)
    assert len(workers) == 2  # two API processes; the loops run in the master itself
    wait_until(
        lambda: farm.query("SELECT count(*) FROM jobs WHERE status = 'queued'") == [(JOBS,)],
        "the follower in the master process to queue the jobs",
        master,
    )
    tokens = [farm.cli("token", "create", "--builder", f"b{n}") for n in range(JOBS)]

    def claim(token: str) -> dict:
        # A new connection per builder: the kernel spreads them over both workers.
        with httpx.Client(base_url=farm.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
            assert api.post("/builders", json={"target": HOST_TARGET}).status_code == 200
            answer = api.post("/jobs/claim")
            assert answer.status_code == 200, answer.text
            job = answer.json()
            failed = {"status": "failed", "duration_s": 0.1, "failure_reason": "compiler_error"}
            done = api.post(f"/leases/{job['lease_id']}/complete", json=failed)
            assert done.status_code == 200, done.text
            return job

    with ThreadPoolExecutor(JOBS) as pool:
        jobs = list(pool.map(claim, tokens))
    assert len({job["job_id"] for job in jobs}) == JOBS  # every builder got a different job
    assert farm.query("SELECT status, count(*) FROM builds GROUP BY status") == [("failed", JOBS)]
    assert farm.query("SELECT count(*) FROM jobs WHERE status = 'queued'") == [(0,)]

    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=30) == 0
    assert not [pid for pid in workers if alive(pid)]


def established_connections(pid: int, port: int) -> int:
    """How many TCP connections to local ``port`` process ``pid`` holds open (0 once it is gone)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    try:
        held = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except FileNotFoundError:  # a short-lived child of the master, not a worker
        return 0
    return sum(1 for link in held if link.startswith("socket:[") and link[8:-1] in inodes)


def test_a_fleet_connecting_at_once_is_spread_over_the_workers(farm: Farm) -> None:
    """A builder's keep-alive connection stays with the worker that accepted it: a fleet that
    connects at once (after a master restart) must not all land on one worker."""
    master = farm.serve()
    port = int(farm.url.rsplit(":", 1)[1])
    fleet = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    try:
        for conn in fleet:
            conn.sendall(b"GET /simple/ HTTP/1.1\r\nHost: master\r\n\r\n")
        for conn in fleet:
            assert conn.recv(4096).startswith(b"HTTP/1.1 ")  # accepted and answered
        held = sorted(established_connections(pid, port) for pid in workers_of(master.pid))
    finally:
        for conn in fleet:
            conn.close()
    assert sum(held) == 80
    assert held[-2] >= 20, f"connections per worker: {held}"  # both workers hold a fair share


def test_a_second_master_on_the_same_port_is_refused(farm: Farm) -> None:
    """With SO_REUSEPORT a second master could join the first one's port and take half its
    builders' connections; it must refuse to start instead."""
    first = farm.serve()
    second = subprocess.run(
        [sys.executable, "-m", "wheelmill", "--config", str(farm.config), "serve"],
        capture_output=True,
        text=True,
        env=client_env(),
        timeout=120,
    )
    assert second.returncode == 2
    assert "is another master running?" in second.stderr
    assert first.poll() is None
    assert httpx.get(farm.url + "/simple/").status_code < 500  # the first still serves


def test_workers_die_with_a_killed_master_and_a_new_one_takes_the_port(farm: Farm) -> None:
    master = farm.serve()
    workers = workers_of(master.pid)
    master.send_signal(signal.SIGKILL)
    master.wait()
    wait_until(lambda: not [pid for pid in workers if alive(pid)], "the orphaned workers to die", timeout=30)
    restarted = farm.serve()  # the port is free again: no orphan kept listening
    assert len(workers_of(restarted.pid)) == 2
