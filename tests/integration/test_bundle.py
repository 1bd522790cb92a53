"""Offline bundles end to end: a real farm (``wheelmill up``) builds what a bundle lacks, ``wheelmill
bundle`` writes it, and a fresh venv installs it with pip while pip has no network."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import client_env, free_port, fresh_venv, hears_ctrl_c
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow
HOST = str(Target.host())
# Pip may reach nothing: no index, no config, and any connection goes to a closed port.
OFFLINE = {
    "PIP_CONFIG_FILE": "/dev/null",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


@dataclass
class Farm:
    url: str
    token: str  # the admin token, "" when the farm has none

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@contextmanager
def running_farm(workdir: Path, upstream_url: str, token: str = "") -> Iterator[Farm]:
    """``wheelmill up`` against ``upstream_url``, serving once its bundle page answers."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "wheelmill",
        "up",
        "--upstream",
        upstream_url,
        "--listen",
        f"127.0.0.1:{port}",
    ]
    env = {**client_env(), "WHEELMILL_ADMIN_TOKEN": token}
    log = workdir / "up.log"  # a file, as a terminal: an unread pipe would fill and stall the farm
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=hears_ctrl_c
        )
    farm = Farm(f"http://127.0.0.1:{port}/", token)
    try:
        deadline = time.monotonic() + 60
        while not _answers(farm.url + "bundle/"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the farm did not start"
            time.sleep(0.2)
        yield farm
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        output = log.read_text(errors="replace")
    assert "Traceback" not in output, output


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stand_in(build_dependency_wheels: list[Path]) -> Iterator[StandInUpstream]:
    with StandInUpstream() as index:
        for wheel in build_dependency_wheels:
            index.add_wheel_file(wheel)
        index.add_release(
            "bundle-app",
            "1.0",
            kind="pure",
            dependencies=[
                "bundle-core>=1.0",  # transitive, with a C extension the farm must build
                'bundle-win; sys_platform == "win32"',  # not on this target: must stay out
                'bundle-modern; python_version >= "3.8"',  # on this target: must be in
                "bundle-have>=1.0",  # installed on the target already: left out
            ],
        )
        index.add_release("bundle-core", "1.0", kind="cext")
        index.add_release("bundle-win", "1.0", kind="pure")
        index.add_release("bundle-modern", "1.0", kind="pure")
        index.add_release("bundle-have", "1.0", kind="pure")
        index.add_release("bundle-have", "2.0", kind="pure")  # newer, yet the installed 1.0 satisfies
        index.add_release("bundle-broken", "1.0", kind="failing")
        yield index


@pytest.fixture(scope="module")
def farm(stand_in: StandInUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    # With an admin token, as a farm open to a network would have: bundles then need it.
    with running_farm(tmp_path_factory.mktemp("farm"), stand_in.simple_url, token="s3cret") as running:
        yield running


def bundle_cli(
    farm: Farm,
    cwd: Path,
    output: str,
    *,
    target: str = HOST,
    installed: str | None = None,
    wait: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``wheelmill bundle -r requirements.txt`` in ``cwd``, sending the farm's token as a user would."""
    argv = [sys.executable, "-m", "wheelmill", "bundle", "--master", farm.url, "-r", "requirements.txt"]
    argv += ["--target", target, "-o", output, *(["--installed", installed] if installed else [])]
    argv += ["--wait"] if wait else []
    env = {**client_env(), "WHEELMILL_ADMIN_TOKEN": farm.token, "COLUMNS": "250"}  # wide: URLs stay whole
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def target_venv(path: Path, index_url: str, installed: str, report: str = "freeze") -> tuple[Path, Path]:
    """A venv standing in for the target, with ``installed``; returns its python and ``pip REPORT``."""
    python = fresh_venv(path)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--index-url", index_url, installed]
    subprocess.run(pip, env=client_env(), check=True)
    listed = subprocess.run([str(python), "-m", "pip", report], capture_output=True, text=True, check=True)
    saved = path.parent / f"{path.name}-{report}.txt"
    saved.write_text(listed.stdout)
    return python, saved


def install_offline(bundle: Path, python: Path) -> None:
    env = {**client_env(), **OFFLINE, "PYTHON": str(python)}
    done = subprocess.run([str(bundle / "install.sh")], cwd="/", env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_bundle_installs_offline_without_what_the_target_has(
    farm: Farm, stand_in: StandInUpstream, tmp_path: Path
) -> None:
    python, freeze = target_venv(tmp_path / "target", stand_in.simple_url, "bundle-have==1.0")
    (tmp_path / "requirements.txt").write_text("bundle-app  # the application\n")
    out = tmp_path / "bundle"

    made = bundle_cli(farm, tmp_path, str(out), installed=str(freeze), wait=True)

    assert made.returncode == 0, made.stdout + made.stderr
    wheels = sorted(path.name for path in out.glob("*.whl"))
    assert [name.split("-")[0] for name in wheels] == ["bundle_app", "bundle_core", "bundle_modern"]
    assert f"-{Target.parse(HOST).platform}.whl" in wheels[1]  # built by the farm for the target
    requirements = (out / "requirements.txt").read_text()
    assert requirements.count("--hash=sha256:") == 3
    readme = (out / "README.txt").read_text()
    assert "Left out, already installed on the target:\n  bundle-have 1.0" in readme
    assert "in 3 wheels" in readme
    assert "Left out, already installed on the target: bundle-have 1.0" in made.stderr

    install_offline(out, python)
    imported = subprocess.run(
        [str(python), "-c", "import bundle_app, bundle_core, bundle_modern, bundle_have; "
         "print(bundle_core.add(2, 3), bundle_have.__version__)"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert imported.stdout.split() == ["5", "1.0"], imported.stderr
    assert subprocess.run([str(python), "-c", "import bundle_win"], capture_output=True).returncode != 0


def test_api_bundle_downloads_the_same_files(farm: Farm, stand_in: StandInUpstream, tmp_path: Path) -> None:
    freeze = "bundle-have==1.0\n"
    (tmp_path / "freeze.txt").write_text(freeze)
    (tmp_path / "requirements.txt").write_text("bundle-app\n")
    made = bundle_cli(farm, tmp_path, "cli", installed="freeze.txt", wait=True)
    assert made.returncode == 0, made.stderr

    answer = httpx.post(
        farm.url + "api/v1/bundles",
        json={"requirements": "bundle-app\n", "target": HOST, "installed": freeze},
        headers=farm.headers,
        timeout=300,
    )
    assert answer.status_code == 202, answer.text
    status = answer.json()
    assert answer.headers["Location"] == status["status_url"]
    deadline = time.monotonic() + 300
    while status["state"] == "building" and time.monotonic() < deadline:
        time.sleep(1)
        status = httpx.get(status["status_url"], timeout=300).json()
    assert status["state"] == "ready", status
    assert [p["name"] for p in status["left_out"]] == ["bundle-have"]

    archive = httpx.get(status["download_url"], timeout=60)
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = {member.name.split("/", 1)[1] for member in tar.getmembers()}
    assert names == {path.name for path in (tmp_path / "cli").iterdir()}
    assert {"install.sh", "requirements.txt", "README.txt"} < names

    page = httpx.get(status["page_url"], timeout=60)
    assert page.status_code == 200
    assert status["download_url"] in page.text and "bundle-have 1.0" in page.text


def test_page_form_makes_a_bundle(farm: Farm) -> None:
    form = httpx.get(farm.url + "bundle/", timeout=10)
    assert f'<option value="{HOST}"' in form.text
    assert 'name="token" type="password"' in form.text  # this farm has an admin token
    fields = {"requirements": "bundle-modern", "target": HOST, "installed": "", "token": farm.token}
    sent = httpx.post(farm.url + "bundle/", data=fields, timeout=300)
    assert sent.status_code == 303
    status = httpx.get(sent.headers["Location"], timeout=300)
    assert status.status_code == 200 and "bundle-modern" in status.text

    refused = httpx.post(farm.url + "bundle/", data={**fields, "requirements": "<b>nope"}, timeout=60)
    assert refused.status_code == 422
    assert "&lt;b&gt;nope" in refused.text and "<b>nope" not in refused.text  # escaped, and kept in the form
    no_token = httpx.post(farm.url + "bundle/", data={**fields, "token": "guess"}, timeout=60)
    assert no_token.status_code == 422 and "needs this farm&#39;s admin token" in no_token.text


def test_creating_a_bundle_needs_the_admin_token_when_the_farm_has_one(farm: Farm, tmp_path: Path) -> None:
    request = {"requirements": "bundle-modern\n", "target": HOST}
    for headers in ({}, {"Authorization": "Bearer guess"}):
        answer = httpx.post(farm.url + "api/v1/bundles", json=request, headers=headers, timeout=60)
        assert answer.status_code == 401
    (tmp_path / "requirements.txt").write_text("bundle-modern\n")
    refused = bundle_cli(Farm(farm.url, token=""), tmp_path, "out")
    assert refused.returncode == 2 and "admin token" in refused.stderr


def test_missing_wheels_are_listed_with_why_and_the_exit_status_says_so(farm: Farm, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("bundle-broken\n")

    queued = bundle_cli(farm, tmp_path, "first")
    assert queued.returncode == 1
    assert "not built yet" in queued.stderr and "bundle-broken" in queued.stderr

    failed = bundle_cli(farm, tmp_path, "second", wait=True)
    assert failed.returncode == 1
    assert "cannot be made" in failed.stderr and "failed" in failed.stderr
    assert f"{farm.url}logs/" in failed.stderr.replace("\n", "")
    assert not (tmp_path / "second").exists()


@pytest.mark.parametrize(
    ("requirements", "target", "freeze", "message"),
    [
        ("no-such-package-here\n", HOST, "", "no-such-package-here was not found"),
        ("bundle-have>=9\n", HOST, "", "you require bundle-have>=9"),
        ("bundle-app\n", "cp311-cp311-linux_armv7l", "", "no builder for target 'cp311-cp311-linux_armv7l'"),
        ("bundle-app\n", HOST, "bundle-have==1.0\nthis is not frozen\n", "line 2: 'this is not frozen'"),
        ("bundle-app\n-e ./src\n", HOST, "", "requirements, line 2: '-e ./src': options are not accepted"),
    ],
    ids=["unknown-package", "unsatisfiable", "unknown-target", "malformed-freeze", "option-line"],
)
def test_bad_input_is_refused_naming_the_culprit(
    farm: Farm, tmp_path: Path, requirements: str, target: str, freeze: str, message: str
) -> None:
    (tmp_path / "requirements.txt").write_text(requirements)
    (tmp_path / "freeze.txt").write_text(freeze)

    refused = bundle_cli(farm, tmp_path, "out", target=target, installed="freeze.txt")

    assert refused.returncode == 2
    assert message in " ".join(refused.stderr.split()), refused.stderr
    answer = httpx.post(
        farm.url + "api/v1/bundles",
        json={"requirements": requirements, "target": target, "installed": freeze},
        headers=farm.headers,
        timeout=120,
    )
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


@pytest.mark.pypi
def test_requests_from_pypi_installs_offline(tmp_path: Path) -> None:
    (tmp_path / "farm").mkdir()
    # The target's list comes from pip inspect here: the JSON form of --installed.
    python, inspected = target_venv(tmp_path / "target", "https://pypi.org/simple/", "idna==3.7", "inspect")
    (tmp_path / "requirements.txt").write_text("requests\n")
    out = tmp_path / "bundle"

    with running_farm(tmp_path / "farm", "https://pypi.org/simple/") as farm:
        # Upstream's wheels cover the target: nothing to build, so no --wait.
        made = bundle_cli(farm, tmp_path, str(out), installed=str(inspected))

    assert made.returncode == 0, made.stderr
    names = {path.name.split("-")[0] for path in out.glob("*.whl")}
    assert {"requests", "urllib3", "certifi"} <= names and "idna" not in names
    assert "idna 3.7" in (out / "README.txt").read_text()
    install_offline(out, python)
    subprocess.run([str(python), "-c", "import requests, idna; assert idna.__version__ == '3.7'"], check=True)
