"""The builder protocol against a real ``wheelmill serve``: tokens, leases, and the upload checks."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import client_env, free_port
from wheelmill.testing import StandInUpstream
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import make_wheel

pytestmark = pytest.mark.slow


def wheelmill(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "wheelmill", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=client_env(),
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def farm(upstream: StandInUpstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serving(upstream, tmp_path) as served:
        yield served


@contextlib.contextmanager
def serving(upstream: StandInUpstream, tmp_path: Path, settings: str = "") -> Iterator[tuple[str, Path]]:
    """A ``wheelmill serve`` watching demo (1.0.0-beta, and what else upstream has), with ``settings``
    added to its config; yields its URL and config file."""
    upstream.add_release("demo", "1.0.0-beta", kind="pure")
    port = free_port()
    config = tmp_path / "farm.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nupstream = "{upstream.simple_url}"\nlisten = "127.0.0.1:{port}"\n'
        f'watch = ["demo"]\nlease_seconds = 6\ntargets = ["cp311-cp311-linux_x86_64"]\n'
        'base_image_packages = ["zlib1g", "libssl3"]\n' + settings
    )
    wheelmill(config, "watch", "add", "demo")
    server = subprocess.Popen(
        [sys.executable, "-m", "wheelmill", "--config", str(config), "serve"],
        env=client_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/simple/demo/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not come up"
            time.sleep(0.2)
        yield url, config
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def client() -> Iterator[Callable[[str, str | None], httpx.Client]]:
    """Builder API clients, closed after the test."""
    opened: list[httpx.Client] = []

    def make(url: str, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        opened.append(httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30))
        return opened[-1]

    yield make
    for each in opened:
        each.close()


def register(api: httpx.Client) -> None:
    answer = api.post("/builders", json={"target": "cp311-cp311-linux_x86_64", "os": "test", "cpu": "x"})
    assert answer.status_code == 200, answer.text


def put(
    api: httpx.Client, lease: str, filename: str, data: bytes, sha256: str | None = None
) -> httpx.Response:
    headers = {"X-Sha256": sha256 or hashlib.sha256(data).hexdigest()}
    return api.put(f"/leases/{lease}/files/{filename}", content=data, headers=headers)


def test_tokens_leases_and_upload_checks(
    farm: tuple[str, Path], client: Callable[[str, str | None], httpx.Client]
) -> None:
    url, config = farm
    token, other_token = (
        wheelmill(config, "token", "create", "--builder", "b1"),
        wheelmill(config, "token", "create", "--builder", "b2"),
    )
    assert client(url, None).post("/jobs/claim").status_code == 401
    assert client(url, "not-a-token").post("/jobs/claim").status_code == 401
    api, other = client(url, token), client(url, other_token)
    assert api.post("/jobs/claim").status_code == 403  # must register first
    register(api)
    register(other)
    job = api.post("/jobs/claim").json()
    assert (job["package"], job["version"]) == ("demo", "1.0.0-beta")
    assert job["base_packages"] == ["zlib1g", "libssl3"]  # left out of its wheels' apt line
    assert other.post("/jobs/claim").status_code == 204  # one job, one holder
    lease = job["lease_id"]

    good = make_wheel(CoreMetadata("demo", "1.0.0b0"), "py3-none-any")  # canonical twin of 1.0.0-beta
    wrong_version = make_wheel(CoreMetadata("demo", "2.0"), "py3-none-any")
    wrong_platform = make_wheel(CoreMetadata("demo", "1.0.0b0"), "cp311-cp311-win_amd64")
    refusals = {
        "hash": put(api, lease, good.filename, good.content, sha256="0" * 64),
        "filename": put(api, lease, "demo-1.0.0b0.whl", good.content),
        "archive": put(api, lease, good.filename, b"not a zip at all"),
        "version": put(api, lease, wrong_version.filename, wrong_version.content),
        "tags": put(api, lease, wrong_platform.filename, wrong_platform.content),
    }
    for reason, answer in refusals.items():
        assert answer.status_code == 422, (reason, answer.text)
        assert answer.json()["reason"] == reason, answer.text
    assert put(other, lease, good.filename, good.content).status_code == 409  # not its lease
    assert put(api, lease, good.filename, good.content).status_code == 201
    assert put(api, lease, good.filename, good.content).status_code == 201  # the same again: idempotent

    beat = api.post(f"/leases/{lease}/heartbeat", json={"phase": "uploading", "load": 0.5})
    assert beat.status_code == 200 and beat.json()["action"] == "continue"
    log = base64.b64encode(gzip.compress(b"built <script>alert(1)</script>")).decode()
    done = api.post(
        f"/leases/{lease}/complete",
        json={"status": "success", "duration_s": 1.5, "files": [good.filename], "log_gzip_base64": log},
    )
    assert done.status_code == 200, done.text
    assert api.post(f"/leases/{lease}/heartbeat", json={}).status_code == 409  # the lease ended

    data_dir = config.parent / "data"
    stored = data_dir / "www" / "files" / "demo" / good.filename
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(good.content).hexdigest()
    deadline = time.monotonic() + 15
    while good.filename not in httpx.get(f"{url}/simple/demo/").text:
        assert time.monotonic() < deadline, "the project page was not republished"
        time.sleep(0.2)
    assert not list((data_dir / "staging").glob("*/*"))  # staging is emptied once recorded


def test_an_expired_lease_is_refused_and_requeued(
    farm: tuple[str, Path], client: Callable[[str, str | None], httpx.Client]
) -> None:
    url, config = farm
    slow, fast = (
        client(url, wheelmill(config, "token", "create", "--builder", name)) for name in ("slow", "fast")
    )
    register(slow)
    register(fast)
    job = slow.post("/jobs/claim").json()
    wheel = make_wheel(CoreMetadata("demo", "1.0.0b0"), "py3-none-any")
    assert put(slow, job["lease_id"], wheel.filename, wheel.content).status_code == 201
    time.sleep(7)  # the 6 s lease runs out without a heartbeat: the builder was lost after uploading
    assert slow.post(f"/leases/{job['lease_id']}/heartbeat", json={}).status_code == 409
    assert put(slow, job["lease_id"], wheel.filename, wheel.content).status_code == 409  # a late upload
    deadline = time.monotonic() + 10
    while (again := fast.post("/jobs/claim")).status_code == 204:  # the reaper returns it to the queue
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert again.json()["job_id"] == job["job_id"]
    staged = config.parent / "data" / "staging" / job["lease_id"]
    deadline = time.monotonic() + 20  # idle for a lease's length, then swept
    while staged.exists():  # the lost builder's upload does not sit on the master's disk forever
        assert time.monotonic() < deadline, f"{staged} was never swept"
        time.sleep(0.5)


@pytest.fixture
def more_releases(upstream: StandInUpstream) -> None:
    """Three more versions of demo, added before the farm starts."""
    for version in ("1.1", "1.2", "1.3"):
        upstream.add_release("demo", version, kind="pure")


def test_a_completion_can_lease_the_next_job(
    more_releases: None, farm: tuple[str, Path], client: Callable[[str, str | None], httpx.Client]
) -> None:
    url, config = farm
    api = client(url, wheelmill(config, "token", "create", "--builder", "busy"))
    register(api)
    failed = {"status": "failed", "duration_s": 0.1, "failure_reason": "compiler_error"}
    first = api.post("/jobs/claim").json()

    answer = api.post(f"/leases/{first['lease_id']}/complete?claim_next=true", json=failed)
    assert answer.status_code == 200, answer.text
    second = answer.json()["next"]
    assert second["job_id"] != first["job_id"] and second["lease_id"] != first["lease_id"]
    beat = api.post(f"/leases/{second['lease_id']}/heartbeat", json={})
    assert beat.status_code == 200  # a real lease, held by this builder
    assert api.post(f"/leases/{first['lease_id']}/heartbeat", json={}).status_code == 409

    wheelmill(config, "builders", "pause", "busy")
    beat = api.post(f"/leases/{second['lease_id']}/heartbeat", json={})
    assert beat.json()["action"] == "pause"  # the lease lives on; the builder is told to stop after it
    time.sleep(5.5)  # the master's token cache notices a paused builder within 5 s (the lease lasts 6)
    answer = api.post(f"/leases/{second['lease_id']}/complete?claim_next=true", json=failed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["next"] is None and answer.json()["retry_after"] > 0  # paused: no new work

    other = client(url, wheelmill(config, "token", "create", "--builder", "other"))
    register(other)
    versions = {first["version"], second["version"]}
    while (claimed := other.post("/jobs/claim")).status_code == 200:
        versions.add(claimed.json()["version"])
        answer = other.post(f"/leases/{claimed.json()['lease_id']}/complete", json=failed)
        assert answer.json().get("next") is None  # not asked for: not leased
    assert versions == {"1.0.0-beta", "1.1", "1.2", "1.3"}


def test_a_low_disk_withholds_the_next_job_but_records_the_build(
    more_releases: None,
    upstream: StandInUpstream,
    small_disk: Path,
    tmp_path: Path,
    client: Callable[[str, str | None], httpx.Client],
) -> None:
    settings = f'output_dir = "{small_disk / "www"}"\nmin_free_bytes = {32 * 2**20}\n'
    ballast = small_disk / "ballast"
    with serving(upstream, tmp_path, settings) as (url, config):
        api = client(url, wheelmill(config, "token", "create", "--builder", "b1"))
        register(api)
        first = api.post("/jobs/claim").json()
        ballast.write_bytes(bytes(40 * 2**20))  # leaves under 24 MiB of the 64
        time.sleep(1.2)  # the master looks at the disk at most once a second
        failed = {"status": "failed", "duration_s": 0.1, "failure_reason": "compiler_error"}
        answer = api.post(f"/leases/{first['lease_id']}/complete?claim_next=true", json=failed)
        assert answer.status_code == 200, answer.text
        assert answer.json()["next"] is None and answer.json()["retry_after"] > 0
        claim = api.post("/jobs/claim")
        assert claim.status_code == 204 and claim.headers["retry-after"] == "60"

        ballast.unlink()
        time.sleep(1.2)
        claim = api.post("/jobs/claim")  # room again: work again
        assert claim.status_code == 200
        assert claim.json()["job_id"] != first["job_id"]  # that build was recorded: its job is done


def test_malformed_calls_get_the_apis_usual_errors(
    more_releases: None, farm: tuple[str, Path], client: Callable[[str, str | None], httpx.Client]
) -> None:
    """Claim and complete take a fast path; what it does not handle, the API's routes answer."""
    url, config = farm
    api = client(url, wheelmill(config, "token", "create", "--builder", "b1"))
    register(api)
    lease = api.post("/jobs/claim").json()["lease_id"]
    failed = {"status": "failed", "duration_s": 0.1, "failure_reason": "compiler_error"}

    unvalidated = api.post(f"/leases/{lease}/complete", json={**failed, "status": "maybe"})
    assert unvalidated.status_code == 422
    assert unvalidated.json()["detail"][0]["loc"] == ["body", "status"]
    as_json = {"Content-Type": "application/json"}
    not_json = api.post(f"/leases/{lease}/complete", content=b"{", headers=as_json)
    assert not_json.status_code == 422
    bad_log = api.post(f"/leases/{lease}/complete", json={**failed, "log_gzip_base64": "%%%"})
    assert bad_log.status_code == 422 and bad_log.json()["reason"] == "log"
    # What the database cannot store is refused as invalid: 64-bit integers, no NUL in text (PostgreSQL).
    for heartbeat in ({"disk_free_bytes": 2**64}, {"phase": "x\x00"}):
        assert api.post(f"/leases/{lease}/heartbeat", json=heartbeat).status_code == 422
    unreal = b'{"load": 1e999}'
    assert api.post(f"/leases/{lease}/heartbeat", content=unreal, headers=as_json).status_code == 422
    too_big = api.post("/builders", json={"target": "cp311-cp311-linux_x86_64", "memory_bytes": 10**30})
    assert too_big.status_code == 422
    for no_token in (client(url, None), client(url, "not-a-token")):
        refused = no_token.post(f"/leases/{lease}/complete", json=failed)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert no_token.post("/jobs/claim").status_code == 401

    # An unusual spelling of the flag goes to the route, with the body the fast path already read.
    answer = api.post(f"/leases/{lease}/complete?claim_next=yes", json=failed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["next"]["lease_id"] != lease
    again = api.post(f"/leases/{lease}/complete?claim_next=true", json=failed)
    assert again.status_code == 409 and again.json()["error"] == "LeaseLost"
