"""Steering the fleet: kill aborts a running build at the next heartbeat, pause and resume gate claims."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
ADMIN = "admin-secret"


@pytest.fixture
def farm(upstream: StandInUpstream, tmp_path: Path) -> Iterator[Farm]:
    upstream.add_release("spin", "1.0", kind="endless-loop")
    running = Farm(
        tmp_path,
        upstream.simple_url,
        watch=["spin"],
        lease_seconds=8,
        build_timeout=600,
        admin_token=ADMIN,
        targets=["cp311-cp311-linux_x86_64"],
    )
    yield running
    running.close()


def test_kill_aborts_the_build_and_resume_lets_the_builder_claim_again(farm: Farm) -> None:
    master = farm.serve()
    builder = farm.builder("b1")
    wait_until(
        lambda: farm.query("SELECT count(*) FROM builds WHERE status = 'running'") == [(1,)],
        "the build to start",
        master,
        builder,
    )
    farm.cli("builders", "kill", "b1")
    wait_until(
        lambda: farm.query("SELECT status FROM builds") == [("aborted",)],
        "the abort",
        master,
        builder,
        timeout=60,
    )
    assert farm.query("SELECT status, reason FROM jobs") == [("queued", "build aborted by an admin")]
    assert "0 success, 0 failed, 0 lost, 1 aborted" in farm.cli("status")  # an abort is an end
    assert builder.poll() is None  # the builder lives on, idle, claiming nothing

    admin = httpx.Client(base_url=farm.url + "/api/v1/admin", headers={"Authorization": f"Bearer {ADMIN}"})
    assert httpx.post(farm.url + "/api/v1/admin/builders/b1/resume").status_code == 401
    assert admin.post("/builders/b1/resume").json()["state"] == "active"
    wait_until(
        lambda: farm.query("SELECT count(*) FROM builds") == [(2,)],
        "a new claim after resume",
        master,
        builder,
        timeout=60,
    )

    assert admin.post("/builders/b1/pause").json()["state"] == "paused"
    states = {row["name"]: row["state"] for row in admin.get("/builders").json()}
    assert states == {"b1": "paused"}
    assert admin.post("/builders/nobody/pause").status_code == 404
    admin.close()
