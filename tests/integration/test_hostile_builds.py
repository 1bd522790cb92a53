"""Hostile sdists through one real master and one real builder: each build ends the way it should, and
the builder's machine (its HOME, /root, its processes, its secrets) is as it was.

One farm builds them all, one after another, in a fixed order (newest upload first): a plain package
right after the fork bomb shows that the builder goes on working.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import client_env, free_port, stand_in_job
from wheelmill.builder import building
from wheelmill.builder.sandbox import Limits
from wheelmill.testing import StandInUpstream
from wheelmill.testing.hostile import DAEMON_MARKER, FORK_BOMB_MARKER, HOSTILE_PREFIX, SECRET_PATH

pytestmark = pytest.mark.slow

BUILD_TIMEOUT = 20
# Package -> sdist kind, in the order the builder takes them.
BUILDS = {
    "hostile-home": "home-writes",
    "hostile-fork-bomb": "fork-bomb",
    "plain-after-bomb": "pure",
    "hostile-loop": "endless-loop",
    "hostile-git": "git-clone",
    "hostile-stdin": "stdin",
    "hostile-memory": "huge-allocation",
    "hostile-flood": "output-flood",
    "hostile-network": "network",
    "hostile-snoop": "snoop",
    "hostile-daemon": "daemon",
    "hostile-numpy": "undeclared-numpy",
}
OPEN_JOB_STATES = {"queued", "waiting", "leased"}
FARM_LIMITS = Limits()  # builders run with the sandbox's default limits, and the claim's timeout


@dataclass(frozen=True)
class Ended:
    """How one build ended, as the master recorded and published it."""

    status: str
    failure_reason: str | None
    failure_detail: str | None
    duration_s: float
    log: str  # from the published log page

    def said(self) -> list[str]:
        """What the hostile setup.py reported, line by line."""
        return [
            line.removeprefix(HOSTILE_PREFIX).strip()
            for line in self.log.splitlines()
            if HOSTILE_PREFIX in line
        ]


@dataclass
class FarmRun:
    builds: dict[str, Ended]
    token: str
    secret: str
    fork_bomb_peak: int
    host_before: dict[str, object]
    host_after: dict[str, object]
    builder_workdir: Path


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            pass
    return found


def fingerprints(*roots: Path) -> dict[str, object]:
    """Content hash and mtime of every file under roots (or of each root that is a file)."""
    found: dict[str, object] = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if path.is_file():
                found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            elif not path.exists():
                found[str(path)] = None
    return found


def wheelmill(config: Path, *args: str) -> str:
    command = [sys.executable, "-m", "wheelmill", "--config", str(config), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=client_env(), check=True
    ).stdout.strip()


def wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/simple/", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "wheelmill serve did not come up"
        time.sleep(0.2)


def job_states(database: Path) -> dict[str, str]:
    """Each package's job status (one target, so one job each)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT p.name, j.status FROM jobs j JOIN versions v ON v.id = j.version_id"
            " JOIN packages p ON p.id = v.package_id"
        ).fetchall()
    return dict(rows)


def first_builds(database: Path) -> dict[str, tuple]:
    """Each package's first finished build (the master may retry one with a remedy)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT p.name, b.id, b.status, b.failure_reason, b.failure_detail, b.duration_s FROM builds b"
            " JOIN jobs j ON j.id = b.job_id JOIN versions v ON v.id = j.version_id"
            " JOIN packages p ON p.id = v.package_id WHERE b.finished_at IS NOT NULL ORDER BY b.id DESC"
        ).fetchall()
    return {name: rest for name, *rest in rows}


def published_log(url: str, build_id: int) -> str:
    """The log text of /logs/ID/, once the publisher has written it."""
    deadline = time.monotonic() + 30
    while (page := httpx.get(f"{url}/logs/{build_id}/", timeout=30)).status_code != 200:
        assert time.monotonic() < deadline, f"log page of build {build_id} was not published"
        time.sleep(0.2)
    found = re.search(r'<pre class="log">(.*?)</pre>', page.text, re.DOTALL)
    assert found, page.text[:2000]
    return html.unescape(found[1])


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real wheelmill process, its output in a file, stopped with SIGTERM as an operator would."""
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, cwd=output.parent, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


@contextlib.contextmanager
def secret_file() -> Iterator[str]:
    """A secret in the host's /root, where the snooping build looks for it."""
    secret = secrets.token_hex(16)
    Path(SECRET_PATH).write_text(secret)
    try:
        yield secret
    finally:
        Path(SECRET_PATH).unlink(missing_ok=True)


def serve_hostile_sdists(upstream: StandInUpstream, wheels: list[Path]) -> None:
    """Every hostile sdist, each newer than the next, so the builder takes them in BUILDS order."""
    for wheel in wheels:
        upstream.add_wheel_file(wheel)
    newest = datetime.now(UTC) - timedelta(days=1)
    for rank, (name, kind) in enumerate(BUILDS.items()):
        upstream.add_release(name, "1.0", kind=kind, upload_time=newest - timedelta(minutes=rank))


def wait_for_jobs(database: Path) -> None:
    deadline = time.monotonic() + 60
    while list(job_states(database).values()).count("queued") < len(BUILDS):
        assert time.monotonic() < deadline, f"jobs were not planned: {job_states(database)}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def farm_run(
    build_dependency_wheels: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FarmRun]:
    tmp = tmp_path_factory.mktemp("hostile")
    builder_home, workdir, database = tmp / "builder-home", tmp / "builder", tmp / "data" / "wheelmill.db"
    builder_home.mkdir()
    (builder_home / ".bashrc").write_text("# the builder's own shell settings\n")
    host_files = [Path("/root/.bashrc"), Path.home() / ".bashrc", builder_home]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        secret = stack.enter_context(secret_file())
        upstream = stack.enter_context(StandInUpstream())
        serve_hostile_sdists(upstream, build_dependency_wheels)
        config = tmp / "farm.toml"
        config.write_text(
            f'data_dir = "{tmp / "data"}"\nupstream = "{upstream.simple_url}"\nlisten = "127.0.0.1:{port}"\n'
            f"build_timeout = {BUILD_TIMEOUT}\n"
        )
        wheelmill(config, "watch", "add", *BUILDS)
        token = wheelmill(config, "token", "create", "--builder", "hostile-builder")
        (builder_home / ".wheelmill-token").write_text(token)
        (tmp / "builder-token").write_text(token)  # beside the builder's workdir
        host_before = fingerprints(*host_files)
        master = [sys.executable, "-m", "wheelmill", "--config", str(config), "serve"]
        server = stack.enter_context(running(master, client_env(), tmp / "master.log"))
        wait_until_serving(url, server)
        wait_for_jobs(database)
        env = {
            **client_env(),
            "WHEELMILL_TOKEN": token,
            "HOME": str(builder_home),
            "WHEELMILL_SANDBOX": "required",
        }
        argv = [sys.executable, "-m", "wheelmill", "builder", "--master", url, "--workdir", str(workdir)]
        builder = stack.enter_context(running(argv, env, tmp / "builder.log"))
        peak = 0
        deadline = time.monotonic() + 150
        while OPEN_JOB_STATES.intersection((states := job_states(database)).values()):
            peak = max(peak, len(processes_with(FORK_BOMB_MARKER)))
            assert builder.poll() is None, (tmp / "builder.log").read_text()
            assert time.monotonic() < deadline, f"builds did not finish: {states}"
            time.sleep(0.2)
        builds = {
            name: Ended(status, reason, detail, duration, published_log(url, build_id))
            for name, (build_id, status, reason, detail, duration) in first_builds(database).items()
        }
        yield FarmRun(builds, token, secret, peak, host_before, fingerprints(*host_files), workdir)


def test_writes_to_home_stay_in_the_sandbox(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-home"]
    assert ended.status == "success", ended.log
    said = ended.said()
    assert any(re.fullmatch(r"wrote /\S+/build-\d+/home/\.bashrc", line) for line in said), said
    assert any(line.startswith("cannot write /root/.bashrc") for line in said), said
    assert farm_run.host_after == farm_run.host_before  # /root/.bashrc and the builder's own HOME
    assert list(farm_run.builder_workdir.iterdir()) == []  # the build's HOME went with its workdir


def test_git_clone_fails_fast_without_a_prompt(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-git"]
    assert ended.status == "failed" and ended.failure_reason != "timeout"
    assert ended.duration_s < BUILD_TIMEOUT / 3
    assert "Username" not in ended.log and "Password" not in ended.log
    assert any(line.startswith("git clone exited 128") for line in ended.said()), ended.log


def test_input_gets_end_of_file(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-stdin"]
    assert ended.status == "failed" and ended.duration_s < BUILD_TIMEOUT / 3
    assert "EOFError: EOF when reading a line" in ended.log


def test_an_endless_loop_is_killed_at_the_timeout(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-loop"]
    assert (ended.status, ended.failure_reason) == ("failed", "timeout")
    assert BUILD_TIMEOUT <= ended.duration_s < BUILD_TIMEOUT + 10


def test_a_fork_bomb_is_contained_and_the_builder_goes_on(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-fork-bomb"]
    assert (ended.status, ended.failure_reason) == ("failed", "timeout")
    assert 100 < farm_run.fork_bomb_peak <= FARM_LIMITS.max_processes
    assert processes_with(FORK_BOMB_MARKER) == []
    assert farm_run.builds["plain-after-bomb"].status == "success"


def test_allocating_50_gb_fails_for_want_of_memory(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-memory"]
    assert (ended.status, ended.failure_reason) == ("failed", "out_of_memory")
    assert ended.duration_s < BUILD_TIMEOUT / 3


def test_100_mb_of_output_is_capped_to_head_and_tail(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-flood"]
    assert ended.status == "success", ended.log[-2000:]
    assert len(ended.log.encode()) <= FARM_LIMITS.log_bytes + 100
    assert re.search(r"\[\.\.\. \d+ bytes cut \.\.\.\]", ended.log)
    assert "flood starts" in ended.said() and "Successfully built" in ended.log[-1000:]


def test_a_connection_to_1_1_1_1_is_refused(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-network"]
    assert (ended.status, ended.failure_reason) == ("failed", "needs_network")
    assert "Network is unreachable" in ended.log and ended.duration_s < BUILD_TIMEOUT / 3


def test_the_builders_token_and_root_are_not_visible(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-snoop"]
    assert ended.status == "success", ended.log
    assert f"{SECRET_PATH} -> FileNotFoundError" in ended.said()
    assert farm_run.secret not in ended.log and farm_run.token not in ended.log
    for build in farm_run.builds.values():
        assert farm_run.token not in build.log
    assert "builder-token" not in ended.log and "builder-home" not in ended.log  # beside its workdir: unseen
    listing = next(line for line in ended.said() if line.startswith("ls /root ->"))
    assert ".wheelmill-token-test" not in listing  # /root is absent, or holds only a bound-in Python


def test_a_daemon_dies_with_its_build(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-daemon"]
    assert ended.status == "success", ended.log
    assert any(line.startswith("left a daemon behind") for line in ended.said())
    assert processes_with(DAEMON_MARKER) == []


def test_an_undeclared_build_dependency_is_named(farm_run: FarmRun) -> None:
    ended = farm_run.builds["hostile-numpy"]
    assert (ended.status, ended.failure_reason, ended.failure_detail) == (
        "failed",
        "undeclared_build_dependency",
        "numpy",
    )


def test_the_builder_names_the_remedy_and_a_claim_with_it_builds(
    upstream: StandInUpstream, tmp_path: Path
) -> None:
    """The remedy hook: the failed build names numpy; a claim whose extra_requirements hold it builds."""
    upstream.add_release("numpy", "2.0", kind=None)
    upstream.add_wheel("numpy", "2.0")  # a stand-in numpy, enough to import
    sdist = upstream.add_release("hostile-numpy", "1.0", kind="undeclared-numpy")
    assert sdist is not None
    job = stand_in_job(upstream, "hostile-numpy", sdist, [], time_limit=60)

    def build(extra_requirements: list[str], workdir: Path) -> building.Outcome:
        workdir.mkdir()
        claim = {**job, "extra_requirements": extra_requirements}
        return building.build(claim, workdir, "required", sys.executable, threading.Event())

    failed = build([], tmp_path / "first")
    assert (failed.success, failed.failure_reason, failed.remedy) == (
        False,
        "undeclared_build_dependency",
        "numpy",
    )
    provided = build([f"{failed.remedy}>=2"], tmp_path / "second")
    assert provided.success, provided.log.decode(errors="replace")
    assert [wheel.name for wheel in provided.wheels] == ["hostile_numpy-1.0-py3-none-any.whl"]
    assert f"{HOSTILE_PREFIX} numpy 2.0" in provided.log.decode()
