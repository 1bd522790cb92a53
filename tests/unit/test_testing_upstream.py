"""The stand-in upstream answers like PyPI: simple index, JSON API, files, XML-RPC feed and faults."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
import xmlrpc.client
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from packaging.utils import parse_wheel_filename

from wheelmill.errors import NotFound
from wheelmill.testing import FAILING_MESSAGE, StandInUpstream, UpstreamConflict

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{SIMPLE_JSON}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.fixture
def up() -> Iterator[StandInUpstream]:
    with StandInUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def shared_client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:  # one client: building its TLS context costs a tenth of a second
        yield http


@pytest.fixture
def client(up: StandInUpstream, shared_client: httpx.Client) -> httpx.Client:
    shared_client.base_url = httpx.URL(up.url)
    return shared_client


def simple_json(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path, headers={"Accept": SIMPLE_JSON})


def feed(up: StandInUpstream, since: int = 0) -> list[list[object]]:
    with xmlrpc.client.ServerProxy(f"{up.url}/pypi", allow_none=True) as proxy:
        return proxy.changelog_since_serial(since)  # type: ignore[return-value]


def test_simple_index_lists_the_projects_the_public_can_see(
    up: StandInUpstream, client: httpx.Client
) -> None:
    up.add_release("Demo_Pure", "1.0")
    up.add_release("democ", "1.0", kind="cext")
    up.add_release("hidden", "1.0")
    up.add_release("gone", "1.0")
    up.quarantine_project("hidden")
    up.remove_project("gone")

    answer = simple_json(client, "/simple/")
    assert answer.headers["content-type"] == SIMPLE_JSON
    assert answer.headers["x-pypi-last-serial"] == str(up.serial)
    document = answer.json()
    assert document["meta"] == {"api-version": "1.1", "_last-serial": up.serial}
    assert [project["name"] for project in document["projects"]] == ["Demo_Pure", "democ"]

    html = client.get("/simple/")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert '<a href="/simple/demo-pure/">Demo_Pure</a>' in html.text
    assert '<a href="/simple/democ/">democ</a>' in html.text
    assert "hidden" not in html.text and "gone" not in html.text


def test_project_page_json_describes_every_file(up: StandInUpstream, client: httpx.Client) -> None:
    uploaded = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    up.add_release("democ", "1.0.0-beta", kind="cext", requires_python=">=3.8", upload_time=uploaded)
    up.add_wheel("democ", "1.0.0-beta", tag="py3-none-any", upload_time=uploaded)
    up.add_release("democ", "0.9", kind=None)  # no files: PyPI leaves it out of "versions"

    answer = simple_json(client, "/simple/democ/")
    assert answer.status_code == 200
    assert answer.headers["x-pypi-last-serial"] == str(up.serial)
    page = answer.json()
    assert page["meta"] == {"api-version": "1.1", "_last-serial": up.serial}
    assert page["name"] == "democ"
    assert page["versions"] == ["1.0.0-beta"]
    wheel, sdist = page["files"]  # ordered by file name, as PyPI orders them
    assert sdist["filename"] == "democ-1.0.0b0.tar.gz"
    assert wheel["filename"] == "democ-1.0.0b0-py3-none-any.whl"
    for file in (sdist, wheel):
        assert file["requires-python"] == ">=3.8"
        assert file["upload-time"] == "2024-05-06T07:08:09Z"
        assert file["yanked"] is False
        download = client.get(file["url"])
        assert download.status_code == 200
        assert int(download.headers["content-length"]) == file["size"] == len(download.content)
        assert hashlib.sha256(download.content).hexdigest() == file["hashes"]["sha256"]
    assert sdist["core-metadata"] is False
    metadata = client.get(wheel["url"] + ".metadata")
    assert hashlib.sha256(metadata.content).hexdigest() == wheel["core-metadata"]["sha256"]
    assert "Name: democ\n" in metadata.text and "Version: 1.0.0-beta\n" in metadata.text
    assert client.get(sdist["url"] + ".metadata").status_code == 404


def test_project_page_html_escapes_attributes_and_marks_yanks(
    up: StandInUpstream, client: httpx.Client
) -> None:
    sdist = up.add_release("demo-pure", "1.0", requires_python=">=3.8,<4")
    assert sdist is not None
    up.add_release("demo-pure", "2.0")
    up.add_release("demo-pure", "3.0")
    up.yank("demo-pure", "1.0", reason="broken <b>")
    up.yank("demo-pure", "2.0")

    html = client.get("/simple/demo-pure/").text
    assert f'href="{up.url}{sdist.path}#sha256={sdist.sha256}"' in html
    assert (
        'data-requires-python="&gt;=3.8,&lt;4" data-yanked="broken &lt;b&gt;">demo_pure-1.0.tar.gz</a>'
        in html
    )
    assert 'data-yanked="">demo_pure-2.0.tar.gz</a>' in html
    newest = next(line for line in html.splitlines() if ">demo_pure-3.0.tar.gz</a>" in line)
    assert "data-yanked" not in newest
    assert [file["yanked"] for file in simple_json(client, "/simple/demo-pure/").json()["files"]] == [
        "broken <b>",
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (PIP_ACCEPT, SIMPLE_JSON),
        (None, "text/html; charset=utf-8"),
        ("*/*", "text/html; charset=utf-8"),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        (f"{SIMPLE_JSON}; q=0.2, text/html", "text/html; charset=utf-8"),
        ("application/json", "text/html; charset=utf-8"),
    ],
)
def test_simple_pages_follow_accept(
    up: StandInUpstream, client: httpx.Client, accept: str | None, content_type: str
) -> None:
    up.add_release("demo-pure", "1.0")
    headers = {"Accept": accept} if accept else {}
    assert client.get("/simple/demo-pure/", headers=headers).headers["content-type"] == content_type


def test_other_spellings_redirect_as_on_pypi(up: StandInUpstream, client: httpx.Client) -> None:
    up.add_release("Demo_Pure", "1.0")
    for path in ("/simple/Demo_Pure/", "/simple/demo.pure/", "/simple/demo-pure"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["location"]) == (301, "/simple/demo-pure/")
    # The JSON API redirects to the display name instead.
    answer = client.get("/pypi/demo-pure/json")
    assert (answer.status_code, answer.headers["location"]) == (301, "/pypi/Demo_Pure/json")
    assert client.get("/pypi/demo-pure/1.0/json", follow_redirects=True).json()["info"]["name"] == "Demo_Pure"


def test_an_unchanged_poll_costs_one_304(up: StandInUpstream, client: httpx.Client) -> None:
    up.add_release("demo-pure", "1.0")
    first = simple_json(client, "/simple/demo-pure/")
    etag = first.headers["etag"]
    up.requests.clear()

    again = client.get("/simple/demo-pure/", headers={"Accept": SIMPLE_JSON, "If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["x-pypi-last-serial"] == str(up.serial)
    assert [(method, path) for method, path, _ in up.requests] == [("GET", "/simple/demo-pure/")]
    assert up.requests[0][2]["If-None-Match"] == etag

    up.add_release("demo-pure", "1.1")
    changed = client.get("/simple/demo-pure/", headers={"Accept": SIMPLE_JSON, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["versions"] == ["1.0", "1.1"]


def test_hidden_or_missing_things_are_404(up: StandInUpstream, client: httpx.Client) -> None:
    kept = up.add_release("demo-pure", "1.0")
    hidden = up.add_release("demo-pure", "2.0")
    removed = up.add_wheel("demo-pure", "1.0")
    assert kept is not None and hidden is not None
    up.quarantine_release("demo-pure", "2.0")
    up.remove_file("demo-pure", removed.filename)

    page = simple_json(client, "/simple/demo-pure/").json()
    assert [file["filename"] for file in page["files"]] == [kept.filename]
    assert client.get(hidden.path).status_code == 404
    assert client.get(removed.path).status_code == 404
    assert client.get("/pypi/demo-pure/2.0/json").status_code == 404

    up.quarantine_project("demo-pure")
    for path in ("/simple/demo-pure/", "/pypi/demo-pure/json", kept.path):
        assert client.get(path).status_code == 404
    missing = client.get("/pypi/demo-pure/json")
    assert missing.json() == {"message": "Not Found"}

    up.clear_project_quarantine("demo-pure")
    up.clear_release_quarantine("demo-pure", "2.0")
    assert client.get(hidden.path).status_code == 200
    up.remove_release("demo-pure", "2.0")
    assert client.get("/pypi/demo-pure/2.0/json").status_code == 404
    up.remove_project("demo-pure")
    for path in ("/simple/demo-pure/", "/pypi/demo-pure/json", kept.path, "/nowhere", "/simple/nothing/"):
        assert client.get(path).status_code == 404


def test_json_api_describes_the_latest_release(up: StandInUpstream, client: httpx.Client) -> None:
    up.add_release("demo", "1.0", summary="A demo", description="Long text.", dependencies=["idna>=3"])
    up.add_release("demo", "2.0", requires_python=">=3.9")
    up.add_release("demo", "3.0b1")
    up.yank("demo", "2.0", reason="broken")

    answer = client.get("/pypi/demo/json")
    assert answer.headers["x-pypi-last-serial"] == str(up.serial)
    document = answer.json()
    assert document["last_serial"] == up.serial
    # The newest final release that is not yanked, as pypi.org picks it.
    assert document["info"]["version"] == "1.0"
    assert document["info"]["summary"] == "A demo"
    assert document["info"]["description"] == "Long text."
    assert document["info"]["requires_dist"] == ["idna>=3"]
    assert set(document["releases"]) == {"1.0", "2.0", "3.0b1"}
    (file,) = document["releases"]["2.0"]
    assert (file["yanked"], file["yanked_reason"], file["requires_python"]) == (True, "broken", ">=3.9")
    assert (file["packagetype"], file["python_version"]) == ("sdist", "source")
    assert file["upload_time_iso_8601"].endswith("Z")
    download = client.get(file["url"]).content
    assert hashlib.md5(download).hexdigest() == file["digests"]["md5"]
    assert hashlib.sha256(download).hexdigest() == file["digests"]["sha256"]

    release = client.get("/pypi/demo/2.0/json").json()
    assert (release["info"]["version"], release["info"]["yanked"], release["info"]["yanked_reason"]) == (
        "2.0",
        True,
        "broken",
    )
    assert [each["filename"] for each in release["urls"]] == ["demo-2.0.tar.gz"]
    up.add_wheel("demo", "1.0", tag="py2.py3-none-any")
    (wheel,) = [
        f for f in client.get("/pypi/demo/1.0/json").json()["urls"] if f["packagetype"] == "bdist_wheel"
    ]
    assert wheel["python_version"] == "py2.py3"


def test_faults_answer_once_then_the_real_page(up: StandInUpstream, client: httpx.Client) -> None:
    up.add_release("demo", "1.0")
    good = simple_json(client, "/simple/demo/").json()

    up.fail_next("/simple/demo/", "500")
    assert simple_json(client, "/simple/demo/").status_code == 500
    up.fail_next("/simple/", "429", times=2)
    for _ in range(2):
        limited = simple_json(client, "/simple/demo/")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    up.fail_next("/simple/demo/", "truncated")
    truncated = simple_json(client, "/simple/demo/")
    assert truncated.status_code == 200 and len(truncated.content) == len(json.dumps(good)) // 2
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    up.fail_next("/pypi/demo/json", "garbage")
    garbage = client.get("/pypi/demo/json")
    assert garbage.status_code == 200 and garbage.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        garbage.json()
    assert simple_json(client, "/simple/demo/").json() == good


def test_stale_answers_show_the_state_before_the_last_change(
    up: StandInUpstream, client: httpx.Client
) -> None:
    up.add_release("demo", "1.0")
    before = up.serial
    up.add_release("demo", "2.0")

    up.fail_next("/simple/demo/", "stale")
    stale = simple_json(client, "/simple/demo/")
    assert stale.headers["x-pypi-last-serial"] == str(before)
    assert stale.json()["meta"]["_last-serial"] == before and stale.json()["versions"] == ["1.0"]
    up.fail_next("/pypi/", "stale", method="GET")
    document = client.get("/pypi/demo/json").json()
    assert (document["last_serial"], document["info"]["version"]) == (before, "1.0")
    up.fail_next("/simple/", "stale")
    assert simple_json(client, "/simple/").json()["meta"]["_last-serial"] < up.serial
    assert simple_json(client, "/simple/demo/").json()["versions"] == ["1.0", "2.0"]


def test_xmlrpc_faults(up: StandInUpstream) -> None:
    up.add_release("demo", "1.0")
    up.fail_next("/pypi", "xmlrpc-fault", method="POST")
    with xmlrpc.client.ServerProxy(f"{up.url}/pypi") as proxy:
        with pytest.raises(xmlrpc.client.Fault) as fault:
            proxy.changelog_last_serial()
        assert (fault.value.faultCode, fault.value.faultString) == (-32500, "too many requests")
        assert proxy.changelog_last_serial() == up.serial
        with pytest.raises(xmlrpc.client.Fault) as fault:
            proxy.no_such_method()
        assert fault.value.faultCode == -32601


def test_changelog_pages_across_the_cap() -> None:
    with StandInUpstream(changelog_page_size=3) as up:
        up.extend_changelog((f"p{i}", "1.0", 1_700_000_000 + i, "new release") for i in range(7))
        up.extend_changelog([("p7", None, 1_600_000_000, "remove project")])
        pages, since = [], 0
        while page := feed(up, since):
            pages.append(page)
            since = page[-1][4]  # type: ignore[assignment]
        assert [len(page) for page in pages] == [3, 3, 2]
        entries = [entry for page in pages for entry in page]
        assert [entry[4] for entry in entries] == list(range(1, 9))
        assert entries[0] == ["p0", "1.0", 1_700_000_000, "new release", 1]
        assert entries[-1] == ["p7", None, 1_600_000_000, "remove project", 8]
        with xmlrpc.client.ServerProxy(f"{up.url}/pypi") as proxy:
            assert proxy.changelog_last_serial() == 8 == up.serial


def test_every_change_is_in_the_feed_as_pypi_writes_it(up: StandInUpstream) -> None:
    up.add_release("Demo_Pure", "1.0.0-beta", upload_time=datetime(2024, 1, 1, tzinfo=UTC))
    up.add_role("demo-pure", "Owner", "alice")
    up.add_release("demo.pure", "2.0", kind=None)  # PyPI takes this spelling from now on
    wheel = up.add_wheel("demo-pure", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    up.yank("demo-pure", "1.0.0b0")
    up.unyank("demo-pure", "1.0.0-beta")
    up.quarantine_release("demo-pure", "2.0")
    up.clear_release_quarantine("demo-pure", "2.0")
    up.quarantine_project("demo-pure")
    up.clear_project_quarantine("demo-pure")
    up.remove_file("demo-pure", wheel.filename)
    up.remove_release("demo-pure", "2.0")
    up.record_event("demo-pure", "1.0.0-beta", "new release", timestamp=1_000)
    up.remove_project("demo-pure")

    entries = feed(up)
    assert [entry[4] for entry in entries] == list(range(1, up.serial + 1))
    assert entries[0] == ["Demo_Pure", None, 1_704_067_200, "create", 1]
    assert [entry[:2] + entry[3:4] for entry in entries] == [
        ["Demo_Pure", None, "create"],
        ["Demo_Pure", "1.0.0-beta", "new release"],
        ["Demo_Pure", "1.0.0-beta", "add source file demo_pure-1.0.0b0.tar.gz"],
        ["Demo_Pure", None, "add Owner alice"],
        ["demo.pure", "2.0", "new release"],
        ["demo.pure", "2.0", f"add cp311 file {wheel.filename}"],
        ["demo.pure", "1.0.0-beta", "yank release"],
        ["demo.pure", "1.0.0-beta", "unyank release"],
        ["demo.pure", "2.0", "release quarantined"],
        ["demo.pure", "2.0", "release quarantine cleared"],
        ["demo.pure", None, "project quarantined"],
        ["demo.pure", None, "project quarantine cleared"],
        ["demo.pure", "2.0", "remove file demo_pure-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"],
        ["demo.pure", "2.0", "remove release"],
        ["demo-pure", "1.0.0-beta", "new release"],
        ["demo.pure", None, "remove project"],
    ]
    assert entries[-2][2] == 1_000


def test_uploads_pypi_would_refuse_are_refused(up: StandInUpstream) -> None:
    up.add_release("demo", "1.0")
    with pytest.raises(UpstreamConflict):
        up.add_release("demo", "1.0.0")  # the same version by PEP 440
    with pytest.raises(UpstreamConflict):
        up.add_sdist("demo", "1.0", kind="cext")  # one sdist per release
    wheel = up.add_wheel("demo", "1.0")
    up.remove_file("demo", wheel.filename)
    with pytest.raises(UpstreamConflict):
        up.add_wheel("demo", "1.0")  # a file name is never used twice
    with pytest.raises(NotFound):
        up.yank("demo", "9.9")
    with pytest.raises(NotFound):
        up.add_role("nothing", "Owner", "alice")


def test_generated_files_are_well_formed(up: StandInUpstream, client: httpx.Client) -> None:
    sdist = up.add_release(
        "Demo_Pure", "1.0", requires_python=">=3.8", dependencies=["colorama; sys_platform == 'win32'"]
    )
    assert sdist is not None and sdist.filename == "demo_pure-1.0.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(client.get(sdist.path).content)) as tar:
        names = set(tar.getnames())
        assert {
            "demo_pure-1.0/PKG-INFO",
            "demo_pure-1.0/pyproject.toml",
            "demo_pure-1.0/demo_pure/__init__.py",
        } <= names
        pkg_info = tar.extractfile("demo_pure-1.0/PKG-INFO").read().decode()  # type: ignore[union-attr]
        pyproject = tomllib.loads(tar.extractfile("demo_pure-1.0/pyproject.toml").read().decode())  # type: ignore[union-attr]
    assert "Metadata-Version: 2.1\nName: Demo_Pure\nVersion: 1.0\n" in pkg_info
    assert "Requires-Dist: colorama; sys_platform == 'win32'\n" in pkg_info
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert pyproject["project"]["requires-python"] == ">=3.8"

    wheel = up.add_wheel("demo-pure", "1.0", tag="py3-none-any")
    assert parse_wheel_filename(wheel.filename)[0] == "demo-pure"
    with zipfile.ZipFile(io.BytesIO(client.get(wheel.path).content)) as archive:
        record = list(csv.reader(io.StringIO(archive.read("demo_pure-1.0.dist-info/RECORD").decode())))
        assert {row[0] for row in record} == set(archive.namelist())
        for path, digest, size in record:
            if digest:
                data = archive.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, int(size)) == (f"sha256={expected}", len(data))
        assert "Tag: py3-none-any" in archive.read("demo_pure-1.0.dist-info/WHEEL").decode()


def test_serves_quietly(up: StandInUpstream, client: httpx.Client, capfd: pytest.CaptureFixture[str]) -> None:
    up.add_release("demo", "1.0")
    for path in ("/simple/", "/simple/demo/", "/nowhere", "/pypi/demo/json"):
        client.get(path)
    assert capfd.readouterr() == ("", "")


def test_restart_keeps_the_address_and_state(up: StandInUpstream) -> None:
    up.add_release("demo", "1.0")
    url = up.url
    up.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/simple/")
    up.start()
    assert up.url == url
    assert httpx.get(f"{url}/simple/demo/", headers={"Accept": SIMPLE_JSON}).json()["versions"] == ["1.0"]


@pytest.mark.slow
def test_pip_builds_the_generated_sdists_from_the_index(up: StandInUpstream, tmp_path: Path) -> None:
    up.add_release("Demo_Pure", "1.0", kind="pure")
    up.add_release("democ", "1.0.0-beta", kind="cext")
    up.add_release("breaks", "1.0", kind="failing")
    # Only the stand-in: no pip configuration, no find-links from the environment.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def pip_wheel(out: Path, *requirements: str) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
        ]
        command += ["--index-url", up.simple_url, "--wheel-dir", str(out), *requirements]
        return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    good = pip_wheel(tmp_path / "good", "demo-pure==1.0", "democ==1.0.0b0")
    bad = pip_wheel(tmp_path / "bad", "breaks")
    good_output, _ = good.communicate(timeout=120)
    bad_output, _ = bad.communicate(timeout=120)

    assert good.returncode == 0, good_output
    site = tmp_path / "site"
    for wheel in (tmp_path / "good").glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    program = "import demo_pure, democ; print(demo_pure.hello(), democ.add(2, 3), democ._speed.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", program], env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hello from Demo_Pure 5 ")
    extension = result.stdout.split()[-1]
    assert extension.startswith(str(site / "democ" / "_speed.")) and extension.endswith(".so")

    assert bad.returncode != 0
    assert FAILING_MESSAGE in bad_output
