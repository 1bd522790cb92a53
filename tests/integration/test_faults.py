"""Faults with real processes: builders and masters die at the worst moments, nothing is lost or doubled."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL, database_url
from tests.farm import Farm, wait_until
from tests.helpers import free_port, processes_with
from wheelmill.testing import StandInUpstream
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import make_wheel

pytestmark = pytest.mark.slow
HOST_TARGET = "cp311-cp311-linux_x86_64"


@pytest.fixture
def farms() -> Iterator[list[Farm]]:
    made: list[Farm] = []
    yield made
    for farm in made:
        farm.close()


def leased_jobs(farm: Farm) -> list[tuple]:
    return farm.query("SELECT id, builder_id FROM jobs WHERE status = 'leased'")


def successes(farm: Farm) -> list[tuple]:
    return farm.query("SELECT job_id, count(*) FROM builds WHERE status = 'success' GROUP BY job_id")


def test_a_builder_killed_mid_build_loses_its_lease_and_another_builds_the_job(
    upstream: StandInUpstream, tmp_path: Path, farms: list[Farm]
) -> None:
    upstream.add_release("democ", "1.0", kind="cext")
    farm = Farm(tmp_path, upstream.simple_url, watch=["democ"], lease_seconds=5, targets=[HOST_TARGET])
    farms.append(farm)
    master = farm.serve()
    doomed = farm.builder("doomed")
    wait_until(lambda: leased_jobs(farm), "the first builder's claim", master, doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    assert successes(farm) == []  # it died before it could finish
    # Its build dies with it, even one whose sandbox was starting at that moment.
    workdir = str(tmp_path / "builder-doomed")
    wait_until(lambda: not processes_with(workdir), "the killed builder's build to die", timeout=10)
    survivor = farm.builder("survivor")
    wait_until(lambda: successes(farm), "the second builder's build", master, survivor, timeout=240)
    assert successes(farm) == [(1, 1)]  # exactly one successful build of the one job
    assert farm.query("SELECT status, failure_reason FROM builds ORDER BY id") == [
        ("lost", "builder_lost"),
        ("success", None),
    ]


def test_a_builder_rides_through_a_master_restart(
    upstream: StandInUpstream, tmp_path: Path, farms: list[Farm]
) -> None:
    upstream.add_release("democ", "1.0", kind="cext")
    farm = Farm(tmp_path, upstream.simple_url, watch=["democ"], lease_seconds=30, targets=[HOST_TARGET])
    farms.append(farm)
    master = farm.serve()
    builder = farm.builder("steady")
    wait_until(lambda: leased_jobs(farm), "a claim", master, builder)
    master.send_signal(signal.SIGKILL)
    master.wait()
    time.sleep(2)  # the builder's heartbeats and upload meet a dead master for a while
    master = farm.serve()
    wait_until(lambda: successes(farm), "the build to complete", master, builder, timeout=240)
    assert farm.query("SELECT status FROM builds") == [
        ("success",)
    ]  # the same lease, kept across the restart


def test_a_master_killed_mid_upload_stores_nothing_half(
    upstream: StandInUpstream, tmp_path: Path, farms: list[Farm]
) -> None:
    upstream.add_release("demo", "1.0", kind="pure")
    farm = Farm(tmp_path, upstream.simple_url, watch=["demo"], lease_seconds=60, targets=[HOST_TARGET])
    farms.append(farm)
    master = farm.serve()
    token = farm.cli("token", "create", "--builder", "slow-uploader")
    api = httpx.Client(
        base_url=farm.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert api.post("/builders", json={"target": HOST_TARGET}).status_code == 200
    wait_until(
        lambda: farm.query("SELECT count(*) FROM jobs WHERE status = 'queued'") == [(1,)], "a job", master
    )
    job = api.post("/jobs/claim").json()
    wheel = make_wheel(CoreMetadata("demo", "1.0"), "py3-none-any")
    headers = {
        "X-Sha256": hashlib.sha256(wheel.content).hexdigest(),
        "Content-Length": str(len(wheel.content)),
    }
    url = f"/leases/{job['lease_id']}/files/{wheel.filename}"

    half = len(wheel.content) // 2 // 64 * 64

    def trickle() -> Iterator[bytes]:
        for start in range(0, len(wheel.content), 64):
            if start == half:
                master.send_signal(signal.SIGKILL)  # the master dies with the upload half received
                master.wait()
            yield wheel.content[start : start + 64]
            time.sleep(0.01)

    with pytest.raises(httpx.TransportError):
        api.put(url, content=trickle(), headers=headers)
    data = tmp_path / "data"
    assert not (data / "www" / "files" / "demo").exists() or not os.listdir(data / "www" / "files" / "demo")
    assert not [p for p in (data / "staging").rglob("*") if p.is_file() and not p.name.endswith(".part")]
    assert farm.query("SELECT count(*) FROM files") == [(0,)]

    master = farm.serve()  # restarted: the lease is still the builder's, the upload is retried whole
    assert api.put(url, content=wheel.content, headers=headers).status_code == 201
    done = api.post(
        f"/leases/{job['lease_id']}/complete",
        json={"status": "success", "duration_s": 1.0, "files": [wheel.filename]},
    )
    assert done.status_code == 200, done.text
    assert farm.query("SELECT filename FROM files") == [(wheel.filename,)]
    stored = data / "www" / "files" / "demo" / wheel.filename
    assert stored.read_bytes() == wheel.content
    api.close()


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    if not PG_URL:
        pytest.skip("needs PostgreSQL (WHEELMILL_TEST_DATABASE_URL)")
    yield from database_url("postgresql", tmp_path)


def test_two_masters_on_postgresql_with_four_builders_build_each_job_once(
    upstream: StandInUpstream, tmp_path: Path, farms: list[Farm], postgres_url: str
) -> None:
    names = [f"pkg{number}" for number in range(8)]
    for name in names:
        upstream.add_release(name, "1.0", kind="pure")
    farm = Farm(
        tmp_path,
        upstream.simple_url,
        database_url=postgres_url,
        watch=names,
        lease_seconds=20,
        targets=[HOST_TARGET],
    )
    farms.append(farm)
    farm.cli("db", "upgrade")
    first = farm.serve()
    other_port = free_port()
    second = farm.serve(port=other_port)
    builders = [
        farm.builder(f"b{n}", master_url=farm.url if n % 2 else f"http://127.0.0.1:{other_port}")
        for n in range(4)
    ]
    wait_until(
        lambda: len(successes(farm)) == len(names),
        "every package built",
        first,
        second,
        *builders,
        timeout=300,
    )
    assert all(count == 1 for _, count in successes(farm))
    assert farm.query("SELECT count(*) FROM builds") == [(len(names),)]  # no job was ever built twice

    # Each loop ran in exactly one of the two masters; the index lists every package once the
    # site pages are next due (at most every 15 s: SiteSchedule).
    def listed() -> set[str]:
        index = httpx.get(
            f"http://127.0.0.1:{other_port}/simple/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        return {p["name"] for p in index.json()["projects"]} if index.status_code == 200 else set()

    wait_until(lambda: listed() >= set(names), "the index to list every package", first, second, timeout=60)
