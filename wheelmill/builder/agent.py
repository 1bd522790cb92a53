"""The builder agent: register, then claim, build, upload and complete, forever.

A heartbeat thread keeps the lease alive during each build and carries the master's orders:
``abort`` (or a lost lease, 409) cancels the build, ``pause`` stops claiming after it.

With a build root (``--root``), the builder builds there and claims the root's target, which it
learns by running the root's interpreter (under qemu-user for a foreign architecture).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from wheelmill import __version__
from wheelmill.builder import building
from wheelmill.builder.client import MasterClient, Stopping
from wheelmill.builder.sandbox import ROOT_PYTHON, make_sandbox
from wheelmill.errors import LeaseLost, UploadRefused
from wheelmill.targets import TARGET_PROBE, Target

log = logging.getLogger(__name__)


def host_info(target: Target, workdir: Path, root: Path | None = None) -> dict[str, Any]:
    """What a builder tells the master about itself when it registers."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = None
    cpu = f"{platform.machine()} x{os.cpu_count()}"
    return {
        "target": str(target),
        "os": platform.platform(),
        "cpu": f"{cpu}, building in a {target.platform} root" if root else cpu,
        "memory_bytes": memory,
        "disk_free_bytes": shutil.disk_usage(workdir).free,
        "versions": {"wheelmill": __version__, "python": platform.python_version()},
    }


def root_target(sandbox_mode: str, root: Path) -> Target:
    """The target of a build root: what its own interpreter says, asked inside the sandbox."""
    sandbox = make_sandbox(sandbox_mode, root=root)
    return Target.from_probe(sandbox.output([ROOT_PYTHON, "-I", "-c", TARGET_PROBE]))


class Heartbeats(threading.Thread):
    """Beats every ``interval`` seconds until stopped; sets ``cancel`` when the build must end."""

    def __init__(self, client: MasterClient, lease_id: str, interval: float, workdir: Path) -> None:
        super().__init__(name="wheelmill-heartbeat", daemon=True)
        self.client = client
        self.lease_id = lease_id
        self.interval = interval
        self.workdir = workdir.resolve()
        self.phase = "building"
        self.cancel = threading.Event()
        self.lost = False
        self.paused = False
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            state = {
                "phase": self.phase,
                "disk_free_bytes": shutil.disk_usage(self.workdir).free,
                "load": os.getloadavg()[0],
            }
            try:
                answer = self.client.heartbeat(self.lease_id, state)
            except LeaseLost:
                log.warning("lease %s lost: dropping the build", self.lease_id)
                self.lost = True
                self.cancel.set()
                return
            except Exception:
                log.exception("heartbeat failed")
                continue
            if answer["action"] == "abort":
                log.warning("the master aborted lease %s", self.lease_id)
                self.lost = True
                self.cancel.set()
                return
            self.paused = answer["action"] == "pause"


class BuilderAgent:
    def __init__(
        self,
        client: MasterClient,
        sandbox_mode: str,
        workdir: Path,
        *,
        python: str = sys.executable,
        target: Target | None = None,
        root: Path | None = None,
    ) -> None:
        self.client = client
        self.sandbox_mode = sandbox_mode
        self.workdir = workdir.resolve()
        self.root = root.resolve() if root else None
        self.python = ROOT_PYTHON if root else python
        self.target = target or (root_target(sandbox_mode, root) if root else Target.host())
        self.stop = threading.Event()
        self.current: Heartbeats | None = None

    def shutdown(self) -> None:
        """Stop claiming, cancel the running build and hand its job back to the master."""
        self.stop.set()
        self.client.stopping.set()
        current = self.current
        if current is not None:
            current.cancel.set()

    def run(self, max_jobs: int | None = None) -> int:
        """Claim and build until stopped (or ``max_jobs`` builds); returns builds done.

        Each completion also asks for the next job, so a busy builder makes one call per build.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        registered = self.client.register(host_info(self.target, self.workdir, self.root))
        log.info("registered as %s for %s", registered["name"], self.target)
        done = 0
        job: dict[str, Any] | None = None
        while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
            if job is None:
                try:
                    job, wait = self.client.claim()
                except Stopping:
                    break
                if job is None:
                    self.stop.wait(wait)
                    continue
                if self.stop.is_set():  # stopped while the claim was on its way
                    break
            wants_next = max_jobs is None or done + 1 < max_jobs
            job = self.run_job(job, claim_next=wants_next)
            done += 1
        if job is not None:  # stopping with a job leased: hand it straight back
            self.client.release(job["lease_id"])
        return done

    def run_job(self, job: dict[str, Any], *, claim_next: bool = False) -> dict[str, Any] | None:
        """Build one job and report it; returns the next job when ``claim_next`` got one."""
        workdir = self.workdir / f"build-{job['build_id']}"
        building.clean(workdir)
        workdir.mkdir(parents=True)
        beats = Heartbeats(self.client, job["lease_id"], job["heartbeat_seconds"], workdir)
        beats.start()
        log.info(
            "building %s %s for %s (job %s)", job["package"], job["version"], job["target"], job["job_id"]
        )
        try:
            self.current = beats
            outcome = building.build(
                job, workdir, self.sandbox_mode, self.python, beats.cancel, root=self.root
            )
            if beats.lost:
                return None
            if (
                self.stop.is_set()
            ):  # shutting down: hand the job back rather than wait for the lease to expire
                self.client.release(job["lease_id"])
                return None
            beats.phase = "uploading"
            return self._report(job, outcome, claim_next=claim_next and not self.stop.is_set())
        except LeaseLost:
            log.warning("lease of job %s is gone; the build is dropped", job["job_id"])
            return None
        finally:
            self.current = None
            beats.stopped.set()
            beats.join()
            building.clean(workdir)

    def _report(
        self, job: dict[str, Any], outcome: building.Outcome, *, claim_next: bool
    ) -> dict[str, Any] | None:
        lease = job["lease_id"]
        try:
            for wheel in outcome.wheels:
                self.client.upload(lease, wheel, building.sha256_of(wheel))
        except UploadRefused as exc:
            log.error("the master refused a wheel of job %s: %s", job["job_id"], exc)
            outcome.success = False
            outcome.failure_reason = "upload_refused"
            outcome.failure_detail = str(exc)[:2000]
            outcome.wheels = []
        answer = self.client.complete(lease, outcome.report(), claim_next=claim_next)
        log.info(
            "job %s: %s (build %s)",
            job["job_id"],
            "built" if outcome.success else "failed",
            answer["build_id"],
        )
        return answer.get("next")
