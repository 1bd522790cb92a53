"""``wheelmill logs ingest`` as an operator runs it: on a farm's config, on nginx logs plain and rotated,
and on the lines real pip and uv leave in a log when they download a wheel."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pip
import pytest

from tests.helpers import client_env
from tests.unit.test_downloads_parse import PIP_24, UV_04, nginx_line
from wheelmill.db import downloads
from wheelmill.db.engine import Database
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import make_wheel

pytestmark = pytest.mark.slow
WHEEL = "demo-1.0-cp311-cp311-linux_armv7l.whl"


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "farm.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\ndatabase_url = "{db_url}"\n')
    return path


def wheelmill(config: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wheelmill", "--config", str(config), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=client_env(), timeout=120)


def totals(db_url: str) -> tuple[dict[str, int], dict[str, int]]:
    db = Database(db_url)
    try:
        with db.read() as session:
            by_package = downloads.downloads_by_package(session, ["demo"])
            clients = downloads.installer_breakdown(session, days=36500)
        return by_package, dict(clients.installer_versions)
    finally:
        db.dispose()


def test_ingest_counts_each_download_once_across_runs_and_rotation(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        nginx_line(PIP_24, f"/files/demo/{WHEEL}")
        + nginx_line(UV_04, f"/files/demo/{WHEEL}")
        + nginx_line(PIP_24, "/simple/demo/")
        + "a line nginx never wrote\n"
    )
    rotated = tmp_path / "access.log.2.gz"
    rotated.write_bytes(
        gzip.compress(nginx_line(UV_04, f"/files/demo/{WHEEL}", when="01/Oct/2024:08:00:00 +0000").encode())
    )

    first = wheelmill(config, "logs", "ingest", log, rotated)
    assert first.returncode == 0, first.stderr
    assert (
        "read 5 new lines from 2 of 2 logs: 3 wheel downloads counted, 1 malformed lines skipped"
        in first.stdout
    )

    again = wheelmill(config, "logs", "ingest", log, rotated)
    assert again.returncode == 0, again.stderr
    assert "read 0 new lines from 0 of 2 logs: 0 wheel downloads counted" in again.stdout
    assert f"{log}: nothing new since the last ingest" in again.stdout

    with log.open("a") as f:
        f.write(nginx_line(PIP_24, f"/files/demo/{WHEEL}"))
    grown = wheelmill(config, "logs", "ingest", log, tmp_path / "access.log.9")
    assert grown.returncode == 1
    assert "1 wheel downloads counted" in grown.stdout
    assert f"cannot read {str(tmp_path / 'access.log.9')!r}" in grown.stderr
    assert totals(db_url) == ({"demo": 4}, {"pip 24.0": 2, "uv 0.4.18": 2})


class LoggingIndex(BaseHTTPRequestHandler):
    """A one-wheel index that writes nginx's combined log, escapes included, as nginx would."""

    wheel: bytes
    filename: str
    log: Path

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # uv asks before a download whether the server takes range requests
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        if self.path == "/simple/demo/":
            body = f'<a href="/files/demo/{self.filename}">{self.filename}</a>'.encode()
        elif self.path == f"/files/demo/{self.filename}":
            body = self.wheel
        else:
            body = b""
        status = 200 if body else 404
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        agent = (self.headers.get("User-Agent") or "-").replace("\\", "\\x5C").replace('"', "\\x22")
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        with self.log.open("a") as f:
            f.write(f'127.0.0.1 - - [{stamp}] "{self.requestline}" {status} {len(body)} "-" "{agent}"\n')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    built = make_wheel(CoreMetadata(name="demo", version="1.0"), "py3-none-any")
    handler = type(
        "Handler",
        (LoggingIndex,),
        {"wheel": built.content, "filename": built.filename, "log": tmp_path / "access.log"},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/simple/", tmp_path / "access.log"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_agents_real_pip_and_uv_send_are_read(
    config: Path, db_url: str, index: tuple[str, Path], tmp_path: Path
) -> None:
    url, log = index
    env = {**client_env(), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    pip_download = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--no-deps",
        "--index-url",
        url,
    ]
    subprocess.run([*pip_download, "--dest", str(tmp_path / "pip"), "demo"], check=True, env=env, timeout=120)
    uv_install = ["uv", "pip", "install", "--python", sys.executable, "--index-url", url]
    subprocess.run([*uv_install, "--target", str(tmp_path / "uv"), "demo"], check=True, env=env, timeout=120)
    uv_version = subprocess.run(
        ["uv", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]

    result = wheelmill(config, "logs", "ingest", log)
    assert result.returncode == 0, result.stderr
    assert "0 malformed lines skipped" in result.stdout
    by_package, installers = totals(db_url)
    # uv may fetch the wheel twice (for its metadata, then to install) from a server without ranges.
    assert set(installers) == {f"pip {pip.__version__}", f"uv {uv_version}"}
    assert installers[f"pip {pip.__version__}"] == 1
    assert by_package["demo"] == sum(installers.values())
    db = Database(db_url)
    with db.read() as session:
        pythons = downloads.installer_breakdown(session, days=1).pythons
    db.dispose()
    assert [label for label, _ in pythons] == [f"{sys.version_info.major}.{sys.version_info.minor}"]
