"""The human pages (home, project, log, builders, stats, search) and their JSON twins.

Everything shown comes from upstream or a builder and is data: templates autoescape, descriptions
and logs are shown as text, and each page's Content-Security-Policy forbids inline scripts, so an
injected `<script>` is inert even if escaping were ever missed.
"""

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

from wheelmill.publish import charts
from wheelmill.publish.model import (
    BuildCell,
    BuilderRow,
    BuildLogPage,
    ProjectPage,
    SearchEntry,
    SiteSummary,
    Stats,
)
from wheelmill.publish.project_tables import file_rows, matrix_rows
from wheelmill.publish.simple import json_array_chunks

SEARCH_COLUMNS = ("name", "summary", "versions", "wheels")


def make_environment() -> Environment:
    """The Jinja2 environment of every template, simple index included; autoescape always on."""
    return Environment(
        loader=PackageLoader("wheelmill.publish", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt field fails the publish instead of rendering empty
        auto_reload=False,  # templates ship with the package: no stat of each one per render
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def file_size(size: int) -> str:
    """Bytes for people, in SI units: 1.2 MB."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def moment(value: datetime | None) -> str:
    """A timestamp in UTC, to the minute; pages are static, so no "5 minutes ago"."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """A duration for people: 2 h 5 min, 3 min 20 s, 12.5 s."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def http_url(url: str | None) -> str | None:
    """`url` if it is an http(s) URL: a link from upstream data must not be `javascript:`."""
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def build_matrix(page: ProjectPage) -> list[tuple[str, list[BuildCell | None]]]:
    """Rows of the version x target table: one per version, one cell (or gap) per target."""
    cells = {(cell.version, cell.target): cell for cell in page.cells}
    return [(version, [cells.get((version, target)) for target in page.targets]) for version in page.versions]


def project_document(page: ProjectPage) -> dict[str, Any]:
    """The /project/NAME/json/ API: the project page's data for programs."""
    return {
        "info": {
            "name": page.name,
            "display_name": page.display_name,
            "summary": page.summary,
            "description": page.description,
            "upstream_url": page.upstream_url,
            "downloads": page.downloads,
            "apt_packages": list(page.apt_packages),
        },
        "versions": list(page.versions),
        "targets": list(page.targets),
        "builds": [
            {
                "version": c.version,
                "target": c.target,
                "status": c.status,
                "build_id": c.build_id,
                "reason": c.reason,
            }
            for c in page.cells
        ],
        "files": [
            {
                "filename": f.filename,
                "url": f.url,
                "version": f.version,
                "target": f.target,
                "size": f.size,
                "hashes": {"sha256": f.sha256},
                "build_id": f.build_id,
                "apt_packages": list(f.apt_packages),
                "alias_of": f.alias_of,
            }
            for f in page.files
        ],
    }


def search_chunks(entries: Iterable[SearchEntry]) -> Iterator[bytes]:
    """The search index as compact rows (it lists every package), streamed."""
    rows = ([entry.name, entry.summary, entry.versions, entry.wheels] for entry in entries)
    return json_array_chunks(f'{{"columns":{json.dumps(SEARCH_COLUMNS)},"projects":[', rows, "]}")


class Pages:
    """Renders the site's HTML pages for one site: its name, public base URL and index mode."""

    def __init__(self, env: Environment, site_name: str, base_url: str, merged_index: bool = True) -> None:
        self.env = env
        self.base_url = base_url if base_url.endswith("/") else f"{base_url}/"
        root = urlsplit(self.base_url).path or "/"
        self.globals: dict[str, Any] = {"site_name": site_name, "base_url": self.base_url, "root": root}
        self.globals["merged_index"] = merged_index  # which install commands work
        env.filters.update(file_size=file_size, moment=moment, duration=duration, http_url=http_url)
        chrome = env.get_template("chrome.html").make_module(self.globals)
        for part in ("head", "header", "footer"):
            self.globals[f"chrome_{part}"] = getattr(chrome, part)().rstrip("\n")

    def _render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**self.globals, **context)

    def home(self, summary: SiteSummary) -> str:
        """The home page: the farm at a glance."""
        return self._render("home.html", summary=summary)

    def project(self, page: ProjectPage) -> str:
        """A project page: how to install, what was built, what failed."""
        return self._render(
            "project.html",
            page=page,
            matrix_rows=matrix_rows(build_matrix(page)),
            file_rows=file_rows(page.files, file_size),
        )

    def log(self, page: BuildLogPage) -> str:
        """A build's page: its outcome, environment and log."""
        return self._render("log.html", build=page)

    def builders(self, rows: Iterable[BuilderRow]) -> str:
        """The fleet."""
        return self._render("builders.html", builders=list(rows))

    def stats(self, stats: Stats) -> str:
        """The statistics page with its charts."""
        builds = {
            "succeeded": [(day, ok) for day, ok, _ in stats.builds_per_day],
            "failed": [(day, failed) for day, _, failed in stats.builds_per_day],
        }
        figures = {
            "builds": charts.stacked_bars_by_day("Builds per day", builds),
            "builders": charts.lines_by_day("Builds per builder per day", stats.builds_per_builder_per_day),
            "outcomes": charts.horizontal_bars("Outcomes", stats.outcomes, by_status=True),
            "reasons": charts.horizontal_bars("Failure reasons", stats.failure_reasons),
            "downloads": charts.stacked_bars_by_day(
                "Downloads per day", {"downloads": stats.downloads_per_day}
            ),
            **{
                key: charts.horizontal_bars(f"Downloads by {who}", counts, css="s0")
                for key, who, counts in (
                    ("installers", "installer", stats.downloads_by_installer),
                    ("pythons", "Python version", stats.downloads_by_python),
                    ("systems", "operating system", stats.downloads_by_system),
                )
            },
        }
        return self._render("stats.html", stats=stats, charts=figures)

    def search(self) -> str:
        """The search page; search.js fills it from the search index."""
        return self._render("search.html")
