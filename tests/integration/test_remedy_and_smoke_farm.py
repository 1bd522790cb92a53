"""Remedies and the smoke test through a real farm: a master, one builder in bubblewrap, real builds.

One farm builds six setup.py-only sdists, each showing one behaviour a user of the index sees:

- ``remedy-demo`` imports numpy without declaring it: its first build fails, the master retries it
  once with numpy provided, and the wheel is published; the statistics page credits the remedy.
- ``pinned-demo`` is the same, but the farm's ``build_requirements`` names numpy for it: one build.
- ``broken-demo`` builds, but its package imports a module it does not ship: the smoke test keeps
  the wheel out, and its page and log say why.
- ``skipped-demo`` is as broken, but listed in ``smoke_test_skip``: published.
- ``named-demo`` ships a good and a bad module; ``smoke_test_modules`` names only the good one.
"""

from __future__ import annotations

import html
import io
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.farm import Farm, wait_until
from wheelmill.testing import StandInUpstream

pytestmark = pytest.mark.slow

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OPEN_JOBS = ("queued", "waiting", "leased")
NUMPY_SETUP = (
    "import numpy\n"
    "from setuptools import setup\n"
    'print("{name} built with numpy", numpy.__version__)\n'
    'setup(name="{name}", version="1.0", py_modules=["{module}"])\n'
)
# A package whose __init__ imports a compiled part the wheel does not ship: builds, does not import.
BROKEN_PACKAGE = {
    "setup.py": 'from setuptools import setup\nsetup(name="{name}", version="1.0", packages=["{module}"])\n',
    "{module}/__init__.py": "from ._speedups import fast\n",
}
NAMED_MODULES = {
    "setup.py": (
        "from setuptools import setup\n"
        'setup(name="named-demo", version="1.0", py_modules=["good_module", "bad_module"])\n'
    ),
    "good_module.py": "VALUE = 1\n",
    "bad_module.py": 'raise ImportError("bad_module needs libwmx, which this machine lacks")\n',
}
SOURCES: dict[str, dict[str, str]] = {
    "remedy-demo": {"setup.py": NUMPY_SETUP, "{module}.py": "VALUE = 1\n"},
    "pinned-demo": {"setup.py": NUMPY_SETUP, "{module}.py": "VALUE = 1\n"},
    "broken-demo": BROKEN_PACKAGE,
    "skipped-demo": BROKEN_PACKAGE,
    "named-demo": NAMED_MODULES,
}


@dataclass(frozen=True)
class Build:
    id: int
    status: str
    failure_reason: str | None
    failure_detail: str | None


def make_sdist(where: Path, name: str, files: dict[str, str]) -> Path:
    """A setup.py-only sdist of ``name`` 1.0: the common case on PyPI, and the one remedies must reach."""
    module = name.replace("-", "_")
    path = where / f"{module}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.replace("{name}", name).replace("{module}", module).encode()
            info = tarfile.TarInfo(f"{module}-1.0/{member.replace('{module}', module)}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def builds_of(farm: Farm, package: str) -> list[Build]:
    """The package's finished builds, oldest first."""
    rows = farm.query(
        "SELECT b.id, b.status, b.failure_reason, b.failure_detail FROM builds b"
        " JOIN jobs j ON j.id = b.job_id JOIN versions v ON v.id = j.version_id"
        f" JOIN packages p ON p.id = v.package_id WHERE p.name = '{package}'"
        " AND b.finished_at IS NOT NULL ORDER BY b.id"
    )
    return [Build(*row) for row in rows]


def open_jobs(farm: Farm) -> int:
    states = ", ".join(f"'{state}'" for state in OPEN_JOBS)
    ((count,),) = farm.query(f"SELECT count(*) FROM jobs WHERE status IN ({states})")
    return count


def wheels_on_index(farm: Farm, package: str) -> list[str]:
    """Wheel file names of the published PEP 691 page (which also lists upstream's sdist)."""
    page = httpx.get(f"{farm.url}/simple/{package}/", headers=JSON, timeout=10)
    if page.status_code != 200:
        return []
    return [entry["filename"] for entry in page.json()["files"] if entry["filename"].endswith(".whl")]


def page(farm: Farm, path: str) -> str:
    answer = httpx.get(farm.url + path, timeout=10)
    return answer.text if answer.status_code == 200 else ""


@pytest.fixture(scope="module")
def farm(build_dependency_wheels: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """Every package built to its end, the pages published, the master still serving them."""
    tmp = tmp_path_factory.mktemp("remedy-smoke")
    with StandInUpstream() as upstream:
        for wheel in build_dependency_wheels:
            upstream.add_wheel_file(wheel)
        upstream.add_release("numpy", "2.0", kind=None)
        upstream.add_wheel("numpy", "2.0")  # a stand-in numpy, enough to import
        for name, files in SOURCES.items():
            upstream.add_sdist_file(make_sdist(tmp, name, files))
        running = Farm(
            tmp,
            upstream.simple_url,
            watch=list(SOURCES),
            sandbox="required",
            build_timeout=120,
            build_requirements={"pinned-demo": ["numpy"]},
            smoke_test_skip=["skipped-demo"],
            smoke_test_modules={"named-demo": ["good_module"]},
        )
        try:
            master = running.serve()
            wait_until(lambda: open_jobs(running) == len(SOURCES), "the planned jobs", master, timeout=60)
            builder = running.builder("b1")
            wait_until(lambda: open_jobs(running) == 0, "every build to end", master, builder, timeout=300)
            yield running
        finally:
            running.close()


def test_an_undeclared_build_dependency_is_retried_once_with_it_provided(farm: Farm) -> None:
    first, second = builds_of(farm, "remedy-demo")
    assert (first.status, first.failure_reason, first.failure_detail) == (
        "failed",
        "undeclared_build_dependency",
        "numpy",
    )
    assert (second.status, second.failure_reason) == ("success", None)
    assert farm.query("SELECT remedy FROM jobs WHERE remedy IS NOT NULL") == [("numpy",)]
    wait_until(lambda: wheels_on_index(farm, "remedy-demo"), "the rescued wheel on the index")
    assert wheels_on_index(farm, "remedy-demo") == ["remedy_demo-1.0-py3-none-any.whl"]
    wait_until(lambda: page(farm, f"/logs/{second.id}/"), "the rescued build's log page")
    assert "remedy-demo built with numpy 2.0" in html.unescape(page(farm, f"/logs/{second.id}/"))


def test_a_configured_build_requirement_builds_the_first_time(farm: Farm) -> None:
    assert [(b.status, b.failure_reason) for b in builds_of(farm, "pinned-demo")] == [("success", None)]
    wait_until(lambda: wheels_on_index(farm, "pinned-demo"), "the wheel on the index")
    assert wheels_on_index(farm, "pinned-demo") == ["pinned_demo-1.0-py3-none-any.whl"]


def test_a_wheel_that_does_not_import_is_kept_out_and_its_pages_say_why(farm: Farm) -> None:
    (build,) = builds_of(farm, "broken-demo")
    assert (build.status, build.failure_reason) == ("failed", "smoke_test_failed")
    error = "No module named 'broken_demo._speedups'"
    assert error in (build.failure_detail or "")
    assert farm.query("SELECT filename FROM files WHERE filename LIKE 'broken_demo%'") == []

    log_link = f'<a href="../../logs/{build.id}/">broken</a>'
    wait_until(lambda: log_link in page(farm, "/project/broken-demo/"), "the broken cell on the project page")
    assert wheels_on_index(farm, "broken-demo") == []
    assert httpx.get(f"{farm.url}/files/broken-demo/broken_demo-1.0-py3-none-any.whl").status_code == 404
    wait_until(lambda: page(farm, f"/logs/{build.id}/"), "the broken build's log page")
    log = html.unescape(page(farm, f"/logs/{build.id}/"))
    assert "smoke_test_failed" in log and error in log


def test_the_smoke_test_settings_skip_it_or_name_the_modules(farm: Farm) -> None:
    assert [(b.status, b.failure_reason) for b in builds_of(farm, "skipped-demo")] == [("success", None)]
    assert [(b.status, b.failure_reason) for b in builds_of(farm, "named-demo")] == [("success", None)]
    for name in ("skipped-demo", "named-demo"):
        wheel = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
        wait_until(lambda name=name: wheels_on_index(farm, name), f"the wheel of {name} on the index")
        assert wheels_on_index(farm, name) == [wheel]
    (named,) = builds_of(farm, "named-demo")
    wait_until(lambda: page(farm, f"/logs/{named.id}/"), "the named-modules build's log page")
    assert "smoke test passed: imported good_module\n" in html.unescape(page(farm, f"/logs/{named.id}/"))


def test_the_statistics_page_counts_rescues_and_rejections(farm: Farm) -> None:
    rescued = '<tr><td>numpy provided to the build</td><td class="number">1</td></tr>'
    rejected = re.compile(r'<span class="figure">(\d+)</span> wheels rejected by smoke tests')

    def stats_current() -> bool:
        text = page(farm, "/stats/")
        return rescued in text and bool(found := rejected.search(text)) and found[1] != "0"

    wait_until(stats_current, "the statistics page after the builds", timeout=60)
    text = page(farm, "/stats/")
    assert rescued in text
    found = rejected.search(text)
    assert found and found[1] == "1"
    assert rescued in (farm.workdir / "data" / "www" / "stats" / "index.html").read_text()
