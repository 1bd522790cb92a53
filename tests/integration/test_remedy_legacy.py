"""The remedy on a setup.py-only sdist, the common case on PyPI: a real build, in the sandbox."""

from __future__ import annotations

import io
import sys
import tarfile
import threading
from pathlib import Path

from tests.helpers import stand_in_job
from wheelmill.builder import building
from wheelmill.testing import StandInUpstream

SETUP_PY = (
    "import numpy\n"
    "from setuptools import setup\n"
    'print("legacy-demo built with numpy", numpy.__version__)\n'
    'setup(name="legacy-demo", version="1.0", py_modules=["legacy_demo"])\n'
)


def legacy_sdist(where: Path) -> Path:
    """An sdist with a bare setup.py that imports numpy and declares nothing."""
    path = where / "legacy_demo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"setup.py": SETUP_PY, "legacy_demo.py": "VALUE = 1\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"legacy_demo-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_setup_py_only_sdist_builds_once_the_remedy_provides_numpy(
    upstream: StandInUpstream, tmp_path: Path
) -> None:
    upstream.add_release("numpy", "2.0", kind=None)
    upstream.add_wheel("numpy", "2.0")  # a stand-in numpy, enough to import
    sdist = upstream.add_sdist_file(legacy_sdist(tmp_path))

    def build(extra_requirements: list[str], workdir: Path) -> building.Outcome:
        workdir.mkdir()
        job = stand_in_job(upstream, "legacy-demo", sdist, extra_requirements, time_limit=120)
        return building.build(job, workdir, "required", sys.executable, threading.Event())

    failed = build([], tmp_path / "first")
    assert (failed.success, failed.failure_reason, failed.remedy) == (
        False,
        "undeclared_build_dependency",
        "numpy",
    )

    rescued = build([failed.remedy], tmp_path / "second")

    log = rescued.log.decode(errors="replace")
    assert rescued.success, log
    assert [wheel.name for wheel in rescued.wheels] == ["legacy_demo-1.0-py3-none-any.whl"]
    assert "legacy-demo built with numpy 2.0" in log
