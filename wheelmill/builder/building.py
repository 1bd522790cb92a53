"""Building one claimed job: fetch the sdist, check its hash, run ``pip wheel`` in the sandbox.

Everything the build writes stays under its work directory; the builder's own environment
(its token above all) never reaches the build.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from wheelmill.analysis.failures import classify
from wheelmill.analysis.libraries import debian_packages, external_sonames
from wheelmill.builder.buildenv import describe_environment
from wheelmill.builder.sandbox import Limits, make_sandbox

log = logging.getLogger(__name__)


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

    def report(self) -> dict[str, Any]:
        import base64

        return {
            "status": "success" if self.success else "failed",
            "duration_s": self.duration_s,
            "files": [wheel.name for wheel in self.wheels],
            "log_gzip_base64": base64.b64encode(gzip.compress(self.log)).decode(),
            "environment": self.environment,
            "failure_reason": self.failure_reason,
            "failure_detail": self.failure_detail,
            "apt_packages": self.apt_packages,
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
    job: dict[str, Any], workdir: Path, sandbox_mode: str, python: str, cancel: threading.Event
) -> Outcome:
    """Build ``job`` in ``workdir`` (created fresh, removed by the caller)."""
    started = time.monotonic()
    sdist = workdir / "src" / job["source_filename"]
    try:
        download(job["source_url"], sdist, job["source_sha256"], job["source_size"])
    except (httpx.HTTPError, ValueError, OSError) as exc:
        return Outcome(
            False,
            time.monotonic() - started,
            log=str(exc).encode(),
            failure_reason="download_failed",
            failure_detail=str(exc),
        )
    out = workdir / "out"
    out.mkdir()
    env = {
        "PIP_INDEX_URL": job["index_url"],
        "PIP_EXTRA_INDEX_URL": job["extra_index_url"],
        "PIP_NO_CACHE_DIR": "1",
    }
    if job.get("cflags"):
        env["CFLAGS"] = job["cflags"]
    argv = [python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)]
    limits = Limits(timeout_s=float(job["time_limit_seconds"]))
    sandbox = make_sandbox(sandbox_mode, allowed_hosts(job))
    result = sandbox.run(
        argv, workdir=workdir, env=env, limits=limits, readonly_paths=_python_paths(python), cancel=cancel
    )
    environment = describe_environment(python, result.mode)
    wheels = sorted(out.glob("*.whl"))
    outcome = Outcome(
        success=result.returncode == 0 and bool(wheels),
        duration_s=time.monotonic() - started,
        wheels=wheels,
        log=result.log,
        environment=environment,
    )
    if outcome.success:
        outcome.apt_packages = {wheel.name: _apt_packages(wheel) for wheel in wheels}
    else:
        diagnosis = classify(result.log.decode("utf-8", "replace"), result.killed_reason)
        outcome.failure_reason = str(diagnosis.reason)
        outcome.failure_detail = diagnosis.detail
    return outcome


def _apt_packages(wheel: Path) -> list[str]:
    packages = debian_packages(external_sonames(wheel))
    return sorted({package for package in packages.values() if package})


def _python_paths(python: str) -> list[Path]:
    """The interpreter's installation, when it lives outside /usr (pyenv, a venv): the build needs it."""
    prefix = Path(sys.prefix if python == sys.executable else Path(python).resolve().parent.parent)
    paths = {prefix, Path(sys.base_prefix)}
    return sorted(p for p in paths if not str(p).startswith("/usr"))


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
