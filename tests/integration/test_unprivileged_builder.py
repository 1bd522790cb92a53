"""A builder as a Raspberry Pi runs it: an ordinary user, no root, no sudo. bubblewrap must still
contain every build (it needs only user namespaces), and the wheel must reach the index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from tests.helpers import client_env
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # this machine's other interpreters live under /root, shut to others


@pytest.fixture(scope="module")
def user_home() -> Iterator[Path]:
    """A home the unprivileged user owns, with wheelmill installed (not editable) in a venv there,
    as `pip install wheelmill` leaves it on a Pi. Outside pytest's temp dirs, which only root enters."""
    home = Path(tempfile.mkdtemp(prefix="wheelmill-pi-"))
    try:
        home.chmod(0o755)
        venv = home / "venv"
        subprocess.run(["uv", "venv", "--quiet", "--python", SYSTEM_PYTHON, str(venv)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(PROJECT)],
            check=True,
            env={**os.environ, "UV_NO_CONFIG": "1"},
        )
        for path in (home, *home.rglob("*")):
            os.lchown(path, NOBODY, NOBODY)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_builder_without_root_builds_in_bubblewrap(
    upstream: StandInUpstream, tmp_path: Path, user_home: Path
) -> None:
    host = str(Target.host())
    upstream.add_release("democ", "1.0", kind="cext")
    farm = Farm(tmp_path, upstream.simple_url, watch=["democ"], targets=[host])
    try:
        farm.serve()
        token = farm.cli("token", "create", "--builder", "pi")
        with (user_home / "builder.log").open("wb") as log:
            builder = subprocess.Popen(
                [str(user_home / "venv" / "bin" / "wheelmill"), "builder", "--master", farm.url,
                 "--workdir", str(user_home / "work")],
                env={**client_env(), "HOME": str(user_home), "WHEELMILL_TOKEN": token},
                cwd=user_home, stdout=log, stderr=subprocess.STDOUT,
                user=NOBODY, group=NOBODY, extra_groups=[],
            )  # fmt: skip
        farm.processes.append(builder)

        def finished() -> list[tuple]:
            return farm.query("SELECT status, environment FROM builds WHERE finished_at IS NOT NULL")

        try:
            wait_until(finished, "the unprivileged builder's build", builder, timeout=300)
        except AssertionError as failure:
            raise AssertionError((user_home / "builder.log").read_text(errors="replace")) from failure
        [(status, environment)] = finished()
        assert status == "success", httpx.get(f"{farm.url}/logs/1/", timeout=10).text
        wait_until(
            lambda: f"democ-1.0-{host}.whl" in httpx.get(f"{farm.url}/simple/democ/", timeout=10).text,
            "the wheel in the index",
        )
        environment = json.loads(environment) if isinstance(environment, str) else environment
        assert environment["sandbox"] == "bubblewrap"  # contained, not the unconfined fallback
        assert os.stat(f"/proc/{builder.pid}").st_uid == NOBODY  # still running, as that user
        assert os.stat(user_home / "work").st_uid == NOBODY  # and its builds' files are that user's
    finally:
        farm.close()
