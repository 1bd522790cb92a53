"""Starting the long-running parts: the master (``serve``), a builder, and the two together (``up``)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import uvicorn
from rich.progress import Progress

from wheelmill.config import Settings
from wheelmill.db import builders as builder_sql
from wheelmill.db.engine import Database
from wheelmill.db.jobs import ensure_targets, target_tags
from wheelmill.db.migrate import upgrade
from wheelmill.errors import ConfigError, WheelmillError
from wheelmill.master.app import create_app
from wheelmill.master.context import Master
from wheelmill.master.loops import start_loops, stop_loops
from wheelmill.planner import plan_target_backfill
from wheelmill.upstream.watch import add_watches

log = logging.getLogger(__name__)


def open_master(settings: Settings) -> Master:
    """Connect, migrate, and make sure the configured targets exist."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_output_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, background_checkpoints=True, serial_queries=True)
    upgrade(db)
    with db.read() as session:
        known = set(target_tags(session))
    with db.write() as session:
        target_ids = ensure_targets(session, settings.resolved_targets, settings.resolved_cflags)
    for tag in target_ids.keys() - known:  # a target added to the config: plan it over what we know
        queued = plan_target_backfill(db, target_ids[tag], skip_yanked=settings.skip_yanked)
        log.info("new target %s: %d jobs queued over the versions already known", tag, queued)
    add_watches(db, settings.watch)  # the configured watch list; `wheelmill watch add` extends it
    return Master.create(settings, db, target_ids)


def _server(settings: Settings, master: Master, *, run_loops: bool = True) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(master, run_loops=run_loops),
        host=settings.listen_host,
        port=settings.listen_port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def run_serve(settings: Settings) -> int:
    master = open_master(settings)
    log.info("master serving %s on http://%s/", settings.resolved_output_dir, settings.listen)
    if settings.workers > 1:
        return _serve_with_workers(settings, master)
    _server(settings, master).run()
    return 0


def _serve_with_workers(settings: Settings, master: Master) -> int:
    """The API in ``workers`` forked processes, each with its own socket on LISTEN; the loops in
    this one.

    Threads of one process take turns on the GIL: with the publisher rewriting pages beside the
    API, a claim waits for the publisher's time slice. As processes they run on every core.
    """
    sockets = worker_sockets(settings.listen_host, settings.listen_port, settings.workers)
    master.db.engine.dispose()  # a forked child must not share this process's connections
    children = {_fork_worker(settings, master.target_ids, sockets, sock) for sock in sockets}
    for sock in sockets:
        sock.close()
    # Builders wait on the API; pages can wait a moment. When the cores are busy the kernel
    # runs the workers first and the publisher catches up in the gaps (it batches what piled up).
    os.nice(LOOPS_NICENESS)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    loops = start_loops(master, stop)
    status = 0
    try:
        while not stop.wait(0.5):
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
                    log.error("API worker %s exited: stopping the master", pid)
                    status = 1
                    stop.set()
    finally:
        stop.set()
        _stop_workers(children)
        stop_loops(loops, stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def worker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port (SO_REUSEPORT): the kernel spreads new connections
    evenly over them, one per worker.

    With one shared socket, the worker that woke first accepted every connection waiting, and a
    builder's connection stays with the worker that accepted it: 200 builders connecting at once
    (a fleet starting, or reconnecting after a master restart) left one worker with 63% of the
    calls, and the builders on it waited in its queue. A plain bind comes first, so a port that
    another program holds, another master included, is refused rather than shared.
    """
    try:
        socket.create_server((host, port)).close()
        first = socket.create_server((host, port), backlog=2048, reuse_port=True)
    except OSError as exc:
        raise ConfigError(f"listen = {host}:{port}: {exc.strerror} (is another master running?)") from exc
    port = first.getsockname()[1]  # port 0 asked for any free port: the others join the same one
    return [first] + [
        socket.create_server((host, port), backlog=2048, reuse_port=True) for _ in range(count - 1)
    ]


def _fork_worker(
    settings: Settings, target_ids: dict[str, int], sockets: list[socket.socket], sock: socket.socket
) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for other in sockets:  # a dead worker's socket must close, not sit unaccepted in a sibling
            if other is not sock:
                other.close()
        _die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own for a graceful stop
        db = Database(settings.resolved_database_url, background_checkpoints=True, serial_queries=True)
        master = Master.create(settings, db, target_ids)
        _server(settings, master, run_loops=False).run(sockets=[sock])
        code = 0
    except BaseException:
        log.exception("API worker failed")
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    """A worker outlives no master: if the parent is killed (even SIGKILL), the kernel kills it too."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


PR_SET_PDEATHSIG = 1
LOOPS_NICENESS = 10


def _stop_workers(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while children and time.monotonic() < deadline:
        for pid in list(children):
            if os.waitpid(pid, os.WNOHANG)[0]:
                children.discard(pid)
        time.sleep(0.05)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def run_builder(
    settings: Settings,
    *,
    master_url: str,
    token: str,
    workdir: Path | None,
    max_jobs: int | None,
    root: Path | None = None,
) -> int:
    from wheelmill.builder.agent import BuilderAgent
    from wheelmill.builder.client import MasterClient
    from wheelmill.builder.sandbox import make_sandbox

    client = MasterClient(master_url, token)
    # "required" refuses to start without bubblewrap, as does a root without it; "auto" warns once.
    make_sandbox(settings.sandbox, root=root)
    agent = BuilderAgent(client, settings.sandbox, workdir or settings.data_dir / "builder", root=root)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping: the running build is handed back to the master")
        agent.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run(max_jobs)
    finally:
        client.close()
    return 0


def run_up(settings: Settings, *, watch: str | None, builders: int) -> int:
    """A whole farm in one process tree: master with its loops, plus local builder processes."""
    _check_port_free(settings)
    master = open_master(settings)
    if watch:
        add_watches(master.db, [name for name in watch.split(",") if name.strip()])
    server = _server(settings, master)
    thread = threading.Thread(target=server.run, name="wheelmill-master", daemon=True)
    thread.start()
    _wait_until_serving(server, thread)
    url = settings.resolved_base_url
    processes = [_start_local_builder(settings, master, url, number) for number in range(1, builders + 1)]
    log.info("farm up: index at %ssimple/, pages at %s (Ctrl-C stops)", url, url)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set() and thread.is_alive():
            stopping.wait(0.5)
            for process in processes:
                if process.poll() is not None:
                    raise WheelmillError(f"local builder exited with status {process.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.info("stopping builders, then the master")
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        server.should_exit = True
        thread.join(timeout=20)
    return 0


def _start_local_builder(
    settings: Settings, master: Master, url: str, number: int
) -> subprocess.Popen[bytes]:
    name = f"local-{socket.gethostname()}-{number}"[:100]
    with master.db.write() as session:
        token = builder_sql.create_token(session, name)  # rotated on every start: only this process knows it
    env = {**os.environ, "WHEELMILL_TOKEN": token}
    argv = [
        sys.executable,
        "-m",
        "wheelmill",
        "builder",
        "--master",
        url,
        "--workdir",
        str(settings.data_dir / f"builder-{number}"),
    ]
    # Its own session: Ctrl-C reaches ``up`` only, which stops the builder first so it can hand
    # its job back while the master still answers.
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _check_port_free(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.listen_host, settings.listen_port))
        except OSError as exc:
            raise WheelmillError(f"cannot listen on {settings.listen}: {exc.strerror}") from exc


def _wait_until_serving(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise WheelmillError("the master did not start")
        time.sleep(0.05)


def run_publish(settings: Settings, *, everything: bool, rewrite_logs: bool = False) -> int:
    from wheelmill.master import publishing

    master = open_master(settings)
    publisher = publishing.make_publisher(master)
    if not everything:
        publishing.publish_site(master, publisher)
        return 0
    with Progress() as progress:
        task = progress.add_task("publishing pages", total=None)
        count = publishing.publish_all(
            master,
            publisher,
            lambda done, total: progress.update(task, completed=done, total=total),
            rewrite_logs=rewrite_logs,
        )
    log.info("published %d projects", count)
    return 0
