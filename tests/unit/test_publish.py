"""The publisher's output: simple index, pages, atomic writes and removals."""

import json
import os
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest

from wheelmill.errors import InvalidName
from wheelmill.publish.model import (
    BuildCell,
    BuilderRow,
    BuildLogPage,
    FarmFile,
    IndexFile,
    ProjectIndex,
    ProjectPage,
    RecentBuild,
    SearchEntry,
    SiteSummary,
    Stats,
)
from wheelmill.publish.publisher import Publisher
from wheelmill.publish.writer import write_bytes_atomic, write_chunks_atomic, write_directory_atomic

SCRIPT = "<script>alert('pwned')</script>"
WHEEL = "demo_pure-1.0-py3-none-any.whl"
TARGET = "cp311-cp311-linux_armv7l"
ALIAS = "demo_pure-1.0-cp311-cp311-linux_armv6l.whl"  # published as another platform, same bytes


class Anchors(HTMLParser):
    """The <a> and <meta> tags of a page, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.metas: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "meta":
            self.metas.append(dict(attrs))


def parse(html: str) -> Anchors:
    parser = Anchors()
    parser.feed(html)
    return parser


def project_index() -> ProjectIndex:
    farm = IndexFile(
        filename=WHEEL,
        url=f"/files/demo-pure/{WHEEL}",
        sha256="a" * 64,
        size=1234,
        upload_time=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        requires_python=">=3.8",
        yanked=None,
        core_metadata_sha256="b" * 64,
        from_farm=True,
    )
    yanked = IndexFile(
        filename="demo_pure-0.9.tar.gz",
        url="https://files.example.org/demo_pure-0.9.tar.gz",
        sha256="c" * 64,
        size=99,
        upload_time=datetime(2023, 1, 2, 3, 4, 5, 600000),
        requires_python="<4,>=3.6",
        yanked='broken "badly" <b>',
        core_metadata_sha256=None,
        from_farm=False,
    )
    bare_yank = IndexFile(
        "demo_pure-0.8.tar.gz",
        "https://files.example.org/demo_pure-0.8.tar.gz",
        "d" * 64,
        10,
        None,
        None,
        "",
        None,
        False,
    )
    return ProjectIndex(
        name="demo-pure",
        display_name="Demo_Pure",
        versions=("0.8", "0.9", "1.0", "1.1"),
        files=(farm, yanked, bare_yank),
        last_serial=4242,
        tracks="https://pypi.org/simple/demo-pure/",
    )


def project_page() -> ProjectPage:
    return ProjectPage(
        name="demo-pure",
        display_name="Demo_Pure",
        summary="A demo <em>package</em>",
        description=f"Hello\n{SCRIPT}",
        upstream_url="https://pypi.org/project/demo-pure/",
        versions=("1.1", "1.0"),
        targets=(TARGET, "cp312-cp312-linux_armv7l"),
        cells=(
            BuildCell("1.0", TARGET, "built", 7, None),
            BuildCell("1.1", TARGET, "failed", 8, "missing <libfoo.h>"),
        ),
        files=(
            FarmFile(
                WHEEL, f"/files/demo-pure/{WHEEL}", "1.0", TARGET, 1234, "a" * 64, 7, ("libfoo1",)
            ),
            FarmFile(
                ALIAS,
                f"/files/demo-pure/{ALIAS}",
                "1.0",
                TARGET,
                1234,
                "a" * 64,
                7,
                ("libfoo1",),
                WHEEL,
            ),
        ),
        apt_packages=("libfoo1", "libbar2"),
    )


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    return Publisher(tmp_path / "www", base_url="https://wheels.example.org/")


@pytest.fixture
def published(publisher: Publisher) -> Path:
    publisher.write_project(project_index(), project_page())
    return publisher.output_dir


def test_simple_html_carries_every_pep(published: Path) -> None:
    html = (published / "simple/demo-pure/index.html").read_text()
    page = parse(html)
    metas = {meta["name"]: meta["content"] for meta in page.metas if "name" in meta}
    assert metas == {"pypi:repository-version": "1.1", "pypi:tracks": "https://pypi.org/simple/demo-pure/"}
    farm, yanked, bare_yank = page.anchors
    assert farm["href"] == f"../../files/demo-pure/{WHEEL}#sha256={'a' * 64}"
    assert farm["data-requires-python"] == ">=3.8"
    assert 'data-requires-python="&gt;=3.8"' in html
    assert farm["data-core-metadata"] == farm["data-dist-info-metadata"] == f"sha256={'b' * 64}"
    assert "data-yanked" not in farm
    assert yanked["href"] == f"https://files.example.org/demo_pure-0.9.tar.gz#sha256={'c' * 64}"
    assert yanked["data-yanked"] == 'broken "badly" <b>'
    assert "data-core-metadata" not in yanked and "data-dist-info-metadata" not in yanked
    assert "&lt;4,&gt;=3.6" in html and "&lt;b&gt;" in html
    assert bare_yank["data-yanked"] == ""
    assert "data-requires-python" not in bare_yank


def test_simple_json_matches_html(published: Path) -> None:
    document = json.loads((published / "simple/demo-pure/index.json").read_text())
    assert document["meta"] == {
        "api-version": "1.1",
        "_last-serial": 4242,
        "tracks": ["https://pypi.org/simple/demo-pure/"],
    }
    assert document["name"] == "demo-pure"
    assert document["versions"] == ["0.8", "0.9", "1.0", "1.1"]
    farm, yanked, bare_yank = document["files"]
    assert farm == {
        "filename": WHEEL,
        "url": f"../../files/demo-pure/{WHEEL}",
        "hashes": {"sha256": "a" * 64},
        "requires-python": ">=3.8",
        "yanked": False,
        "core-metadata": {"sha256": "b" * 64},
        "dist-info-metadata": {"sha256": "b" * 64},
        "size": 1234,
        "upload-time": "2024-05-06T07:08:09Z",
    }
    assert yanked["yanked"] == 'broken "badly" <b>'
    assert yanked["core-metadata"] is False and yanked["dist-info-metadata"] is False
    assert yanked["upload-time"] == "2023-01-02T03:04:05.600000Z"  # naive times are UTC
    assert bare_yank["yanked"] is True and "upload-time" not in bare_yank
    html = parse((published / "simple/demo-pure/index.html").read_text())
    assert [f["url"] + "#sha256=" + f["hashes"]["sha256"] for f in document["files"]] == [
        a["href"] for a in html.anchors
    ]


def test_root_index_lists_every_project(publisher: Publisher) -> None:
    publisher.write_root_index((name for name in ["alpha", "demo-pure", "zeta"]), last_serial=7)
    root = publisher.output_dir / "simple"
    assert [a["href"] for a in parse((root / "index.html").read_text()).anchors] == [
        "alpha/",
        "demo-pure/",
        "zeta/",
    ]
    assert json.loads((root / "index.json").read_text()) == {
        "meta": {"api-version": "1.1", "_last-serial": 7},
        "projects": [{"name": "alpha"}, {"name": "demo-pure"}, {"name": "zeta"}],
    }


def test_project_page_escapes_and_instructs(published: Path) -> None:
    html = (published / "project/demo-pure/index.html").read_text()
    assert SCRIPT not in html and "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert "<em>" not in html
    for command in (
        "pip install --extra-index-url",
        "pip install --index-url",
        "uv pip install --extra-index-url",
        "uv pip install --index-url",
    ):
        assert f"{command} https://wheels.example.org/simple/ demo-pure" in html
    assert "sudo apt install libfoo1 libbar2" in html
    # Links within the site are relative, so they work wherever the site is mounted.
    page_url = "https://wheels.example.org/mirror/project/demo-pure/"
    links = [urljoin(page_url, a["href"] or "") for a in parse(html).anchors]
    site = "https://wheels.example.org/mirror"
    assert f"{site}/logs/7/" in links and f"{site}/logs/8/" in links
    assert f"{site}/files/demo-pure/{WHEEL}" in links
    assert "a" * 64 in html and "1.2 kB" in html
    assert "missing &lt;libfoo.h&gt;" in html
    assert f"same file as {WHEEL}" in html and f"{site}/files/demo-pure/{ALIAS}" in links
    assert 'href="/static/wheelmill.css"' in html
    assert 'http-equiv="Content-Security-Policy"' in html


def test_build_and_file_tables_show_builder_text_as_text(publisher: Publisher, tmp_path: Path) -> None:
    page = project_page()
    hostile = 'x" onmouseover="alert(1)'
    page = page._replace(
        cells=(BuildCell("1.1", TARGET, "failed", 8, hostile),),
        files=(page.files[0]._replace(apt_packages=("<b>libfoo1</b>",)),),
    )
    publisher.write_project(project_index(), page)
    html = (tmp_path / "www/project/demo-pure/index.html").read_text()
    assert "<b>" not in html and "needs &lt;b&gt;libfoo1&lt;/b&gt;" in html
    assert hostile not in html and 'title="x&quot; onmouseover=&quot;alert(1)"' in html


def test_farm_only_index_commands_compare_indexes(tmp_path: Path) -> None:
    publisher = Publisher(tmp_path / "www", base_url="https://wheels.example.org/", merged_index=False)
    publisher.write_project(project_index(), project_page())
    html = (publisher.output_dir / "project/demo-pure/index.html").read_text()
    assert "--index-url" not in html  # the farm's wheels alone cannot be the only index
    assert "pip install --extra-index-url https://wheels.example.org/simple/ demo-pure" in html
    assert "--index-strategy unsafe-best-match demo-pure" in html


def test_project_json_api(published: Path) -> None:
    document = json.loads((published / "project/demo-pure/json/index.json").read_text())
    assert document["info"]["description"] == f"Hello\n{SCRIPT}"
    assert document["builds"][1] == {
        "version": "1.1",
        "target": TARGET,
        "status": "failed",
        "build_id": 8,
        "reason": "missing <libfoo.h>",
    }
    assert document["files"][0]["hashes"] == {"sha256": "a" * 64}
    assert document["files"][0]["apt_packages"] == ["libfoo1"] and document["files"][0]["alias_of"] is None
    assert document["files"][1]["alias_of"] == WHEEL and document["info"]["apt_packages"] == [
        "libfoo1",
        "libbar2",
    ]


def test_project_must_be_canonical_and_agree(publisher: Publisher) -> None:
    index = project_index()
    with pytest.raises(InvalidName, match="Demo_Pure"):
        publisher.write_project(ProjectIndex("Demo_Pure", "x", (), (), 1, None), project_page())
    with pytest.raises(InvalidName, match="disagree"):
        publisher.write_project(index, ProjectPage("other", "other", None, None, None, (), (), (), (), ()))
    with pytest.raises(InvalidName):
        publisher.files_dir("../etc")


def test_log_page(publisher: Publisher) -> None:
    page = BuildLogPage(
        build_id=12,
        package="demo-pure",
        version="1.0",
        target=TARGET,
        builder="pi-1",
        status="failed",
        failure_reason="compiler error",
        failure_detail="gcc: <fatal>",
        started_at=datetime(2024, 1, 1, 12, 0),
        duration_s=75.0,
        environment={
            "os": "Raspberry Pi OS 12",
            "kernel": "6.6.31",
            "python": "CPython 3.11.2",
            "pip": "23.0",
            "setuptools": "66.1",
            "compiler": "gcc-12",
            "sandbox": "bubblewrap",
        },
        log_text=f"building\n{SCRIPT}\n",
        files=(),
    )
    publisher.write_log(page)
    html = (publisher.output_dir / "logs/12/index.html").read_text()
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "compiler error" in html and "gcc: &lt;fatal&gt;" in html
    for key in ("os", "kernel", "python", "pip", "setuptools", "compiler", "sandbox"):
        assert f'<th scope="row">{key}</th>' in html
    assert '<th scope="row">compiler</th><td><code>gcc-12</code></td>' in html
    assert "2024-01-01 12:00 UTC" in html and "1 min 15 s" in html
    publisher.write_log(page._replace(build_id=13, status="running", failure_reason=None, log_text=""))
    assert "still running" in (publisher.output_dir / "logs/13/index.html").read_text()


def test_home_builders_stats_search(publisher: Publisher) -> None:
    out = publisher.output_dir
    publisher.write_home(
        SiteSummary(
            packages=3,
            versions=9,
            wheels=20,
            builds=25,
            success_rate=0.8,
            queue_by_target={TARGET: 4},
            builders_online=2,
            disk_used_bytes=5_000_000,
            disk_free_bytes=None,
            recent_builds=(RecentBuild(12, "demo-pure", "1.0", TARGET, "built", None, 3.5),),
            notice="Disk <almost> full",
        )
    )
    home = (out / "index.html").read_text()
    assert "80.0%" in home and "5.0 MB" in home and "Disk &lt;almost&gt; full" in home
    assert 'href="/logs/12/"' in home
    publisher.write_builders(
        [BuilderRow("pi-1", TARGET, "building", "demo-pure 1.0", None, "Debian", "armv7l", 4)]
    )
    assert "demo-pure 1.0" in (out / "builders/index.html").read_text()
    publisher.write_stats(
        Stats(
            builds_per_day=((date(2024, 1, 1), 3, 1), (date(2024, 1, 3), 5, 0)),
            builds_per_builder_per_day={"pi-1": ((date(2024, 1, 1), 4),), "<pi-2>": ((date(2024, 1, 3), 5),)},
            outcomes={"built": 8, "failed": 1},
            failure_reasons={"missing <header>": 1},
            days=90,
        )
    )
    stats = (out / "stats/index.html").read_text()
    assert stats.count("<svg") == 5 and "No data yet" in stats  # downloads: no data
    assert "&lt;pi-2&gt;" in stats and "missing &lt;header&gt;" in stats and "<header>" not in stats
    assert "2024-01-01: 3 succeeded" in stats and "last 90 days" in stats
    publisher.write_search_index([SearchEntry("demo-pure", "A <demo>", 2, 3)])
    document = json.loads((out / "search/index.json").read_text())
    assert document == {
        "columns": ["name", "summary", "versions", "wheels"],
        "projects": [["demo-pure", "A <demo>", 2, 3]],
    }
    search = (out / "search/index.html").read_text()
    assert 'src="/static/search.js"' in search and 'href="/simple/"' in search
    assert (out / "static/wheelmill.css").is_file() and (out / "static/search.js").is_file()


def test_no_external_urls_in_pages(published: Path, publisher: Publisher) -> None:
    publisher.write_search_index([])
    for page in ("project/demo-pure/index.html", "search/index.html"):
        html = (published / page).read_text()
        for tag in ("src", "href"):
            for value in html.split(f'{tag}="')[1:]:
                url = value.split('"')[0]
                local = url.startswith(("/", "../", "data:"))
                assert local or url == "https://pypi.org/project/demo-pure/", url


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob(".*")]


def test_writes_leave_no_temp_files_and_skip_unchanged(published: Path, publisher: Publisher) -> None:
    assert temp_files(published) == []
    page = published / "simple/demo-pure/index.json"
    old = 1_000_000_000
    os.utime(page, ns=(old, old))
    publisher.write_project(project_index(), project_page())
    assert page.stat().st_mtime_ns == old
    assert write_bytes_atomic(page, page.read_bytes()) is False
    assert write_chunks_atomic(page, [page.read_bytes()]) is False
    assert page.stat().st_mtime_ns == old
    changed = project_index()
    publisher.write_project(changed._replace(last_serial=4243), project_page())
    assert page.stat().st_mtime_ns != old
    assert json.loads(page.read_text())["meta"]["_last-serial"] == 4243
    assert oct(page.stat().st_mode & 0o777) == oct(0o644)
    assert temp_files(published) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    write_bytes_atomic(target, b"old")

    def chunks():
        yield b"half"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_chunks_atomic(target, chunks())
    assert target.read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index.json"]


def test_directory_writes_are_whole_and_skip_unchanged_files(tmp_path: Path) -> None:
    target = tmp_path / "project" / "demo"
    assert write_directory_atomic(target, {"index.html": b"page", "json/index.json": b"{}"}) == 2
    assert (target / "json/index.json").read_bytes() == b"{}"
    assert oct((target / "index.html").stat().st_mode & 0o777) == oct(0o644)
    old = 1_000_000_000
    os.utime(target / "index.html", ns=(old, old))
    assert write_directory_atomic(target, {"index.html": b"page", "json/index.json": b"[]"}) == 1
    assert (target / "index.html").stat().st_mtime_ns == old
    assert (target / "json/index.json").read_bytes() == b"[]"

    with pytest.raises(TypeError):  # a page that fails to write: the new directory never appears
        write_directory_atomic(tmp_path / "project" / "other", {"index.html": b"page", "x.json": None})  # type: ignore[dict-item]
    assert sorted(path.name for path in (tmp_path / "project").iterdir()) == ["demo"]


def test_remove_project(published: Path, publisher: Publisher) -> None:
    files = publisher.files_dir("demo-pure")
    write_bytes_atomic(files / WHEEL, b"PK")
    publisher.write_project(
        ProjectIndex("other", "other", (), (), 1, None),
        ProjectPage("other", "other", None, None, None, (), (), (), (), ()),
    )
    publisher.remove_project("demo-pure")
    for area in ("simple", "project", "files"):
        assert not (published / area / "demo-pure").exists()
    assert (published / "simple/other/index.html").is_file()
    assert temp_files(published) == []
    publisher.remove_project("demo-pure")  # removing twice is harmless
