"""The founding path with real processes: ``wheelmill up`` follows the stand-in upstream, its builder
builds every version over HTTP, and real pip and uv install the farm's wheels with no build."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import client_env, free_port, fresh_venv, hears_ctrl_c
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
LOGS: dict[int, Path] = {}  # the farm's output file, by process id


def start_up(workdir: Path, upstream: StandInUpstream, port: int, watch: str) -> subprocess.Popen[bytes]:
    path = workdir / f"up-{len(LOGS)}.log"
    with path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wheelmill",
                "up",
                "--watch",
                watch,
                "--upstream",
                upstream.simple_url,
                "--listen",
                f"127.0.0.1:{port}",
            ],
            cwd=workdir,
            env=client_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=hears_ctrl_c,
        )
    LOGS[process.pid] = path
    return process


def output(process: subprocess.Popen[bytes]) -> str:
    """What the farm printed so far. It goes to a file, as a terminal would take it: a pipe nobody
    reads while pip runs would fill and stall the farm's logging, and with it the farm."""
    return LOGS[process.pid].read_text(errors="replace")


def farm_wheels(port: int, project: str) -> list[str]:
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/simple/{project}/", headers=SIMPLE_JSON, timeout=5)
    except httpx.TransportError:
        return []
    if page.status_code != 200:
        return []
    return [f["filename"] for f in page.json()["files"] if f["url"].startswith(("/", "../"))]


def wait_for(condition, what: str, process: subprocess.Popen[bytes], timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"wheelmill up exited ({process.returncode}) waiting for {what}:\n" + output(process)
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> str:
    """Ctrl-C, as a person would; what the farm printed, whole, if it does not stop in time."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("not stopped 60 s after Ctrl-C:\n" + output(process)) from None
    assert process.returncode == 0, output(process)
    return output(process)


def build_count(workdir: Path) -> int:
    with sqlite3.connect(workdir / "wheelmill-data" / "wheelmill.db") as conn:
        return conn.execute("SELECT count(*) FROM builds WHERE status = 'success'").fetchone()[0]


def test_up_builds_every_version_and_pip_installs_without_building(
    upstream: StandInUpstream, tmp_path: Path
) -> None:
    upstream.add_release("Demo_Pure", "1.0", kind="pure", summary="a <b>pure</b> package")
    upstream.add_release("Demo_Pure", "1.1", kind="pure")
    upstream.add_release("democ", "1.0.0-beta", kind="cext")  # upstream spelling differs from the wheel's
    upstream.add_release("democ", "2.0", kind="cext")
    upstream.add_wheel("democ", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")  # covered: not built
    upstream.add_release("broken", "0.1", kind="failing")
    port = free_port()
    farm = start_up(tmp_path, upstream, port, "demo-pure,democ,broken")
    try:
        wait_for(lambda: len(farm_wheels(port, "demo-pure")) == 2, "demo-pure's two wheels", farm)
        wait_for(lambda: len(farm_wheels(port, "democ")) == 1, "democ 1.0.0b0's wheel", farm)
        assert farm_wheels(port, "democ") == ["democ-1.0.0b0-cp311-cp311-linux_x86_64.whl"]
        # A known project whose only build failed still has a page: pip gets no 404.
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/simple/broken/").status_code == 200,
            "broken's page",
            farm,
        )

        python = fresh_venv(tmp_path / "venv")
        index = f"http://127.0.0.1:{port}/simple/"
        installed = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--only-binary",
                ":all:",
                "--index-url",
                index,
                "demo-pure==1.0",
                "democ==1.0.0b0",
            ],
            capture_output=True,
            text=True,
            env=client_env(),
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "linux_x86_64.whl" in installed.stdout
        imported = subprocess.run(
            [str(python), "-c", "import demo_pure, democ; print(demo_pure.hello(), democ.add(2, 3))"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "5" in imported.stdout

        uv_python = fresh_venv(tmp_path / "uv-venv")
        uv = subprocess.run(
            [
                shutil.which("uv") or "uv",
                "pip",
                "install",
                "--python",
                str(uv_python),
                "--no-cache",
                "--index-url",
                index,
                "democ==1.0.0b0",
            ],
            capture_output=True,
            text=True,
            env=client_env(),
        )
        assert uv.returncode == 0, uv.stderr
        subprocess.run([str(uv_python), "-c", "import democ; assert democ.add(1, 1) == 2"], check=True)
    finally:
        if farm.poll() is None:
            output = stop(farm)
            assert "Traceback" not in output, output

    built = build_count(tmp_path)
    assert built == 3  # two demo-pure, one democ; broken failed, democ 2.0 covered by upstream

    # Running it again resumes where it stopped: nothing is rebuilt, the index is served again.
    upstream.add_release("Demo_Pure", "1.2", kind="pure")
    again = start_up(tmp_path, upstream, port, "demo-pure")
    try:
        wait_for(lambda: len(farm_wheels(port, "demo-pure")) == 3, "demo-pure 1.2", again)
    finally:
        stop(again)
    assert build_count(tmp_path) == built + 1
