"""Admin commands and the admin API on a real farm: what pip and the index show after each one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from wheelmill.testing import StandInUpstream
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import make_wheel

pytestmark = pytest.mark.slow
TARGET = "cp311-cp311-linux_x86_64"
ADMIN = "admin-secret"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def farm(upstream: StandInUpstream, tmp_path: Path) -> Iterator[Farm]:
    upstream.add_release("demo", "1.0")
    running = Farm(
        tmp_path, upstream.simple_url, watch=["demo"], targets=[TARGET], sandbox="none", admin_token=ADMIN
    )
    yield running
    running.close()


def index(farm: Farm) -> dict[str, dict]:
    """filename -> file entry of the published PEP 691 page."""
    page = httpx.get(farm.url + "/simple/demo/", headers=JSON)
    return {entry["filename"]: entry for entry in page.json()["files"]} if page.status_code == 200 else {}


def test_rebuild_yank_import_and_remove_show_in_the_index(farm: Farm, tmp_path: Path) -> None:
    master = farm.serve()
    builder = farm.builder("b1")
    wheel = "demo-1.0-py3-none-any.whl"
    wait_until(lambda: wheel in index(farm), "the built wheel on the index", master, builder)

    assert farm.cli("rebuild", "demo==1.0") == "1 jobs of demo 1.0 queued for a rebuild"
    wait_until(
        lambda: farm.query("SELECT count(*) FROM builds WHERE status = 'success'") == [(2,)],
        "the rebuild",
        master,
        builder,
    )

    farm.cli("yank", "demo==1.0", "--reason", "broken")
    wait_until(lambda: index(farm)[wheel].get("yanked") == "broken", "the yank on the index", master)
    farm.cli("unyank", "demo==1.0")
    wait_until(lambda: index(farm)[wheel].get("yanked") is False, "the unyank on the index", master)

    built = make_wheel(CoreMetadata(name="demo", version="1.0"), "cp311-cp311-linux_x86_64")
    admin = httpx.Client(base_url=farm.url + "/api/v1/admin", headers={"Authorization": f"Bearer {ADMIN}"})
    answer = admin.put(f"/files/{built.filename}", content=built.content)
    assert answer.status_code == 201, answer.text
    assert answer.json()["messages"] == [f"imported {built.filename} for {TARGET}"]
    wait_until(lambda: built.filename in index(farm), "the imported wheel on the index", master)
    pip_sees = httpx.get(farm.url + f"/files/demo/{built.filename}")
    assert pip_sees.content == built.content
    refused = admin.put("/files/demo-1.0-cp311-abi3-linux_x86_64.whl", content=b"not a zip")
    assert refused.status_code == 422 and refused.json()["reason"] == "archive"

    elsewhere = make_wheel(CoreMetadata(name="demo", version="1.0"), "cp311-abi3-linux_x86_64")
    form = {"wheel": (elsewhere.filename, elsewhere.content), "log": ("build.log", b"built by <b>hand</b>")}
    answer = admin.post("/imports", files=form)
    assert answer.status_code == 201, answer.text
    (build,) = farm.query(f"SELECT build_id FROM files WHERE filename = '{elsewhere.filename}'")
    log_page = farm.url + f"/logs/{build[0]}/"
    wait_until(lambda: httpx.get(log_page).status_code == 200, "the imported build's log page", master)
    assert "built by &lt;b&gt;hand&lt;/b&gt;" in httpx.get(log_page).text
    assert admin.post("/imports", files={"log": ("build.log", b"x")}).status_code == 422

    assert admin.post("/actions/remove", json={"package": "demo", "version": "1.0"}).status_code == 422
    removed = admin.post("/actions/remove", json={"package": "demo", "version": "1.0", "reason": "licence"})
    assert removed.json()["messages"] == ["removed demo 1.0: 3 files deleted"]
    wait_until(lambda: wheel not in index(farm), "the removal on the index", master)
    assert httpx.get(farm.url + f"/files/demo/{wheel}").status_code == 404
    assert "database, files and pages agree" in farm.cli("audit")
    stray = farm.workdir / "data" / "www" / "files" / "demo" / "demo-0.1-py3-none-any.whl"
    stray.write_bytes(b"left over")
    os.utime(stray, (0, 0))  # long ago: not a wheel whose build is completing right now
    assert admin.post("/audit").json()["extra"] == ["demo/demo-0.1-py3-none-any.whl"]
    assert admin.post("/audit", params={"fix": "true"}).status_code == 200
    assert not stray.exists() and admin.post("/audit").json()["extra"] == []
    assert httpx.post(farm.url + "/api/v1/admin/actions/skip", json={"package": "demo"}).status_code == 401
    admin.close()
