"""The publisher: the only code that writes the output directory.

It turns the records of `model` into the served tree (layout in DESIGN.md), every file by
write-then-rename and only when its bytes change, so a finished build costs one project's pages
and a full publish rewrites little.
"""

import logging
import os
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from packaging.utils import is_normalized_name

from wheelmill.errors import InvalidName
from wheelmill.publish import simple
from wheelmill.publish.model import (
    BuilderRow,
    BuildLogPage,
    ProjectIndex,
    ProjectPage,
    SearchEntry,
    SiteSummary,
    Stats,
)
from wheelmill.publish.pages import Pages, make_environment, project_document, search_chunks
from wheelmill.publish.writer import (
    remove_tree_atomic,
    write_bytes_atomic,
    write_chunks_atomic,
    write_directory_atomic,
    write_text_atomic,
)

logger = logging.getLogger(__name__)


def missing_log_pages(output_dir: Path, build_ids: Iterable[int]) -> list[int]:
    """Those of `build_ids` with no /logs/ID/ page, from one listing of /logs/.

    A log directory appears whole, page included (`write_log`), so its name is enough.
    """
    try:
        present = set(os.listdir(output_dir / "logs"))
    except FileNotFoundError:
        present = set()
    return [build_id for build_id in build_ids if str(build_id) not in present]


class Publisher:
    """Writes the index, pages, logs, statistics and search data under one output directory."""

    def __init__(
        self,
        output_dir: Path,
        site_name: str = "wheelmill",
        base_url: str = "http://127.0.0.1:8000/",
        merged_index: bool = True,
    ) -> None:
        self.output_dir = output_dir
        self._root = os.fspath(output_dir)  # string paths: pathlib costs more than a write here
        self.env = make_environment()
        self.pages = Pages(self.env, site_name, base_url, merged_index)
        self.write_static()

    def _dir(self, *parts: str) -> Path:
        return self.output_dir.joinpath(*parts)

    def _project_segment(self, name: str) -> str:
        """`name` checked as a canonical name, which is also safe as a directory name."""
        if not is_normalized_name(name):
            raise InvalidName(f"not a canonical project name: {name!r}")
        return name

    def write_static(self) -> None:
        """Copy the stylesheet and script into /static/."""
        for item in resources.files("wheelmill.publish").joinpath("static").iterdir():
            if item.is_file():
                write_bytes_atomic(self._dir("static", item.name), item.read_bytes())

    def files_dir(self, name: str) -> Path:
        """/files/NAME/: where the master stores a project's wheels and their .metadata files."""
        return self._dir("files", self._project_segment(name))

    def write_project(self, index: ProjectIndex, page: ProjectPage) -> None:
        """A project's simple pages (HTML and JSON), its page and its JSON API."""
        name = self._project_segment(index.name)
        if page.name != name:
            raise InvalidName(f"index and page disagree on the project: {index.name!r} != {page.name!r}")
        context = simple.project_context(index)
        simple_pages = {
            "index.html": simple.render_project_html(context),
            "index.json": simple.render_project_json(context),
        }
        project_pages = {
            "index.html": self.pages.project(page).encode(),
            "json/index.json": simple.dump_json(project_document(page)),
        }
        root = self._root
        write_directory_atomic(f"{root}/simple/{name}", simple_pages)
        write_directory_atomic(f"{root}/project/{name}", project_pages)

    def write_root_index(self, names: Iterable[str], last_serial: int) -> None:
        """/simple/ in both formats, streamed: it lists every project."""
        names = list(names)  # read twice, once per format
        write_chunks_atomic(
            self._dir("simple", "index.html"), simple.root_html_chunks(self.env, names, last_serial)
        )
        write_chunks_atomic(self._dir("simple", "index.json"), simple.root_json_chunks(names, last_serial))

    def remove_project(self, name: str) -> None:
        """Take a project off the index, its pages and its files."""
        segment = self._project_segment(name)
        for area in ("simple", "project", "files"):
            remove_tree_atomic(self._dir(area, segment))
        logger.info("removed project %s from the output directory", name)

    def _log_path(self, build_id: int) -> Path:
        return self._dir("logs", str(int(build_id)), "index.html")

    def write_log(self, page: BuildLogPage) -> None:
        """/logs/ID/: one build's page, in a directory that appears with its page or not at all."""
        write_directory_atomic(
            f"{self._root}/logs/{int(page.build_id)}", {"index.html": self.pages.log(page).encode()}
        )

    def has_log(self, build_id: int) -> bool:
        """Whether build `build_id` has a page, so a link to it works."""
        return self._log_path(build_id).is_file()

    def write_home(self, summary: SiteSummary) -> None:
        """/: the home page."""
        write_text_atomic(self._dir("index.html"), self.pages.home(summary))

    def write_builders(self, rows: Sequence[BuilderRow]) -> None:
        """/builders/: the fleet."""
        write_text_atomic(self._dir("builders", "index.html"), self.pages.builders(rows))

    def write_stats(self, stats: Stats) -> None:
        """/stats/: statistics with charts."""
        write_text_atomic(self._dir("stats", "index.html"), self.pages.stats(stats))

    def write_search_index(self, entries: Iterable[SearchEntry]) -> None:
        """/search/: the page and the JSON it searches, streamed."""
        write_text_atomic(self._dir("search", "index.html"), self.pages.search())
        write_chunks_atomic(self._dir("search", "index.json"), search_chunks(entries))
