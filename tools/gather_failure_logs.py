"""Gather the failure classifier's corpus: real logs of failing builds, made by the farm's own build path.

Each case is an sdist that fails for a known reason, built by ``wheelmill.builder.building.build``
(download, hash check, ``uv build --wheel`` in the bubblewrap sandbox), the function a builder runs for
every claimed job, with a job dict like the claim's. The sdists come from the stand-in upstream (its
failing and hostile kinds, served with setuptools and wheel from the tests' wheelhouse, as in the
test farm), from two broken archives made here, and from old PyPI releases that cannot build on
today's Python or setuptools (fetched by filename through PyPI's simple JSON API, built with PyPI as
the index, as a farm following PyPI would).

Each log goes to tests/unit/failure_logs/NAME.log (cut to its last 200 lines when over 30 KB, with the
sandbox's cut marker), and what a person reading it calls the failure to expected.toml there, which
tests/unit/test_failures.py checks ``classify`` against. The expectations are written in CASES by
hand, never copied from the classifier; the script prints both, and a disagreement is a rule to fix.

Run it from the repository root, on a machine with bubblewrap and gcc (the PyPI cases need pypi.org;
they also need the headers they miss, such as lber.h, to be absent):

    python3 tools/gather_failure_logs.py             # every case
    python3 tools/gather_failure_logs.py --offline   # the stand-in and made cases only
    python3 tools/gather_failure_logs.py NAME...     # only these cases
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import parse_sdist_filename

from wheelmill.analysis.failures import classify
from wheelmill.builder import building
from wheelmill.testing import CoreMetadata, StandInUpstream, make_sdist

LOGS = Path(__file__).resolve().parent.parent / "tests" / "unit" / "failure_logs"
EXPECTED = LOGS / "expected.toml"
PYPI = "https://pypi.org/simple/"
WHEELHOUSE = Path(os.environ.get("WHEELMILL_TEST_WHEELHOUSE", Path.home() / ".cache" / "wheelmill-tests"))
BUILD_DEPENDENCIES = ("setuptools", "wheel")
KEEP_BYTES, KEEP_LINES = 30_000, 200
# The farm's reasons for a build the sandbox killed -> the kill reason the sandbox gave.
KILLED = {"timeout": "timeout", "out_of_memory": "memory"}
STABLE_SCRATCH = "/tmp/wheelmill-corpus"  # the scratch directory's name in saved logs


@dataclass(frozen=True)
class Case:
    """One failing sdist and what its log says, as a person reading it would put it."""

    name: str
    origin: str  # "stand-in" (sdist is a kind), "made" (a broken archive made here), "pypi" (project:file)
    sdist: str
    reason: str
    detail: str | None = None  # part of the detail the classifier must name
    debian_package: str | None = None
    python_module: str | None = None
    time_limit: int = 300
    index_url: str | None = None  # where uv fetches build requirements, if not the stand-in upstream


CASES = (
    Case(
        "standin-failing", "stand-in", "failing", "compiler_error", "#error wheelmill test: this build fails"
    ),
    Case(
        "standin-missing-header",
        "stand-in",
        "missing-header",
        "missing_system_library",
        "geos_c.h",
        debian_package="libgeos-dev",
    ),
    Case("standin-python2", "stand-in", "python2", "python2_only", "Missing parentheses in call to 'print'"),
    Case(
        "standin-undeclared-numpy",
        "stand-in",
        "undeclared-numpy",
        "undeclared_build_dependency",
        "numpy",
        python_module="numpy",
    ),
    Case("standin-network", "stand-in", "network", "needs_network", "Network is unreachable"),
    Case("standin-git-clone", "stand-in", "git-clone", "needs_network", "transport 'https' not allowed"),
    Case("standin-windows-only", "stand-in", "windows-only", "unsupported_platform", "only supports Windows"),
    Case(
        "standin-version-mismatch",
        "stand-in",
        "version-mismatch",
        "version_mismatch",
        "expected '1.0', built '0.0.0'",
    ),
    # The index is down while the builder fetches setuptools: a transient failure, retried later.
    Case(
        "standin-index-unreachable",
        "stand-in",
        "pure",
        "download_failed",
        "could not fetch http://127.0.0.1:9/simple/setuptools/",
        index_url="http://127.0.0.1:9/simple/",
    ),
    Case("standin-endless-loop", "stand-in", "endless-loop", "timeout", time_limit=5),
    Case("standin-huge-allocation", "stand-in", "huge-allocation", "out_of_memory"),
    Case("made-truncated", "made", "truncated", "no_source", "Invalid tar file"),
    Case(
        "made-no-build-files", "made", "no-build-files", "no_source", "does not appear to be a Python project"
    ),
    # setup.py imports setuptools.Feature, gone since setuptools 46: the remedy pins an older one.
    Case(
        "pypi-markupsafe-1.0",
        "pypi",
        "markupsafe:MarkupSafe-1.0.tar.gz",
        "undeclared_build_dependency",
        "setuptools.Feature",
        python_module="setuptools<46",
    ),
    # setup_posix.py imports ConfigParser, Python 2's name for configparser.
    Case(
        "pypi-mysql-python-1.2.5",
        "pypi",
        "mysql-python:MySQL-python-1.2.5.zip",
        "python2_only",
        "ConfigParser",
    ),
    # Modules/common.h includes lber.h, which Debian ships in libldap-dev.
    Case(
        "pypi-python-ldap-3.4.4",
        "pypi",
        "python-ldap:python-ldap-3.4.4.tar.gz",
        "missing_system_library",
        "lber.h",
        debian_package="libldap-dev",
    ),
    # setup.py imports numpy only if it can; the C code includes numpy's headers anyway.
    Case(
        "pypi-sharedarray-3.2.0",
        "pypi",
        "sharedarray:SharedArray-3.2.0.tar.gz",
        "undeclared_build_dependency",
        "numpy/arrayobject.h",
        python_module="numpy",
    ),
    Case(
        "pypi-hmmlearn-0.2.0",
        "pypi",
        "hmmlearn:hmmlearn-0.2.0.tar.gz",
        "undeclared_build_dependency",
        "numpy/npy_math.h",
        python_module="numpy",
    ),
    # C made by an old Cython, and a copy of Python 2.7's parser: both include headers Python 3.11 moved.
    Case("pypi-cchardet-2.1.7", "pypi", "cchardet:cchardet-2.1.7.tar.gz", "compiler_error", "longintrepr.h"),
    Case("pypi-typed-ast-1.4.3", "pypi", "typed-ast:typed_ast-1.4.3.tar.gz", "compiler_error", "code.h"),
)


def job_for(case: Case, package: str, file: dict[str, Any], index_url: str) -> dict[str, Any]:
    """What a claim hands a builder: ``file`` has the sdist's filename, url, sha256 and size."""
    return {
        "package": package,
        "version": str(parse_sdist_filename(file["filename"])[1]),
        "source_url": file["url"],
        "source_filename": file["filename"],
        "source_sha256": file["sha256"],
        "source_size": file["size"],
        "index_url": index_url,
        "extra_index_url": index_url,
        "time_limit_seconds": case.time_limit,
        "extra_requirements": [],
        "smoke_test": False,
    }


def build_dependency_wheels() -> list[Path]:
    """setuptools and wheel for the stand-in upstream to serve: the tests' wheelhouse, filled if empty."""
    if not all(any(WHEELHOUSE.glob(f"{name}-*.whl")) for name in BUILD_DEPENDENCIES):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:"]
        subprocess.run([*pip, "--dest", str(WHEELHOUSE), *BUILD_DEPENDENCIES], check=True)
    return [sorted(WHEELHOUSE.glob(f"{name}-*.whl"))[-1] for name in BUILD_DEPENDENCIES]


def made_sdist(kind: str, where: Path) -> Path:
    """A broken sdist: a real one cut in half, or an archive with nothing in it to build."""
    if kind == "truncated":
        name, content = make_sdist(CoreMetadata("made-truncated", "1.0"), "cext")
        path = where / name
        path.write_bytes(content[: len(content) // 2])
        return path
    path = where / "made_no_build_files-1.0.tar.gz"
    data = b"Metadata-Version: 2.1\nName: made-no-build-files\nVersion: 1.0\n"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("made_no_build_files-1.0/PKG-INFO")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def stand_in_job(case: Case, upstream: StandInUpstream, scratch: Path) -> dict[str, Any]:
    """The job for a stand-in sdist of the case's kind, or for a broken one made here and uploaded."""
    if case.origin == "made":
        sdist = upstream.add_sdist_file(made_sdist(case.sdist, scratch))
    else:
        sdist = upstream.add_release(f"corpus-{case.sdist}", "1.0", kind=case.sdist)
        assert sdist is not None
    file = {"url": upstream.url + sdist.path, "filename": sdist.filename}
    file |= {"sha256": sdist.sha256, "size": sdist.size}
    return job_for(case, sdist.project, file, case.index_url or upstream.simple_url)


def pypi_job(case: Case) -> dict[str, Any]:
    """The job for a PyPI file, found by name on the project's PEP 691 page (one request)."""
    project, filename = case.sdist.split(":")
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    page = httpx.get(f"{PYPI}{project}/", headers=accept, timeout=30, follow_redirects=True)
    page.raise_for_status()
    (found,) = [each for each in page.json()["files"] if each["filename"] == filename]
    file = {"url": found["url"], "filename": filename, "size": found["size"]}
    file["sha256"] = found["hashes"]["sha256"]
    return job_for(case, project, file, PYPI)


def run(case: Case, job: dict[str, Any], scratch: Path) -> tuple[str, str | None]:
    """Build through the builder's code path; returns the saved form of the log and the sandbox's kill."""
    outcome = building.build(job, scratch / case.name, "required", sys.executable, threading.Event())
    if outcome.success:
        raise SystemExit(f"{case.name}: the build succeeded, so it is no failure to learn from")
    # building.build keeps no kill reason, but classify gives a killed build no detail.
    killed = KILLED.get(outcome.failure_reason or "") if outcome.failure_detail is None else None
    text = outcome.log.decode("utf-8", "replace").replace(str(scratch), STABLE_SCRATCH)
    return trimmed(text), killed


def trimmed(log: str) -> str:
    """The whole log when small; otherwise its tail, behind the sandbox's own cut marker."""
    if len(log.encode()) <= KEEP_BYTES:
        return log
    tail = "".join(log.splitlines(keepends=True)[-KEEP_LINES:])
    return f"[... {len(log.encode()) - len(tail.encode())} bytes cut ...]\n{tail}"


def entry(case: Case, killed: str | None) -> dict[str, str]:
    source = {"stand-in": "stand-in upstream, sdist kind", "made": "broken sdist made by the script:"}
    fields = {
        "source": f"{source.get(case.origin, 'PyPI:')} {case.sdist.rpartition(':')[2]}",
        "reason": case.reason,
        "detail": case.detail,
        "debian_package": case.debian_package,
        "python_module": case.python_module,
        "killed_reason": killed,
    }
    return {key: value for key, value in fields.items() if value is not None}


def write_expected(entries: dict[str, dict[str, str]]) -> None:
    """expected.toml, one table per log; JSON strings are valid TOML basic strings."""
    lines = ["# Written by tools/gather_failure_logs.py from its CASES: why each build failed, by hand.", ""]
    for name in sorted(entries):
        lines.append(f"[{json.dumps(name)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in entries[name].items()]
        lines.append("")
    EXPECTED.write_text("\n".join(lines))


def report(case: Case, log: str, killed: str | None) -> bool:
    """Print what the classifier says beside the expectation; True when they agree."""
    found = classify(log, killed)
    agrees = (str(found.reason), found.debian_package, found.python_module) == (
        case.reason,
        case.debian_package,
        case.python_module,
    ) and (case.detail is None or case.detail in (found.detail or ""))
    print(
        f"{'ok ' if agrees else 'BAD'} {case.name}: {found.reason} {found.detail!r} (expected {case.reason})"
    )
    return agrees


def gather(cases: list[Case]) -> bool:
    entries = tomllib.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    agree = True
    with tempfile.TemporaryDirectory(prefix="wheelmill-corpus-") as name, StandInUpstream() as upstream:
        scratch = Path(name)
        for wheel in build_dependency_wheels():
            upstream.add_wheel_file(wheel)
        for case in cases:
            job = pypi_job(case) if case.origin == "pypi" else stand_in_job(case, upstream, scratch)
            log, killed = run(case, job, scratch)
            (LOGS / f"{case.name}.log").write_text(log)
            entries[f"{case.name}.log"] = entry(case, killed)
            agree &= report(case, log, killed)
    write_expected(entries)
    return agree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("names", nargs="*", help="cases to gather (default: all)")
    parser.add_argument("--offline", action="store_true", help="skip the cases fetched from PyPI")
    args = parser.parse_args()
    unknown = set(args.names) - {case.name for case in CASES}
    if unknown:
        parser.error(f"no such case: {', '.join(sorted(unknown))}")
    cases = [case for case in CASES if not args.names or case.name in args.names]
    cases = [case for case in cases if not (args.offline and case.origin == "pypi")]
    LOGS.mkdir(parents=True, exist_ok=True)
    return 0 if gather(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
