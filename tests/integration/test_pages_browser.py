"""The human pages in a real browser: Debian Chromium driven by Playwright, served by make_static_app."""

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from wheelmill.master.static import make_static_app
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

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
SCRIPT = "<script>window.pwned = true; alert('pwned')</script>"
TARGET = "cp311-cp311-linux_armv7l"
WHEEL = "demo_pure-1.0-cp311-cp311-linux_armv7l.whl"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def publish_site(publisher: Publisher) -> None:
    """One of every page, with hostile text where upstream or a builder controls it."""
    publisher.write_project(
        ProjectIndex(
            "demo-pure",
            "Demo_Pure",
            ("1.0", "1.1"),
            (IndexFile(WHEEL, f"/files/demo-pure/{WHEEL}", "a" * 64, 2048, NOW, ">=3.8", None, None, True),),
            5,
            None,
        ),
        ProjectPage(
            name="demo-pure",
            display_name="Demo_Pure",
            summary="A demo package",
            description=f"Before the script.\n{SCRIPT}\nAfter the script.",
            upstream_url="https://pypi.org/project/demo-pure/",
            versions=("1.1", "1.0"),
            targets=(TARGET, "cp312-cp312-linux_armv7l"),
            cells=(
                BuildCell("1.0", TARGET, "built", 1, None),
                BuildCell("1.1", TARGET, "failed", 2, "missing header"),
                BuildCell("1.1", "cp312-cp312-linux_armv7l", "queued", None, None),
            ),
            files=(
                FarmFile(
                    WHEEL, f"/files/demo-pure/{WHEEL}", "1.0", TARGET, 2048, "a" * 64, 1, ("libfoo1",)
                ),
            ),
            apt_packages=("libfoo1",),
            downloads=12,
        ),
    )
    publisher.write_log(
        BuildLogPage(
            build_id=2,
            package="demo-pure",
            version="1.1",
            target=TARGET,
            builder="pi-1",
            status="failed",
            failure_reason="missing header",
            failure_detail="foo.h: No such file",
            started_at=NOW,
            duration_s=42.0,
            environment={"python": "3.11.2", "CC": "gcc-12"},
            log_text=f"running build\n{SCRIPT}\nerror: foo.h\n",
            files=(),
        )
    )
    publisher.write_home(
        SiteSummary(
            packages=3,
            versions=5,
            wheels=4,
            builds=6,
            success_rate=0.75,
            queue_by_target={TARGET: 2},
            builders_online=1,
            disk_used_bytes=3_500_000,
            disk_free_bytes=10_000_000_000,
            recent_builds=(
                RecentBuild(2, "demo-pure", "1.1", TARGET, "failed", NOW, 42.0),
                RecentBuild(1, "demo-pure", "1.0", TARGET, "built", NOW, 30.0),
            ),
        )
    )
    publisher.write_builders(
        [
            BuilderRow(
                "pi-1",
                TARGET,
                "building",
                "demo-pure 1.1",
                NOW,
                "Raspberry Pi OS 12",
                "ARMv7 Processor rev 3",
                6,
            )
        ]
    )
    days = [date(2024, 5, day) for day in range(25, 32)]
    publisher.write_stats(
        Stats(
            builds_per_day=tuple((day, 3 + index, index % 3) for index, day in enumerate(days)),
            builds_per_builder_per_day={
                "pi-1": tuple((day, 2 + index) for index, day in enumerate(days)),
                "<b>pi-2</b>": tuple((day, 1) for day in days),
            },
            outcomes={"built": 30, "failed": 9, "skipped": 4, "covered": 12},
            failure_reasons={"missing header": 5, "timeout": 3, f"odd {SCRIPT}": 1},
            downloads_per_day=tuple((day, 10 * index) for index, day in enumerate(days)),
            time_saved_s=7200.0,
            remedies_rescued={"numpy provided to the build": 2},
            smoke_test_rejected=1,
            downloads_by_installer={"pip 24.0": 40, "uv 0.5.1": 25, "unknown": 3},
            downloads_by_python={"3.11": 50, "3.9": 18},
            downloads_by_system={"Raspbian GNU/Linux 12": 60, f"odd {SCRIPT}": 8},
        )
    )
    entries = [SearchEntry("demo-pure", "A demo package", 2, 1), SearchEntry("numpy", "Arrays", 40, 80)]
    entries += [SearchEntry(f"filler-{number}", None, 1, 0) for number in range(500)]
    publisher.write_search_index(entries)
    publisher.write_root_index((entry.name for entry in entries), last_serial=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The published site under make_static_app and uvicorn, in a thread."""
    publisher = Publisher(tmp_path_factory.mktemp("site") / "www")
    publish_site(publisher)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app_server = uvicorn.Server(
        uvicorn.Config(make_static_app(publisher.output_dir), log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=app_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not app_server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


class Watched:
    """A page that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def visit(self, url: str, screenshot: str) -> Page:
        response = self.page.goto(url, wait_until="networkidle")
        assert response is not None and response.status == 200, url
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{screenshot}.png", full_page=True)
        return self.page

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert self.page.evaluate("window.pwned === undefined")


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield Watched(context.new_page())
    context.close()


def test_home_builders_and_stats(server: str, watched: Watched) -> None:
    home = watched.visit(f"{server}/", "home")
    assert "75.0%" in home.inner_text("main")
    assert home.locator("link[rel=stylesheet]").count() == 1
    assert home.evaluate("getComputedStyle(document.querySelector('header.site')).display") == "flex"
    builders = watched.visit(f"{server}/builders/", "builders")
    assert "demo-pure 1.1" in builders.inner_text("main")
    stats = watched.visit(f"{server}/stats/", "stats")
    assert stats.locator("svg.chart").count() == 8  # builds, builders, outcomes, reasons, four of downloads
    assert "<b>pi-2</b>" in stats.inner_text("main")  # a hostile builder name, as text
    assert "numpy provided to the build" in stats.inner_text("main")
    assert "Raspbian GNU/Linux 12" in stats.inner_text("main")
    watched.assert_clean()


def test_project_page_shows_the_script_as_text(server: str, watched: Watched) -> None:
    page = watched.visit(f"{server}/project/demo-pure/", "project")
    assert SCRIPT in page.inner_text("pre.description")
    assert "sudo apt install libfoo1" in page.inner_text("main")
    page.click("table.matrix a:text('failed')")
    page.wait_for_url(f"{server}/logs/2/")
    watched.assert_clean()


def test_log_page_shows_the_script_as_text(server: str, watched: Watched) -> None:
    page = watched.visit(f"{server}/logs/2", "log")  # the design's URL, without the slash
    assert SCRIPT in page.inner_text("pre.log")
    assert "missing header" in page.inner_text("dl.facts")
    assert "gcc-12" in page.inner_text("table.environment")
    watched.assert_clean()


def test_search_finds_a_package(server: str, watched: Watched) -> None:
    page = watched.visit(f"{server}/search/", "search-empty")
    assert not page.is_visible("text=Search needs JavaScript")
    page.fill("#search-input", "Demo_P")
    result = page.locator("#search-results li a", has_text="demo-pure")
    result.wait_for()
    assert page.locator("#search-results li").count() == 1
    page.screenshot(path=SCREENSHOTS / "search.png", full_page=True)
    result.click()
    page.wait_for_url(f"{server}/project/demo-pure/")
    watched.assert_clean()


def test_pages_read_without_javascript(server: str, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{server}/search/")
    assert page.is_visible("text=Search needs JavaScript")
    assert page.get_attribute("p.no-js a", "href") == "/simple/"
    assert not page.is_visible("#search-input")
    page.goto(f"{server}/stats/")
    assert page.locator("svg.chart rect").count() > 10
    context.close()
