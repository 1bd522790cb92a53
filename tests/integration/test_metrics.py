"""/metrics, the disk guard and `wheelmill status` on a real farm: master and builder processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
TARGET = "cp311-cp311-linux_x86_64"
NOTICE = "low on disk space"  # the disk guard's notice on the home page


@pytest.fixture
def upstream_demo(upstream: StandInUpstream) -> StandInUpstream:
    upstream.add_release("demo", "1.0")
    return upstream


def farm_with(upstream: StandInUpstream, tmp_path: Path, **settings: object) -> Farm:
    return Farm(tmp_path, upstream.simple_url, watch=["demo"], targets=[TARGET], sandbox="none", **settings)


@pytest.fixture
def farm(upstream_demo: StandInUpstream, tmp_path: Path) -> Iterator[Farm]:
    running = farm_with(upstream_demo, tmp_path)
    yield running
    running.close()


def sample(text: str, name: str) -> float | None:
    """The value of one sample line, e.g. 'wheelmill_jobs{state="queued",target="..."}'."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_follow_a_build_from_queue_to_histogram(farm: Farm) -> None:
    master = farm.serve()
    wait_until(lambda: farm.query("SELECT count(*) FROM jobs") == [(1,)], "the job", master)
    metrics = httpx.get(farm.url + "/metrics").text
    assert sample(metrics, f'wheelmill_jobs{{state="queued",target="{TARGET}"}}') == 1
    assert sample(metrics, "wheelmill_disk_guard_active") == 0
    assert sample(metrics, "wheelmill_watched_packages") == 1

    # A refused upload is counted by its reason: b2 claims the job, sends a wheel with an unsafe
    # name, and hands the job back for b1 to build.
    token = farm.cli("token", "create", "--builder", "b2")
    auth = {"Authorization": f"Bearer {token}"}
    httpx.post(farm.url + "/api/v1/builders", json={"target": TARGET}, headers=auth).raise_for_status()
    lease = httpx.post(farm.url + "/api/v1/jobs/claim", headers=auth).json()["lease_id"]
    answer = httpx.put(
        f"{farm.url}/api/v1/leases/{lease}/files/bad%20name.whl",
        headers={**auth, "X-Sha256": "0" * 64},
        content=b"x",
    )
    assert (answer.status_code, answer.json()["reason"]) == (422, "filename")
    httpx.post(f"{farm.url}/api/v1/leases/{lease}/release", headers=auth).raise_for_status()
    # A wheel for a lease the builder no longer holds is refused and counted; a late completion
    # is refused too, but it is not an upload.
    late = httpx.put(
        f"{farm.url}/api/v1/leases/{lease}/files/demo-1.0-py3-none-any.whl",
        headers={**auth, "X-Sha256": "0" * 64},
        content=b"x",
    )
    failed = {"status": "failed", "duration_s": 1.0, "failure_reason": "compiler_error"}
    completion = httpx.post(f"{farm.url}/api/v1/leases/{lease}/complete", json=failed, headers=auth)
    assert (late.status_code, completion.status_code) == (409, 409)
    metrics = httpx.get(farm.url + "/metrics").text
    assert sample(metrics, 'wheelmill_uploads_refused_total{reason="filename"}') == 1
    assert sample(metrics, 'wheelmill_uploads_refused_total{reason="lease_lost"}') == 1

    builder = farm.builder("b1")
    wait_until(
        lambda: farm.query("SELECT status FROM builds WHERE status = 'success'") == [("success",)],
        "the build",
        master,
        builder,
    )
    metrics = httpx.get(farm.url + "/metrics").text
    assert sample(metrics, f'wheelmill_jobs{{state="queued",target="{TARGET}"}}') == 0
    assert sample(metrics, 'wheelmill_builds_last_hour{reason="",status="success"}') == 1
    assert sample(metrics, 'wheelmill_build_duration_seconds_bucket{le="+Inf"}') == 1
    assert sample(metrics, "wheelmill_build_duration_seconds_gcount") == 1
    assert sample(metrics, 'wheelmill_builders{online="true",state="active"}') == 2  # b1 and b2
    assert sample(metrics, 'wheelmill_uploads_refused_total{reason="filename"}') == 1
    status = farm.cli("status")
    assert "b1" in status and "1 success" in status


def test_disk_guard_pauses_claims_and_says_why(upstream_demo: StandInUpstream, tmp_path: Path) -> None:
    farm = farm_with(upstream_demo, tmp_path, min_free_bytes=2**60)  # more than any disk has
    try:
        master = farm.serve()
        wait_until(lambda: farm.query("SELECT count(*) FROM jobs") == [(1,)], "the job", master)
        token = farm.cli("token", "create", "--builder", "b1")
        auth = {"Authorization": f"Bearer {token}"}
        httpx.post(farm.url + "/api/v1/builders", json={"target": TARGET}, headers=auth).raise_for_status()
        claim = httpx.post(farm.url + "/api/v1/jobs/claim", headers=auth)
        assert claim.status_code == 204 and claim.headers["retry-after"] == "60"
        upload = httpx.put(
            farm.url + "/api/v1/leases/any/files/demo-1.0-py3-none-any.whl",
            headers={**auth, "X-Sha256": "0" * 64},
            content=b"x" * 100_000,
        )
        assert upload.status_code == 507
        assert upload.json()["reason"] == "disk_full"
        metrics = httpx.get(farm.url + "/metrics").text
        assert sample(metrics, "wheelmill_disk_guard_active") == 1
        assert sample(metrics, 'wheelmill_uploads_refused_total{reason="disk_full"}') == 1
        assert "uploads refused, builders paused" in farm.cli("status")
        assert farm.query("SELECT status FROM jobs") == [("queued",)]
    finally:
        farm.close()


@pytest.fixture
def guarded_farm(
    upstream_demo: StandInUpstream, small_disk: Path, tmp_path: Path
) -> Iterator[tuple[Farm, Path]]:
    """A farm publishing to a 64 MiB disk whose guard trips under 32 MiB free, and the path of a
    ballast file that fills it. Whole-index mode marks the site only when upstream changes:
    nothing else rewrites the home page."""
    farm = Farm(
        tmp_path,
        upstream_demo.simple_url,
        follow="all",
        targets=[TARGET],
        sandbox="none",
        output_dir=str(small_disk / "www"),
        min_free_bytes=32 * 2**20,
    )
    ballast = small_disk / "ballast"
    yield farm, ballast
    farm.close()
    ballast.unlink(missing_ok=True)


BALLAST_BYTES = 40 * 2**20  # leaves under 24 MiB of the 64


def test_home_page_notice_comes_and_goes_with_the_disk_guard(guarded_farm: tuple[Farm, Path]) -> None:
    farm, ballast = guarded_farm
    master = farm.serve()
    wait_until(lambda: home_page(farm) != "", "the first home page", master, timeout=60)
    assert NOTICE not in home_page(farm)

    ballast.write_bytes(bytes(BALLAST_BYTES))
    wait_until(lambda: NOTICE in home_page(farm), "the disk guard's notice", master, timeout=60)

    ballast.unlink()
    wait_until(lambda: NOTICE not in home_page(farm), "the notice to go", master, timeout=60)
    assert sample(httpx.get(farm.url + "/metrics").text, "wheelmill_disk_guard_active") == 0


def test_a_restarted_master_drops_a_notice_the_disk_no_longer_needs(guarded_farm: tuple[Farm, Path]) -> None:
    """The operator stops the master while the disk is full, frees space, starts it again."""
    farm, ballast = guarded_farm
    ballast.write_bytes(bytes(BALLAST_BYTES))
    master = farm.serve()
    wait_until(lambda: NOTICE in home_page(farm), "the disk guard's notice", master, timeout=60)
    master.terminate()
    master.wait(timeout=30)

    ballast.unlink()
    master = farm.serve()
    wait_until(lambda: NOTICE not in home_page(farm), "the notice to go", master, timeout=60)


def home_page(farm: Farm) -> str:
    """The home page as a browser gets it from the master."""
    answer = httpx.get(farm.url + "/")
    return answer.text if answer.status_code == 200 else ""
