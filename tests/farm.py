"""A real farm for integration tests: ``wheelmill serve`` and ``wheelmill builder`` processes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.helpers import client_env, free_port


class Farm:
    """One farm's configuration, with its master and builder processes (stopped by ``close``)."""

    def __init__(
        self, workdir: Path, upstream_url: str, *, database_url: str = "", **settings: object
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or f"sqlite:///{workdir / 'data' / 'wheelmill.db'}"
        values = {
            "data_dir": str(workdir / "data"),
            "database_url": self.database_url,
            "upstream": upstream_url,
            "listen": f"127.0.0.1:{self.port}",
            "poll_seconds": 2,
            **settings,
        }
        lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
        self.config = workdir / "farm.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.processes: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wheelmill", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=client_env(),
            check=True,
        )
        return done.stdout.strip()

    def serve(self, port: int | None = None) -> subprocess.Popen[bytes]:
        """Start a master (on another port for a second master sharing the database)."""
        args = ["serve"] if port is None else ["serve", "--listen", f"127.0.0.1:{port}"]
        process = self._start(["--config", str(self.config), *args], self.workdir / f"serve-{port}.log")
        url = self.url if port is None else f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), f"the master on {url}", process, timeout=60)
        return process

    def builder(
        self, name: str, master_url: str | None = None, options: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start a builder; ``options`` are more ``wheelmill builder`` options (``--root DIR``)."""
        token = self.cli("token", "create", "--builder", name)
        workdir = self.workdir / f"builder-{name}"
        args = [
            "--config",
            str(self.config),
            "builder",
            "--master",
            master_url or self.url,
            "--workdir",
            str(workdir),
            *options,
        ]
        return self._start(args, self.workdir / f"builder-{name}.log", {"WHEELMILL_TOKEN": token})

    def _start(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "wheelmill", *args],
                env={**client_env(), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def query(self, sql: str) -> list[tuple]:
        if self.database_url.startswith("sqlite"):
            with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as conn:
                return conn.execute(sql).fetchall()
        engine = create_engine(self.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def close(self) -> None:
        """Stop the newest processes first, as an operator would: builders hand their jobs back to
        a master still there to take them."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(
    condition: Callable[[], object], what: str, *watched: subprocess.Popen[bytes], timeout: float = 180
) -> None:
    """Poll ``condition`` until true; fail at once if a watched process died meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        for process in watched:
            if process.poll() is not None:
                raise AssertionError(f"a process exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/simple/", timeout=2).status_code < 500
    except httpx.TransportError:
        return False


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml(key)} = {_toml(item)}" for key, item in value.items()) + "}"
    return str(value)
