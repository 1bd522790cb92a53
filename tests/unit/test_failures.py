"""The failure classifier on real logs: the farm's, saved, and pip's, from small projects built here.

failure_logs/ holds logs of failing sdists built the way the farm builds (``building.build``: uv in the
sandbox), each with what a person reading it calls the failure in expected.toml;
`python3 tools/gather_failure_logs.py` builds them again. The pip builds below stay for pip's wording,
which a build can still print: a setup.py's setup_requires, say, is installed by pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import stand_in_job
from wheelmill.analysis.failures import Diagnosis, FailureReason, classify
from wheelmill.builder import building
from wheelmill.testing import StandInUpstream

LOGS = Path(__file__).parent / "failure_logs"
CORPUS = tomllib.loads((LOGS / "expected.toml").read_text())
# Reasons no log shows: the sandbox's kill says them, and unknown is what no rule matched.
NOT_FROM_LOGS = {FailureReason.TIMEOUT, FailureReason.OUT_OF_MEMORY, FailureReason.UNKNOWN}
PIP_WHEEL = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir")


def c_setup(extra: str = "") -> str:
    return (
        "from setuptools import setup, Extension\n"
        f'setup(name="demo", version="1.0", ext_modules=[Extension("demo", ["demo.c"]{extra})])\n'
    )


def plain_setup(before: str = "", **options: str) -> str:
    arguments = "".join(f", {key}={value!r}" for key, value in options.items())
    return f'{before}from setuptools import setup\nsetup(name="demo", version="1.0"{arguments})\n'


@dataclass(frozen=True)
class Case:
    files: dict[str, str]
    expected: Diagnosis  # its detail need only be part of the real one: Python and gcc word them
    as_sdist: bool = False  # fetched as demo==1.0 from a directory of sdists, as the builder does
    isolated: bool = False  # build isolation, with an index that does not answer


CASES = {
    "missing_header": Case(
        {"setup.py": c_setup(), "demo.c": "#include <libpq-fe.h>\nint demo;\n"},
        Diagnosis(FailureReason.MISSING_SYSTEM_LIBRARY, "libpq-fe.h", debian_package="libpq-dev"),
    ),
    "missing_library": Case(
        {"setup.py": c_setup(', libraries=["geos_c"]'), "demo.c": "int demo;\n"},
        Diagnosis(FailureReason.MISSING_SYSTEM_LIBRARY, "-lgeos_c", debian_package="libgeos-dev"),
    ),
    "undeclared_setup_py": Case(
        {"setup.py": 'import skbuild\nskbuild.setup(name="demo", version="1.0")\n'},
        Diagnosis(FailureReason.UNDECLARED_BUILD_DEPENDENCY, "skbuild", python_module="scikit-build"),
    ),
    "undeclared_pyproject": Case(
        {
            "setup.py": plain_setup("from Cython.Build import cythonize\n"),
            "pyproject.toml": '[build-system]\nrequires = ["setuptools", "Cython"]\n'
            'build-backend = "setuptools.build_meta"\n',
        },
        Diagnosis(FailureReason.UNDECLARED_BUILD_DEPENDENCY, "Cython", python_module="Cython"),
    ),
    "setuptools_feature": Case(
        {"setup.py": 'from setuptools import setup, Feature\nsetup(name="demo", version="1.0")\n'},
        Diagnosis(
            FailureReason.UNDECLARED_BUILD_DEPENDENCY, "setuptools.Feature", python_module="setuptools<46"
        ),
    ),
    "setuptools_use_2to3": Case(
        {"setup.py": plain_setup(use_2to3="yes")},
        Diagnosis(FailureReason.UNDECLARED_BUILD_DEPENDENCY, "use_2to3", python_module="setuptools<58"),
    ),
    "python2": Case(
        {"setup.py": plain_setup('print "building demo"\n')},
        Diagnosis(FailureReason.PYTHON2_ONLY, "Missing parentheses in call to 'print'"),
    ),
    "python2_requires_python": Case(
        {"setup.py": plain_setup(python_requires="==2.7.*")},
        Diagnosis(FailureReason.PYTHON2_ONLY, "'==2.7.*'"),
    ),
    "compiler_error": Case(
        {"setup.py": c_setup(), "demo.c": "int demo( {\n  return 0\n}\n"},
        Diagnosis(FailureReason.COMPILER_ERROR, "demo.c:1:"),
    ),
    "windows_only": Case(
        {"setup.py": 'raise RuntimeError("This package only supports Windows")\n'},
        Diagnosis(FailureReason.UNSUPPORTED_PLATFORM, "only supports Windows"),
    ),
    "network_download": Case(
        {
            "setup.py": plain_setup(
                'import urllib.request\nurllib.request.urlopen("http://127.0.0.1:1/", timeout=1)\n'
            )
        },
        Diagnosis(FailureReason.NEEDS_NETWORK, "Connection refused"),
    ),
    "network_git_clone": Case(
        {
            "setup.py": plain_setup(
                'import subprocess\nsubprocess.check_call(["git", "clone", "https://127.0.0.1:1/x.git"])\n'
            )
        },
        Diagnosis(FailureReason.NEEDS_NETWORK, "fatal: unable to access 'https://127.0.0.1:1/x.git/'"),
    ),
    "network_build_requirements": Case(
        {
            "setup.py": plain_setup(),
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=40.8.0"]\n'
            'build-backend = "setuptools.build_meta"\n',
        },
        Diagnosis(FailureReason.NEEDS_NETWORK, "Connection refused"),
        isolated=True,
    ),
    "out_of_memory": Case(
        {"setup.py": "buffer = bytearray(1 << 60)\n"},
        Diagnosis(FailureReason.OUT_OF_MEMORY, "MemoryError"),
    ),
    "version_mismatch": Case(
        {"setup.py": 'from setuptools import setup\nsetup(name="demo", version="1.1")\n'},
        Diagnosis(FailureReason.VERSION_MISMATCH, "expected '1.0', built '1.1'"),
        as_sdist=True,
    ),
    "no_source": Case({}, Diagnosis(FailureReason.NO_SOURCE, "demo==1.0"), as_sdist=True),
}


def start_build(case: Case, where: Path) -> subprocess.Popen[bytes]:
    """Start `pip wheel` on the case's project, its output going to where/build.log."""
    project = where / "demo-1.0"
    project.mkdir(parents=True)
    for name, text in case.files.items():
        (project / name).write_text(text)
    command = [*PIP_WHEEL, "--wheel-dir", str(where / "out")]
    if case.isolated:
        command += ["--index-url", "http://127.0.0.1:1/simple/"]
    else:
        command += ["--no-build-isolation", "--no-index"]
    if case.as_sdist:
        sdists = where / "sdists"
        sdists.mkdir()
        if case.files:
            with tarfile.open(sdists / "demo-1.0.tar.gz", "w:gz") as tar:
                tar.add(project, arcname=project.name)
        command += ["--no-binary", ":all:", "--find-links", str(sdists), "demo==1.0"]
    else:
        command.append(str(project))
    # The machine's own pip settings (extra indexes, find-links) must not decide how these builds fail;
    # PIP_RETRIES reaches the pip that installs build dependencies, where a --retries option does not.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_RETRIES": "1"}
    with open(where / "build.log", "wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )


def build_logs(root: Path) -> dict[str, str]:
    """Every case's real pip log; the builds run side by side to keep the tests fast."""
    builds = {name: start_build(case, root / name) for name, case in CASES.items()}
    try:
        for build in builds.values():
            build.wait(timeout=120)
    finally:
        for build in builds.values():
            if build.poll() is None:
                build.kill()
                build.wait()
    logs = {name: (root / name / "build.log").read_text() for name in builds}
    for name, build in builds.items():
        assert build.returncode != 0, f"{name} built:\n{logs[name]}"
    return logs


def assert_diagnosis(found: Diagnosis, expected: Diagnosis) -> None:
    assert (found.reason, found.debian_package, found.python_module) == (
        expected.reason,
        expected.debian_package,
        expected.python_module,
    )
    assert expected.detail is not None and found.detail is not None
    assert expected.detail in found.detail


@pytest.fixture(scope="module")
def real_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("git") is None or shutil.which("gcc") is None:
        pytest.skip("needs git and gcc")
    return build_logs(tmp_path_factory.mktemp("builds"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_real_build_failures_are_classified(real_logs: dict[str, str], case: str) -> None:
    assert_diagnosis(classify(real_logs[case]), CASES[case].expected)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_saved_farm_logs_are_classified(name: str) -> None:
    expected = CORPUS[name]

    found = classify((LOGS / name).read_text(), expected.get("killed_reason"))

    assert (found.reason, found.debian_package, found.python_module) == (
        expected["reason"],
        expected.get("debian_package"),
        expected.get("python_module"),
    )
    assert expected.get("detail", "") in (found.detail or "")


def test_every_reason_a_log_shows_has_a_saved_farm_log() -> None:
    shown = {FailureReason(each["reason"]) for each in CORPUS.values() if "killed_reason" not in each}

    assert set(FailureReason) - NOT_FROM_LOGS <= shown
    assert all((LOGS / name).is_file() for name in CORPUS)


def test_the_recorded_detail_says_what_to_install() -> None:
    missing = classify((LOGS / "standin-missing-header.log").read_text())
    python2 = classify((LOGS / "standin-python2.log").read_text())

    assert missing.shown_detail() == "geos_c.h (sudo apt install libgeos-dev)"
    assert python2.shown_detail() == python2.detail


@pytest.mark.slow
@pytest.mark.skipif(Path("/usr/include/geos_c.h").exists(), reason="libgeos-dev is installed")
def test_a_farm_build_records_the_package_to_install(upstream: StandInUpstream, tmp_path: Path) -> None:
    sdist = upstream.add_release("needs-geos", "1.0", kind="missing-header")
    assert sdist is not None
    job = stand_in_job(upstream, "needs-geos", sdist, [], time_limit=120)

    outcome = building.build(job, tmp_path / "work", "required", sys.executable, threading.Event())

    assert (outcome.failure_reason, outcome.failure_detail) == (
        "missing_system_library",
        "geos_c.h (sudo apt install libgeos-dev)",
    ), outcome.log.decode(errors="replace")


@pytest.mark.parametrize(
    ("killed_reason", "reason"), [("timeout", FailureReason.TIMEOUT), ("memory", FailureReason.OUT_OF_MEMORY)]
)
def test_the_builders_reason_for_killing_a_build_wins(killed_reason: str, reason: FailureReason) -> None:
    log = (LOGS / "standin-missing-header.log").read_text()

    assert classify(log, killed_reason=killed_reason) == Diagnosis(reason)


# Lines only other machines print: gcc on ARM, and a compiler the kernel killed for memory.
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "demo.c:2:10: fatal error: immintrin.h: No such file or directory",
            Diagnosis(FailureReason.UNSUPPORTED_PLATFORM, "immintrin.h"),
        ),
        (
            "arm-linux-gnueabihf-gcc: error: unrecognized command-line option \u2018-msse2\u2019",
            Diagnosis(FailureReason.UNSUPPORTED_PLATFORM, "-msse2"),
        ),
        (
            "g++: fatal error: Killed signal terminated program cc1plus\n"
            "error: command '/usr/bin/g++' failed with exit code 1",
            Diagnosis(FailureReason.OUT_OF_MEMORY, "Killed signal terminated program cc1plus"),
        ),
    ],
)
def test_lines_other_machines_print(line: str, expected: Diagnosis) -> None:
    assert_diagnosis(classify(line), expected)


def test_a_log_with_no_known_sign_is_unknown() -> None:
    assert classify("Building wheel for demo (setup.py): finished with status 'error'\n") == Diagnosis(
        FailureReason.UNKNOWN
    )
