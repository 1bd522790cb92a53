"""Publishing through a real ``wheelmill serve``: merged and farm-only pages, platform aliases,
incremental rewrites, build log pages, and ``wheelmill publish --all``.

Builders are played over the builder API with httpx, so each build ends exactly as the test says.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import client_env, free_port
from wheelmill.testing import StandInUpstream
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.wheels import BuiltWheel, make_wheel

pytestmark = pytest.mark.slow

V7 = "cp311-cp311-linux_armv7l"
V6 = "cp311-cp311-linux_armv6l"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
ENVIRONMENT = {
    "os": "Raspberry Pi OS 12",
    "kernel": "6.6.31+rpt-rpi-v7",
    "python": "CPython 3.11.2",
    "pip": "23.0.1",
    "setuptools": "66.1.1",
    "compiler": "gcc (Raspbian 12.2.0-14+rpi1) 12.2.0",
    "sandbox": "bubblewrap",
}


class Farm:
    """A running master over the stand-in upstream, with helpers to play builders."""

    def __init__(self, url: str, config: Path, www: Path) -> None:
        self.url, self.config, self.www = url, config, www
        self.http = httpx.Client(base_url=url, timeout=30)
        self.clients = [self.http]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wheelmill", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=client_env(),
            check=True,
        )
        return done.stdout.strip()

    def builder(self, name: str, target: str) -> httpx.Client:
        token = self.cli("token", "create", "--builder", name)
        api = httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.clients.append(api)
        assert api.post("/builders", json={"target": target, "os": "test", "cpu": "x"}).status_code == 200
        return api

    def files(self, project: str) -> dict[str, dict]:
        page = self.http.get(f"/simple/{project}/", headers=JSON)
        assert page.status_code == 200, page.text
        return {entry["filename"]: entry for entry in page.json()["files"]}

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)


def build(api: httpx.Client, package: str, wheels: list[BuiltWheel], **report: object) -> int:
    """Claim the next job, which must be `package`'s, upload `wheels` and complete it."""
    job = api.post("/jobs/claim").json()
    assert job["package"] == package, job
    for wheel in wheels:
        answer = api.put(
            f"/leases/{job['lease_id']}/files/{wheel.filename}",
            content=wheel.content,
            headers={"X-Sha256": hashlib.sha256(wheel.content).hexdigest()},
        )
        assert answer.status_code == 201, answer.text
    log = base64.b64encode(gzip.compress(f"building {package} <script>alert(1)</script>\n".encode()))
    body = {
        "status": "success" if wheels else "failed",
        "duration_s": 12.5,
        "files": [wheel.filename for wheel in wheels],
        "log_gzip_base64": log.decode(),
        "environment": ENVIRONMENT,
        **report,
    }
    done = api.post(f"/leases/{job['lease_id']}/complete", json=body)
    assert done.status_code == 200, done.text
    return done.json()["build_id"]


def start_farm(upstream: StandInUpstream, tmp_path: Path, *, merged: bool) -> Iterator[Farm]:
    port = free_port()
    config = tmp_path / "farm.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nupstream = "{upstream.simple_url}"\nlisten = "127.0.0.1:{port}"\n'
        f'targets = ["{V7}", "{V6}"]\nmerged_index = {"true" if merged else "false"}\n'
        "poll_seconds = 3600\nlease_seconds = 60\n"
    )
    farm = Farm(f"http://127.0.0.1:{port}", config, tmp_path / "data" / "www")
    farm.cli("watch", "add", "demo", "other", "nobuild")
    server = subprocess.Popen(
        [sys.executable, "-m", "wheelmill", "--config", str(config), "serve"],
        env=client_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if all(farm.http.get(f"/simple/{name}/").status_code == 200 for name in ("demo", "other")):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not come up"
            time.sleep(0.2)
        yield farm
    finally:
        for client in farm.clients:
            client.close()
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def releases(upstream: StandInUpstream) -> StandInUpstream:
    """demo (newest, so claimed first), other, then nobuild; demo also has an upstream wheel."""
    now = datetime.now(UTC)
    upstream.add_release("nobuild", "1.0", kind="cext", upload_time=now - timedelta(hours=3))
    upstream.add_release("other", "1.0", kind="cext", upload_time=now - timedelta(hours=2))
    upstream.add_release("demo", "1.0", kind="cext", upload_time=now - timedelta(hours=1))
    upstream.add_wheel("demo", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", upload_time=now)
    return upstream


@pytest.fixture
def merged_farm(releases: StandInUpstream, tmp_path: Path) -> Iterator[Farm]:
    yield from start_farm(releases, tmp_path, merged=True)


@pytest.fixture
def farm_only(releases: StandInUpstream, tmp_path: Path) -> Iterator[Farm]:
    yield from start_farm(releases, tmp_path, merged=False)


def test_merged_farm_aliases_logs_and_incremental_pages(merged_farm: Farm) -> None:
    farm = merged_farm
    upstream_files = farm.files("demo")
    assert sorted(upstream_files) == ["demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "demo-1.0.tar.gz"]
    assert all(entry["url"].startswith("http://127.0.0.1:") for entry in upstream_files.values())
    assert sorted(farm.files("nobuild")) == ["nobuild-1.0.tar.gz"]  # known, nothing built: a page
    assert farm.http.get("/simple/unknown/").status_code == 404

    # Pages the publisher has no reason to touch keep their bytes and mtime: a marker survives.
    untouched = [farm.www / "simple/other/index.html", farm.www / "project/other/index.html"]
    for page in untouched:
        page.write_text(page.read_text() + "<!--untouched-->")
        os.utime(page, (1_000_000_000, 1_000_000_000))

    v7 = farm.builder("pi-7", V7)
    wheel = make_wheel(CoreMetadata("demo", "1.0"), V7)
    built = build(v7, "demo", [wheel], apt_packages={wheel.filename: ["libfoo1"]})
    alias = wheel.filename.replace("armv7l", "armv6l")
    farm.wait(lambda: alias in farm.files("demo"), "the armv6l alias on the simple page")

    listed = farm.files("demo")
    digest = hashlib.sha256(wheel.content).hexdigest()
    assert listed[wheel.filename]["hashes"] == listed[alias]["hashes"] == {"sha256": digest}
    stored = farm.www / "files" / "demo"
    for suffix in ("", ".metadata"):  # stored once: the alias is a hard link
        assert (stored / (wheel.filename + suffix)).stat().st_ino == (stored / (alias + suffix)).stat().st_ino
    assert farm.http.get(f"/files/demo/{alias}").content == wheel.content
    for page in untouched:
        assert page.read_text().endswith("<!--untouched-->") and page.stat().st_mtime == 1_000_000_000

    project = farm.http.get("/project/demo/").text
    assert f'href="../../logs/{built}/"' in project and "sudo apt install libfoo1" in project
    assert f"same file as {wheel.filename}" in project and digest in project
    document = farm.http.get("/project/demo/json/").json()
    files = {entry["filename"]: entry for entry in document["files"]}
    assert files[alias]["apt_packages"] == ["libfoo1"] and files[alias]["alias_of"] == wheel.filename
    assert files[wheel.filename]["size"] == len(wheel.content)

    failed = build(v7, "other", [], failure_reason="missing-header", failure_detail="foo.h: No such file")
    farm.wait(lambda: farm.http.get(f"/logs/{failed}/").status_code == 200, "the failed build's log page")
    log_page = farm.http.get(f"/logs/{failed}").text
    assert "missing-header" in log_page and "foo.h: No such file" in log_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in log_page
    for key, value in ENVIRONMENT.items():
        assert f'<th scope="row">{key}</th><td><code>{value}</code></td>' in log_page

    # A real armv6l build replaces the alias: its own bytes, its own hash.
    v6 = farm.builder("pi-6", V6)
    real = make_wheel(CoreMetadata("demo", "1.0"), V6)
    assert real.filename == alias and real.content != wheel.content
    replaced = build(v6, "demo", [real])
    real_digest = hashlib.sha256(real.content).hexdigest()
    farm.wait(lambda: farm.files("demo")[alias]["hashes"]["sha256"] == real_digest, "the real armv6l wheel")
    assert (stored / alias).stat().st_ino != (stored / wheel.filename).stat().st_ino
    assert (stored / alias).read_bytes() == real.content
    assert "same file as" not in farm.http.get("/project/demo/").text

    # publish --all rewrites every page, tampered ones included, and every build's log page.
    for page in farm.www.glob("logs/*/index.html"):
        page.unlink()
    farm.cli("publish", "--all")
    for page in untouched:
        assert not page.read_text().endswith("<!--untouched-->")
    assert {int(path.parent.name) for path in farm.www.glob("logs/*/index.html")} == {built, failed, replaced}
    stats = farm.http.get("/stats/").text
    today = datetime.now(UTC).date().isoformat()
    assert f"{today}: 2 succeeded" in stats and f"{today}: 1 failed" in stats and "missing-header: 1" in stats


def test_farm_only_index_lists_farm_wheels_alone(farm_only: Farm) -> None:
    farm = farm_only
    assert farm.files("demo") == {} and farm.files("nobuild") == {}  # known projects: pages, no 404
    assert farm.http.get("/simple/unknown/").status_code == 404
    wheel = make_wheel(CoreMetadata("demo", "1.0"), V7)
    build(farm.builder("pi-7", V7), "demo", [wheel])
    alias = wheel.filename.replace("armv7l", "armv6l")
    farm.wait(lambda: sorted(farm.files("demo")) == sorted([wheel.filename, alias]), "demo's farm wheels")
    assert all(entry["url"].startswith("../../files/demo/") for entry in farm.files("demo").values())
    assert "--index-url" not in farm.http.get("/project/demo/").text  # farm wheels alone: not the only index
