"""The failure classifier on real PyPI sdists that do not build on Python 3, built as the farm does.

Each case is a small sdist from real PyPI that fails here for a known reason; the builder fetches
it, checks its hash and builds it in the sandbox with PyPI as its index, exactly as for a job, and
the log it brings back must be classified as a person reading it would. The cases were chosen for
failures that cannot go away: old releases of projects whose code or build needs what Python 3.11
or today's setuptools no longer has, and a header Debian ships only in a -dev package no test
installs.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from wheelmill.builder import building

PYPI = "https://pypi.org/simple/"
pytestmark = [pytest.mark.pypi, pytest.mark.slow]


@dataclass(frozen=True)
class Case:
    project: str
    filename: str
    reason: str
    detail: str  # part of the detail the classifier names
    remedy: str | None = None  # what a retry would add to the build environment


CASES = [
    # setup.py imports setuptools.Feature, gone since setuptools 46: the remedy pins an older one.
    Case(
        "markupsafe",
        "MarkupSafe-1.0.tar.gz",
        "undeclared_build_dependency",
        "setuptools.Feature",
        "setuptools<46",
    ),
    # setup_posix.py imports ConfigParser, Python 2's name for configparser.
    Case("mysql-python", "MySQL-python-1.2.5.zip", "python2_only", "ConfigParser"),
    # Modules/constants.c includes lber.h, which Debian ships in libldap-dev.
    Case("python-ldap", "python-ldap-3.4.4.tar.gz", "missing_system_library", "lber.h"),
]


def published(project: str, filename: str) -> dict[str, object]:
    """The file's URL, sha256 and size, from PyPI's PEP 691 JSON page for the project."""
    page = httpx.get(
        PYPI + project + "/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30
    )
    page.raise_for_status()
    (found,) = [each for each in page.json()["files"] if each["filename"] == filename]
    return found


@pytest.mark.parametrize("case", CASES, ids=[case.project for case in CASES])
def test_real_failing_sdists_are_classified(case: Case, tmp_path: Path) -> None:
    file = published(case.project, case.filename)
    job = {
        "package": case.project,
        "source_url": file["url"],
        "source_filename": case.filename,
        "source_sha256": file["hashes"]["sha256"],  # type: ignore[index]
        "source_size": file["size"],
        "index_url": PYPI,
        "extra_index_url": PYPI,
        "time_limit_seconds": 300,
        "extra_requirements": [],
    }

    outcome = building.build(job, tmp_path / "work", "required", sys.executable, threading.Event())

    log = outcome.log.decode(errors="replace")
    assert not outcome.success, log
    assert (outcome.failure_reason, outcome.remedy) == (case.reason, case.remedy), log[-3000:]
    assert outcome.failure_detail is not None and case.detail in outcome.failure_detail
