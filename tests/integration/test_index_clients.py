"""Real clients against a published index: pip, uv and pypi-simple, via the embedded server and nginx."""

import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, DistributionPackage, PyPISimple

from tests.farm import Farm
from wheelmill import clientconfig
from wheelmill.config import Settings
from wheelmill.master.static import make_static_app
from wheelmill.publish.model import IndexFile, ProjectIndex, ProjectPage
from wheelmill.publish.publisher import Publisher

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
YANK_REASON = "broken <build> & worse"
NAME = "demo-pure"


# Clients see only the index under test: no pip.conf, find-links or constraints from the machine.
CLIENT_ENV = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "UV_"))}
CLIENT_ENV |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}


def build_wheels(work: Path, versions: list[str]) -> list[Path]:
    """Tiny pure-Python wheels built by real pip from real projects, in parallel."""
    sources = []
    for version in versions:
        source = work / f"src-{version}"
        (source / "demo_pure").mkdir(parents=True)
        (source / "demo_pure" / "__init__.py").write_text(f'VERSION = "{version}"\n')
        (source / "pyproject.toml").write_text(
            "[build-system]\n"
            'requires = ["setuptools"]\n'
            'build-backend = "setuptools.build_meta"\n'
            "[project]\n"
            'name = "demo-pure"\n'
            f'version = "{version}"\n'
            'requires-python = ">=3.8"\n'
            'description = "A wheel to install"\n'
        )
        sources.append(str(source))
    builds = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(work / "dist"),
                source,
            ],
            env=CLIENT_ENV,
        )
        for source in sources
    ]
    assert [build.wait() for build in builds] == [0] * len(builds)
    return [work / "dist" / f"demo_pure-{version}-py3-none-any.whl" for version in versions]


def metadata_of(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"{wheel.name.rsplit('-', 3)[0]}.dist-info/METADATA")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output directory holding demo-pure 1.0 and a yanked 2.0, published by Publisher."""
    work = tmp_path_factory.mktemp("index")
    publisher = Publisher(work / "www")
    files = []
    wheels = build_wheels(work, ["1.0", "2.0"])
    for wheel, yanked in zip(wheels, (None, YANK_REASON), strict=True):
        metadata = metadata_of(wheel)
        stored = publisher.files_dir(NAME) / wheel.name
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, stored)
        (stored.parent / f"{wheel.name}.metadata").write_bytes(metadata)
        files.append(
            IndexFile(
                filename=wheel.name,
                url=f"/files/{NAME}/{wheel.name}",
                sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                size=wheel.stat().st_size,
                upload_time=datetime.now(UTC),
                requires_python=">=3.8",
                yanked=yanked,
                core_metadata_sha256=hashlib.sha256(metadata).hexdigest(),
                from_farm=True,
            )
        )
    index = ProjectIndex(
        NAME, "demo_pure", ("1.0", "2.0"), tuple(files), 10, "https://pypi.org/simple/demo-pure/"
    )
    page = ProjectPage(NAME, "demo_pure", None, None, None, ("2.0", "1.0"), (), (), (), ())
    publisher.write_project(index, page)
    publisher.write_root_index([NAME], 10)
    return publisher.output_dir


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """make_static_app under uvicorn, in a thread, on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app_server = uvicorn.Server(
        uvicorn.Config(make_static_app(site), log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=app_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(10)
    sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A real `wheelmill serve` for nginx to proxy to; it follows nothing (an empty watch list)."""
    farm = Farm(tmp_path_factory.mktemp("master"), "http://127.0.0.1:9/simple/")
    try:
        farm.serve()
        yield farm
    finally:
        farm.close()


@pytest.fixture(scope="module")
def nginx(site: Path, master: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Real nginx with deploy/nginx.conf, in the foreground, pid and logs in a temp dir."""
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    server_block = (REPO / "deploy/nginx.conf").read_text()
    (prefix / "wheelmill.conf").write_text(
        server_block.replace("@OUTPUT@", str(site))
        .replace("@PORT@", f"127.0.0.1:{port}")
        .replace("@MASTER@", f"127.0.0.1:{master.port}")
    )
    # As root, workers would drop to `nobody`, who cannot enter pytest's private temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"{kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"daemon off;\n{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\naccess_log {prefix}/access.log;\n{temp_paths}include {prefix}/wheelmill.conf;\n}}\n"
    )
    process = subprocess.Popen(
        [NGINX, "-c", str(prefix / "nginx.conf"), "-p", str(prefix), "-e", str(prefix / "error.log")]
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop
        process.wait(10)


def fresh_venv(path: Path) -> Path:
    """A new venv; pip installs into it from outside with --python, which skips ensurepip's seconds."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def installed_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import demo_pure; print(demo_pure.VERSION)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def pip_install(tmp_path: Path, index: str) -> Path:
    """Install with pip into a fresh venv; return its python."""
    python = fresh_venv(tmp_path / "pip-venv")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            "--index-url",
            f"{index}/simple/",
            NAME,
        ],
        check=True,
        env=CLIENT_ENV,
    )
    return python


def uv_install(tmp_path: Path, index: str, requirement: str = NAME) -> Path:
    """Install with uv into a fresh venv; return its python."""
    python = fresh_venv(tmp_path / "uv-venv")
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--no-config",
            "--no-cache",
            "--index-url",
            f"{index}/simple/",
            "--python",
            str(python),
            requirement,
        ],
        check=True,
        env=CLIENT_ENV,
    )
    return python


def test_pip_installs_skipping_the_yanked_release(server: str, tmp_path: Path) -> None:
    assert installed_version(pip_install(tmp_path, server)) == "1.0"


def test_uv_installs(server: str, tmp_path: Path) -> None:
    assert installed_version(uv_install(tmp_path, server)) == "1.0"


def test_uv_installs_a_pinned_yanked_release(server: str, tmp_path: Path) -> None:
    # PEP 592: yanked files are skipped unless the requirement pins them exactly.
    assert installed_version(uv_install(tmp_path, server, f"{NAME}==2.0")) == "2.0"


def test_uv_installs_with_the_client_config(server: str, tmp_path: Path) -> None:
    """`wheelmill client-config --uv --write` gives uv the farm as an index searched first."""
    config = tmp_path / "uv.toml"
    clientconfig.install(Settings(base_url=server), uv=True, path=config)
    python = fresh_venv(tmp_path / "venv")
    # The default index answers nothing: only the farm, named in the file, can provide the wheel.
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--no-cache",
            "--config-file",
            str(config),
            "--default-index",
            "http://127.0.0.1:9/simple/",
            "--python",
            str(python),
            NAME,
        ],
        check=True,
        env=CLIENT_ENV,
    )
    assert installed_version(python) == "1.0"


def package_facts(package: DistributionPackage) -> tuple[object, ...]:
    return (
        package.filename,
        package.url,
        package.digests,
        package.requires_python,
        package.is_yanked,
        package.yanked_reason,
        package.has_metadata,
        package.metadata_digests,
    )


def test_pypi_simple_reads_the_same_from_html_and_json(server: str, site: Path) -> None:
    with PyPISimple(endpoint=f"{server}/simple/") as client:
        from_json = client.get_project_page(NAME, accept=ACCEPT_JSON_ONLY)
        from_html = client.get_project_page(NAME, accept=ACCEPT_HTML_ONLY)
        assert list(map(package_facts, from_json.packages)) == list(map(package_facts, from_html.packages))
        assert [p.filename for p in from_json.packages] == [
            "demo_pure-1.0-py3-none-any.whl",
            "demo_pure-2.0-py3-none-any.whl",
        ]
        good, yanked = from_json.packages
        assert good.requires_python == ">=3.8" and not good.is_yanked
        assert good.size == (site / "files" / NAME / good.filename).stat().st_size  # PEP 700, JSON only
        assert yanked.is_yanked and yanked.yanked_reason == YANK_REASON
        assert from_json.versions == ["1.0", "2.0"]
        assert from_json.repository_version == from_html.repository_version == "1.1"
        assert from_json.last_serial == "10"
        assert from_json.tracks == from_html.tracks == ["https://pypi.org/simple/demo-pure/"]
        for package in from_json.packages:
            assert package.has_metadata
            expected = (site / "files" / NAME / f"{package.filename}.metadata").read_bytes()
            assert client.get_package_metadata_bytes(package) == expected  # checks the digest too
            assert expected.startswith(b"Metadata-Version:")
        root_json = client.get_index_page(accept=ACCEPT_JSON_ONLY)
        root_html = client.get_index_page(accept=ACCEPT_HTML_ONLY)
        assert root_json.projects == root_html.projects == [NAME]
        assert root_json.last_serial == "10"  # HTML has no serial field: PyPI sends it as a header


def test_http_semantics(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        page = client.get(f"/simple/{NAME}/", headers={"Accept": JSON_ACCEPT})
        assert page.status_code == 200
        assert page.headers["content-type"] == JSON_ACCEPT
        assert page.headers["vary"] == "Accept"
        assert page.json()["name"] == NAME
        html = client.get(f"/simple/{NAME}/", headers={"Accept": "application/vnd.pypi.simple.latest+html"})
        assert html.headers["content-type"] == "application/vnd.pypi.simple.v1+html; charset=utf-8"
        assert client.get(f"/simple/{NAME}/").headers["content-type"] == "text/html; charset=utf-8"
        assert html.headers["etag"] != page.headers["etag"]

        assert client.get(f"/simple/{NAME}/", headers={"Accept": "text/plain"}).status_code == 406
        revalidated = client.get(
            f"/simple/{NAME}/", headers={"Accept": JSON_ACCEPT, "If-None-Match": page.headers["etag"]}
        )
        assert revalidated.status_code == 304 and revalidated.content == b""
        assert (
            client.get(
                f"/simple/{NAME}/",
                headers={"Accept": JSON_ACCEPT, "If-Modified-Since": page.headers["last-modified"]},
            ).status_code
            == 304
        )
        assert client.get(f"/simple/{NAME}/", headers={"If-None-Match": '"stale"'}).status_code == 200
        head = client.head(f"/simple/{NAME}/", headers={"Accept": JSON_ACCEPT})
        assert head.content == b"" and head.headers["content-length"] == str(len(page.content))
        assert head.headers["etag"] == page.headers["etag"]
        refused = client.post(f"/simple/{NAME}/", content=b"x")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"

        moved = client.get("/simple/Demo_Pure/")
        assert moved.status_code == 301 and moved.headers["location"] == f"/simple/{NAME}/"
        assert client.get(f"/simple/{NAME}").headers["location"] == f"/simple/{NAME}/"
        assert client.get("/simple/unknown-project/").status_code == 404

        wheel = client.get(f"/files/{NAME}/demo_pure-1.0-py3-none-any.whl")
        assert wheel.headers["content-type"] == "application/octet-stream"
        assert wheel.content.startswith(b"PK")
        assert client.head(f"/files/{NAME}/demo_pure-1.0-py3-none-any.whl").headers["content-length"] == str(
            len(wheel.content)
        )
        metadata = client.get(f"/files/{NAME}/demo_pure-1.0-py3-none-any.whl.metadata")
        assert metadata.headers["content-type"].startswith("text/plain")
        assert client.get("/static/wheelmill.css").headers["content-type"].startswith("text/css")
        for page in ("/simple/index.json", f"/simple/{NAME}/index.json"):
            assert client.get(page).headers["content-type"] == JSON_ACCEPT


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/files/..%2f..%2fetc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/simple/.index.html.tmp",
    ],
)
def test_paths_cannot_escape_the_output_directory(server: str, path: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", path)  # raw: no client-side normalisation of the dots
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 404 and b"root:" not in body


def test_installs_through_nginx(nginx: str, tmp_path: Path) -> None:
    assert installed_version(pip_install(tmp_path, nginx)) == "1.0"
    assert installed_version(uv_install(tmp_path, nginx)) == "1.0"
    with httpx.Client(base_url=nginx) as client:
        page = client.get(f"/simple/{NAME}/", headers={"Accept": JSON_ACCEPT})
        assert page.headers["content-type"] == JSON_ACCEPT
        assert "Accept" in page.headers["vary"].replace(" ", "").split(",")
        assert client.get(f"/simple/{NAME}/", headers={"Accept": "text/plain"}).status_code == 406
        assert (
            client.get(
                f"/simple/{NAME}/", headers={"If-None-Match": page.headers["etag"], "Accept": JSON_ACCEPT}
            ).status_code
            == 304
        )
        assert client.get("/simple/").headers["content-type"].startswith("text/html")


def test_nginx_passes_the_api_bundles_and_metrics_to_the_master(nginx: str) -> None:
    with httpx.Client(base_url=nginx) as client:
        claim = client.post("/api/v1/jobs/claim")
        assert claim.status_code == 401 and claim.json()["error"] == "AuthError"
        assert claim.headers["www-authenticate"] == "Bearer"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "wheelmill_disk_guard_active " in metrics.text
        form = client.get("/bundle/")
        assert form.status_code == 200 and "<form" in form.text
    # A wheel over nginx's default body limit (1 MiB) reaches the master, which answers for itself.
    # Refused before its body is read, the connection is closed after the answer: a client of its own.
    with httpx.Client(base_url=nginx) as client:
        upload = client.put(
            "/api/v1/leases/any/files/demo-1.0-py3-none-any.whl",
            headers={"X-Sha256": "0" * 64},
            content=bytes(3 * 2**20),
        )
        assert upload.status_code == 401 and upload.json()["error"] == "AuthError"
    # From any other address (127.0.0.2 stands in for the internet), /metrics is refused.
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=nginx, transport=elsewhere) as client:
        assert client.get("/metrics").status_code == 403
        assert client.get("/simple/").status_code == 200
