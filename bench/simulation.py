"""Simulated builders against a real ``wheelmill serve``, shared by the dispatch and scaling benchmarks.

The queue is filled in bulk (packages, versions, sdists, one job each); builders are asyncio tasks
that claim and complete through the real HTTP API, with or without a simulated build time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvloop
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import client_env, free_port
from wheelmill.db import jobs as queue_sql
from wheelmill.db.builders import hash_token
from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.db.tables import Builder, Job, Package, Source, TargetRow, Version

TARGET = "cp311-cp311-linux_x86_64"
console = Console(stderr=True)


def fill_queue(url: str, jobs: int) -> None:
    """Packages, versions, sdists and one open job per version, in bulk."""
    db = Database(url)
    upgrade(db)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    per_package = 10
    with db.engine.begin() as conn, Progress(console=console) as progress:
        conn.execute(
            insert(TargetRow).values(
                id=1, tag=TARGET, python_version="3.11", platform="linux_x86_64", enabled=True
            )
        )
        task = progress.add_task(f"filling a queue of {jobs:,} jobs", total=jobs)
        chunk = 20_000
        for first in range(0, jobs, chunk):
            ids = range(first + 1, min(jobs, first + chunk) + 1)
            package_ids = sorted({(i - 1) // per_package + 1 for i in ids})
            conn.execute(
                insert(Package),
                [
                    {
                        "id": p,
                        "name": f"pkg{p}",
                        "display_name": f"pkg{p}",
                        "quarantined": False,
                        "removed": False,
                        "last_serial": 0,
                        "created_at": start,
                    }
                    for p in package_ids
                    if (p - 1) * per_package >= first
                ],
            )
            released = [start + timedelta(minutes=i) for i in ids]
            conn.execute(
                insert(Version),
                [
                    {
                        "id": i,
                        "package_id": (i - 1) // per_package + 1,
                        "version": f"1.{i % per_package}",
                        "canonical": f"1.{i % per_package}",
                        "released_at": when,
                        "yanked": False,
                        "quarantined": False,
                        "removed": False,
                    }
                    for i, when in zip(ids, released, strict=True)
                ],
            )
            conn.execute(
                insert(Source),
                [
                    {
                        "id": i,
                        "version_id": i,
                        "filename": f"pkg{(i - 1) // per_package + 1}-1.{i % per_package}.tar.gz",
                        "url": "http://127.0.0.1:9/x.tar.gz",
                        "sha256": "0" * 64,
                        "size": 1,
                        "yanked": False,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Job),
                [
                    {
                        "id": i,
                        "version_id": i,
                        "target_id": 1,
                        "status": "queued",
                        "priority": 0,
                        "released_at": when,
                        "attempts": 0,
                        "updated_at": start,
                    }
                    for i, when in zip(ids, released, strict=True)
                ],
            )
            progress.update(task, completed=ids[-1])
        if not db.is_sqlite:
            for table in ("packages", "versions", "sources", "jobs", "targets"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    db.dispose()


def make_tokens(url: str, count: int) -> list[str]:
    db = Database(url)
    tokens = [f"bench-token-{n}" for n in range(count)]
    with db.engine.begin() as conn:
        conn.execute(
            insert(Builder),
            [
                {
                    "name": f"sim-{n}",
                    "token_hash": hash_token(token),
                    "state": "active",
                    "target": TARGET,
                    "registered_at": datetime.now(UTC),
                }
                for n, token in enumerate(tokens)
            ],
        )
    db.dispose()
    return tokens


def start_master(url: str, workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = workdir / "farm.toml"
    config.write_text(
        f'data_dir = "{workdir / "data"}"\ndatabase_url = "{url}"\nlisten = "127.0.0.1:{port}"\n'
        f'targets = ["{TARGET}"]\nlease_seconds = 120\npoll_seconds = 100000\nworkers = {workers}\n'
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "wheelmill", "--config", str(config), "serve"],
        env=client_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(base + "/simple/", timeout=2)
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("wheelmill serve did not start") from None
            time.sleep(0.2)


class KeepAlive:
    """A bare HTTP/1.1 keep-alive connection: a few microseconds of Python per call.

    The master and the simulated fleet share this machine's two cores; a full HTTP client would
    spend more CPU per call than the master does and the benchmark would measure itself.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str) -> None:
        self.reader = reader
        self.writer = writer
        self.headers = f"Host: master\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"

    @classmethod
    async def open(cls, base: str, token: str) -> KeepAlive:
        host, port = base.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)), token)

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\n{self.headers}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError(f"the simulated builder reads only sized bodies, not {line!r}")
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


async def simulated_builder(
    base: str,
    token: str,
    window: tuple[float, float],
    build_seconds: tuple[float, float] | None,
    latencies: list[float],
    done: list[int],
) -> None:
    """Claim and complete until the window closes, counting only what happens inside it: a call
    is timed when it starts inside the window, so the fleet's stop (its builders' last completions
    and releases, all at once) stays out of the latencies.

    With a build time, the builder first waits a random part of one build: a running fleet's
    builders are out of phase, not all asking at the same instant as processes started together.
    """
    opens, closes = window
    failure = json.dumps({"status": "failed", "duration_s": 0.0, "failure_reason": "compiler_error"}).encode()
    client = await KeepAlive.open(base, token)
    if build_seconds:
        await asyncio.sleep(random.uniform(0, build_seconds[1]))
    job = None
    try:
        while time.monotonic() < closes:
            if job is None:
                started = time.perf_counter()
                inside = opens <= time.monotonic() < closes
                status, body = await client.post("/api/v1/jobs/claim")
                if inside:
                    latencies.append(time.perf_counter() - started)
                if status == 204:
                    await asyncio.sleep(0.1)
                    continue
                if status != 200:
                    raise RuntimeError(f"claim answered {status}: {body[:200]!r}")
                job = json.loads(body)
            if build_seconds:
                await asyncio.sleep(random.uniform(*build_seconds))
            # As a real builder does: the completion also claims the next job, so its time is the
            # time this builder waits for work.
            started = time.perf_counter()
            inside = opens <= time.monotonic() < closes
            status, body = await client.post(
                f"/api/v1/leases/{job['lease_id']}/complete?claim_next=true", failure
            )
            if inside:
                latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"complete answered {status}: {body[:200]!r}")
            if opens <= time.monotonic() < closes:
                done.append(job["job_id"])
            job = json.loads(body)["next"]
        if job is not None:  # as a stopping builder does: the job goes back now, not at lease expiry
            await client.post(f"/api/v1/leases/{job['lease_id']}/release")
    finally:
        client.close()


@dataclass
class Load:
    """What one load phase measured."""

    latencies: list[float]  # seconds per call that hands out a job (claim, or complete-and-claim)
    done: list[int]  # job ids completed
    elapsed: float  # seconds
    master_cpu: float  # CPU seconds the master's processes used meanwhile
    loops_cpu: float  # of which its parent process: the publisher, reaper and follower loops

    @property
    def per_second(self) -> float:
        return len(self.done) / self.elapsed


def run_load(
    server: subprocess.Popen[bytes],
    base: str,
    tokens: list[str],
    seconds: float,
    build_seconds: tuple[float, float] | None,
    label: str,
) -> Load:
    """Drive ``tokens`` simulated builders for ``seconds`` (on uvloop: the generator stays cheap)."""
    latencies, done, (total, loops) = uvloop.run(
        _load(server.pid, base, tokens, seconds, build_seconds, label)
    )
    return Load(latencies, done, seconds, total, loops)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU of a process and its children (``serve`` forks its API workers), and of
    the process alone (there, ``serve`` runs its loops)."""
    tick = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    used = []
    for process in [pid, *map(int, children)]:
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        used.append((int(fields[11]) + int(fields[12])) / tick)
    return sum(used), used[0]


async def _load(
    pid: int,
    base: str,
    tokens: list[str],
    seconds: float,
    build_seconds: tuple[float, float] | None,
    label: str,
) -> tuple[list[float], list[int], tuple[float, float]]:
    """Measure ``seconds`` of steady state, after a warm-up of one longest build (or one second).

    Returns the claim latencies, the jobs completed and the master's CPU seconds in that window
    (all of its processes, and its parent process alone).
    """
    latencies: list[float] = []
    done: list[int] = []
    started = time.monotonic()
    opens = started + (build_seconds[1] if build_seconds else 1.0)
    closes = opens + seconds
    with Progress(console=console) as progress:
        task = progress.add_task(label, total=closes - started)
        cpu_at_open: list[tuple[float, float]] = []

        async def open_window() -> None:
            await asyncio.sleep(opens - time.monotonic())
            cpu_at_open.append(cpu_seconds(pid))

        async def tick() -> None:
            while time.monotonic() < closes:
                progress.update(
                    task, completed=time.monotonic() - started, description=f"{label}: {len(done):,} jobs"
                )
                await asyncio.sleep(0.5)

        await asyncio.gather(
            open_window(),
            tick(),
            *(
                simulated_builder(base, token, (opens, closes), build_seconds, latencies, done)
                for token in tokens
            ),
        )
    (total, loops), (total_before, loops_before) = cpu_seconds(pid), cpu_at_open[0]
    return latencies, done, (total - total_before, loops - loops_before)


def wait_for_publisher(url: str, timeout: float = 600) -> float:
    """Wait until the master has published every page the last phase's builds changed, so the
    next phase does not share the machine with that backlog; returns the seconds waited."""
    engine = create_engine(Database(url).url)
    started = time.monotonic()
    try:
        with console.status("publishing the pages of the last phase's builds"):
            while time.monotonic() - started < timeout:
                with engine.connect() as conn:
                    if not conn.execute(text("SELECT count(*) FROM pending_pages")).scalar():
                        break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"the publisher did not catch up in {timeout:.0f} s")
    finally:
        engine.dispose()
    return time.monotonic() - started


def naive_and_claim_ms(url: str) -> tuple[float, float]:
    """The naive anti-join the founding farm ran for "what next?", and one real claim, in ms."""
    naive_sql = text(
        "SELECT v.id FROM versions v WHERE NOT EXISTS (SELECT 1 FROM jobs j JOIN builds b "
        "ON b.job_id = j.id WHERE j.version_id = v.id) ORDER BY v.released_at DESC LIMIT 1"
    )
    engine = create_engine(Database(url).url)
    naive = []
    with engine.connect() as conn:
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(naive_sql).all()
            naive.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    db = Database(url)
    claims = []
    for _ in range(50):
        started = time.perf_counter()
        with db.transaction() as tx:
            queue_sql.claim(tx, 1, 1, 120)
        claims.append((time.perf_counter() - started) * 1000)
    db.dispose()
    return statistics.median(naive), statistics.median(claims)


def duplicates(url: str) -> int:
    """Jobs built to an end more than once. A build handed back (aborted) or whose builder
    vanished (lost) is not one: its job going to another builder is the queue working."""
    engine = create_engine(Database(url).url)
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT job_id FROM builds WHERE status IN ('success', 'failed') "
                "GROUP BY job_id HAVING count(*) > 1) d"
            )
        ).scalar()
    engine.dispose()
    return int(found or 0)
