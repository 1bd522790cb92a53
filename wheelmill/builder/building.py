"""Building one claimed job: fetch the sdist, check its hash, run ``uv build --wheel`` in the sandbox.

Everything the build writes stays under its work directory; the builder's own environment
(its token above all) never reaches the build.

Why uv and not ``pip wheel``: a build environment is most of a small package's build, and uv makes
one in a fraction of pip's time (bench/overhead.py measures it). uv also installs requirements a
project forgot to declare (``extra-build-dependencies``), which is how the farm remedies a build
that imports, say, numpy without declaring it: the claim's ``extra_requirements`` (a setup.py-only
sdist first gets a ``[build-system]`` table, see ``legacy``, since uv adds them only where one exists).

With a build root (``builder --root``) the same command runs there: the root's Python, and the uv of
the builder's version that ``builder-root create`` put in the root for its architecture.

Each build gets its own uv cache inside its work directory, removed with it. A warm cache shared
between builds would save about 0.2 s of CPU a build (of 1.7 s for six), but uv writes to its cache
while it builds, so it would be writable from inside the sandbox, and one hostile build could plant
files that the next build's environment is made from.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from uv import find_uv_bin

from wheelmill.analysis.failures import FailureReason, classify
from wheelmill.analysis.libraries import debian_packages, external_sonames
from wheelmill.builder.buildenv import describe_environment
from wheelmill.builder.legacy import BadSdist, source_for_build
from wheelmill.builder.sandbox import Limits, Sandbox, make_sandbox
from wheelmill.builder.smoke import smoke_test

log = logging.getLogger(__name__)

ROOT_UV = "/usr/local/bin/uv"  # in a build root, where builder-root create installs it


@dataclass
class Outcome:
    """What a build produced, ready to report to the master."""

    success: bool
    duration_s: float
    wheels: list[Path] = field(default_factory=list)
    log: bytes = b""
    environment: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None
    failure_detail: str | None = None
    apt_packages: dict[str, list[str]] = field(default_factory=dict)
    remedy: str | None = None  # a PyPI project that would fix the failure: an undeclared build dependency

    def report(self) -> dict[str, Any]:
        return {
            "status": "success" if self.success else "failed",
            "duration_s": self.duration_s,
            "files": [wheel.name for wheel in self.wheels],
            "log_gzip_base64": base64.b64encode(gzip.compress(self.log)).decode(),
            "environment": self.environment,
            "failure_reason": self.failure_reason,
            "failure_detail": self.failure_detail,
            "apt_packages": self.apt_packages,
            "remedy": self.remedy,
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: Path, sha256: str, size: int) -> None:
    """Fetch the sdist; the hash and size upstream published must match."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
        response.raise_for_status()
        with destination.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(f"{destination.name}: sha256 {digest.hexdigest()!r} is not the published {sha256!r}")
    if size and destination.stat().st_size != size:
        raise ValueError(f"{destination.name}: {destination.stat().st_size} bytes, upstream said {size}")


def allowed_hosts(job: dict[str, Any]) -> list[str]:
    """The indexes a build may reach for its build dependencies: the farm's, then upstream's."""
    hosts = []
    for url in (job["index_url"], job["extra_index_url"]):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        hosts.append(f"{parts.hostname}:{port}")
        if parts.hostname == "pypi.org":
            hosts.append("files.pythonhosted.org:443")
    return hosts


def build(
    job: dict[str, Any],
    workdir: Path,
    sandbox_mode: str,
    python: str,
    cancel: threading.Event,
    *,
    root: Path | None = None,
) -> Outcome:
    """Build ``job`` in ``workdir`` (created fresh, removed by the caller), in the build ``root`` if given
    (``python`` is then the root's interpreter)."""
    started = time.monotonic()
    sdist = workdir / "src" / job["source_filename"]
    try:
        download(job["source_url"], sdist, job["source_sha256"], job["source_size"])
    except (httpx.HTTPError, ValueError, OSError) as exc:
        return Outcome(
            False,
            time.monotonic() - started,
            log=str(exc).encode(),
            failure_reason=str(FailureReason.DOWNLOAD_FAILED),
            failure_detail=str(exc),
        )
    try:
        source = source_for_build(sdist, list(job.get("extra_requirements") or []), workdir / "tree")
    except BadSdist as exc:
        return Outcome(
            False,
            time.monotonic() - started,
            log=str(exc).encode(),
            failure_reason=str(FailureReason.NO_SOURCE),
            failure_detail=str(exc),
        )
    out = workdir / "out"
    out.mkdir()
    uv = ROOT_UV if root else find_uv_bin()
    sandbox = make_sandbox(sandbox_mode, allowed_hosts(job), root=root)
    paths = [] if root else _readonly_paths(python, uv)
    result = sandbox.run(
        _uv_build_argv(uv, job, workdir, python, source, out),
        workdir=workdir,
        env=_build_env(job),
        limits=Limits(timeout_s=float(job["time_limit_seconds"])),
        readonly_paths=paths,
        cancel=cancel,
    )
    environment = {**describe_environment(python, sandbox), "frontend": _version(uv, root)}
    if job.get("cflags"):
        environment["cflags"] = job["cflags"]
    wheels = sorted(out.glob("*.whl"))
    outcome = Outcome(
        success=result.returncode == 0 and bool(wheels),
        duration_s=time.monotonic() - started,
        wheels=wheels,
        log=result.log,
        environment=environment,
    )
    if outcome.success and job.get("smoke_test", True):
        _smoke_test(outcome, job, workdir, sandbox, python, paths)
    if outcome.success:
        base = frozenset(job.get("base_packages") or ())
        outcome.apt_packages = {wheel.name: _apt_packages(wheel, base, root) for wheel in wheels}
    elif outcome.failure_reason is None:
        diagnosis = classify(result.log.decode("utf-8", "replace"), result.killed_reason)
        outcome.failure_reason = str(diagnosis.reason)
        outcome.failure_detail = diagnosis.shown_detail()
        outcome.remedy = diagnosis.python_module
    return outcome


def _smoke_test(
    outcome: Outcome, job: dict[str, Any], workdir: Path, sandbox: Sandbox, python: str, paths: list[Path]
) -> None:
    """Import each wheel before it is uploaded; a wheel that does not import is not published."""
    modules = tuple(job.get("smoke_test_modules") or ())
    imported: list[str] = []
    for wheel in outcome.wheels:
        result = smoke_test(wheel, workdir, sandbox, python, readonly_paths=paths, modules=modules)
        imported += result.modules
        if not result.passed:
            outcome.success, outcome.wheels = False, []
            outcome.failure_reason, outcome.failure_detail = "smoke_test_failed", (result.error or "")[:2000]
            outcome.log += f"\n[wheelmill] smoke test of {wheel.name} failed:\n{result.error}\n".encode()
            return
    outcome.log += f"\n[wheelmill] smoke test passed: imported {', '.join(imported) or 'nothing'}\n".encode()


def _uv_build_argv(
    uv: str, job: dict[str, Any], workdir: Path, python: str, source: Path, out: Path
) -> list[str]:
    """``uv build --wheel`` with the farm's index and upstream, a cache of its own, no config of the host.

    Both indexes are searched for the best version, as pip does: with uv's default (the first index
    that has a project wins) an old farm build of, say, Cython would shadow upstream's newer releases.
    """
    return [
        uv, "build", "--wheel", "--color", "never", *_uv_config(job, workdir),
        "--python", python, "--no-python-downloads",
        "--index", job["index_url"], "--default-index", job["extra_index_url"],
        "--index-strategy", "unsafe-best-match",
        "--cache-dir", str(workdir / "uv-cache"), "--out-dir", str(out), str(source),
    ]  # fmt: skip


def _uv_config(job: dict[str, Any], workdir: Path) -> list[str]:
    """The remedy hook: the claim's ``extra_requirements`` join the build environment of this package.

    They go to uv as ``extra-build-dependencies`` of the job's package, in a uv.toml written before the
    build starts (uv reads it at start-up, before the build's code runs). JSON strings and arrays are
    valid TOML, so a requirement string cannot inject settings.
    """
    extras = list(job.get("extra_requirements") or [])
    if not extras:
        return ["--no-config"]
    config = workdir / "uv.toml"
    config.write_text(f"[extra-build-dependencies]\n{json.dumps(job['package'])} = {json.dumps(extras)}\n")
    return ["--config-file", str(config)]


def _build_env(job: dict[str, Any]) -> dict[str, str]:
    """Variables for the build beyond the sandbox's own: pip's indexes, for builds that run pip themselves
    (setup_requires, a setup.py calling pip), no progress bars in the log, the target's compiler flags.

    uv retries an index 8 times (~75 s of backoff) instead of 3 (~5 s): the farm's index is the
    master, and a build that resolves its build requirements while the master restarts must ride
    through it, as the builder itself does, instead of failing for good."""
    env = {
        "PIP_INDEX_URL": job["index_url"],
        "PIP_EXTRA_INDEX_URL": job["extra_index_url"],
        "PIP_NO_CACHE_DIR": "1",
        "UV_NO_PROGRESS": "1",
        "UV_HTTP_RETRIES": "8",
    }
    if job.get("cflags"):
        env["CFLAGS"] = job["cflags"]
    return env


@functools.cache
def _version(uv: str, root: Path | None) -> str:
    """The frontend's version for the build record, e.g. "uv 0.8.3"."""
    if root is None:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30, check=False)
        output = done.stdout
    else:
        output = make_sandbox("required", root=root).output([uv, "--version"])
    return " ".join(output.split()[:2]) or "uv (unknown version)"


def _apt_packages(wheel: Path, base: frozenset[str], root: Path | None) -> list[str]:
    """The Debian packages a user installs for ``wheel``, beyond the base image's."""
    packages = debian_packages(external_sonames(wheel), base, root)
    unresolved = sorted(soname for soname, package in packages.items() if package is None)
    if unresolved:
        log.warning("%s needs libraries no Debian package provides here: %s", wheel.name, unresolved)
    return sorted({package for package in packages.values() if package})


def _readonly_paths(python: str, uv: str) -> list[Path]:
    """What the build needs from outside /usr (a pyenv or venv Python, uv in it or elsewhere), read-only."""
    prefix = Path(sys.prefix if python == sys.executable else Path(python).resolve().parent.parent)
    paths = {prefix, Path(sys.base_prefix), Path(uv)}
    return sorted(p for p in paths if not p.is_relative_to("/usr"))


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
