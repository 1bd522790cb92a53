"""The builder's HTTP client for the master's builder API.

Connection errors and 5xx answers are retried with backoff for up to ``patience`` seconds, so
a builder rides through a master restart; a 409 means the lease is gone: drop the build.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from wheelmill import __version__
from wheelmill.errors import AuthError, LeaseLost, UploadRefused, WheelmillError

log = logging.getLogger(__name__)
RELEASE_PATIENCE = 10.0


class Stopping(WheelmillError):
    """The builder is stopping: a claim gives up waiting for the master."""


class MasterClient:
    def __init__(
        self, master_url: str, token: str, *, patience: float = 600.0, timeout: float = 60.0
    ) -> None:
        self.base = master_url.rstrip("/") + "/api/v1"
        self.patience = patience
        self.http = httpx.Client(
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"wheelmill-builder/{__version__}"},
            timeout=timeout,
        )
        # Set when the builder stops: a claim then stops riding out a master that does not answer
        # (handing a job back still tries, for RELEASE_PATIENCE).
        self.stopping = threading.Event()

    def close(self) -> None:
        self.http.close()

    def _call(
        self,
        what: str,
        send: Callable[[], httpx.Response],
        give_up: threading.Event | None = None,
        patience: float | None = None,
    ) -> httpx.Response:
        patience = self.patience if patience is None else patience
        deadline = time.monotonic() + patience
        delay = 0.5
        while True:
            try:
                response = send()
                if response.status_code < 500:
                    return _checked(response)
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() + delay > deadline:
                raise WheelmillError(
                    f"{what}: the master did not answer for {patience:.0f} s ({problem})"
                )
            log.warning("%s: %s; retrying in %.1f s", what, problem, delay)
            if give_up is None:
                time.sleep(delay)
            elif give_up.wait(delay):
                raise Stopping(f"{what}: given up, the builder is stopping")
            delay = min(30.0, delay * 2) * random.uniform(0.8, 1.2)

    def register(self, info: dict[str, Any]) -> dict[str, Any]:
        return self._call("register", lambda: self.http.post(f"{self.base}/builders", json=info)).json()

    def claim(self) -> tuple[dict[str, Any] | None, float]:
        """A job, or None and how long to wait before asking again."""
        if self.stopping.is_set():
            raise Stopping("claim: the builder is stopping")
        response = self._call("claim", lambda: self.http.post(f"{self.base}/jobs/claim"), self.stopping)
        if response.status_code == 204:
            return None, float(response.headers.get("Retry-After", "5"))
        return response.json(), 0.0

    def heartbeat(self, lease_id: str, state: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "heartbeat", lambda: self.http.post(f"{self.base}/leases/{lease_id}/heartbeat", json=state)
        ).json()

    def upload(self, lease_id: str, path: Path, sha256: str) -> None:
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk

        self._call(
            f"upload {path.name}",
            lambda: self.http.put(
                f"{self.base}/leases/{lease_id}/files/{path.name}",
                content=chunks(),
                headers={
                    "X-Sha256": sha256,
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            ),
        )

    def release(self, lease_id: str) -> None:
        """Give a leased job back to the queue (the builder is stopping).

        Only a shortcut: the lease's expiry returns the job anyway, so a master that does not
        answer holds a stopping builder up for RELEASE_PATIENCE, not for the whole patience.
        """
        url = f"{self.base}/leases/{lease_id}/release"
        try:
            self._call("release", lambda: self.http.post(url), patience=RELEASE_PATIENCE)
        except LeaseLost:
            pass
        except WheelmillError as exc:
            log.warning("%s; the job returns to the queue when its lease expires", exc)

    def complete(self, lease_id: str, report: dict[str, Any], *, claim_next: bool = False) -> dict[str, Any]:
        """Report the build; with ``claim_next`` the answer's ``next`` is the next job, or None."""
        params = {"claim_next": "true"} if claim_next else {}
        return self._call(
            "complete",
            lambda: self.http.post(f"{self.base}/leases/{lease_id}/complete", json=report, params=params),
        ).json()


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if response.status_code == 409:
        raise LeaseLost(str(detail))
    if response.status_code in (401, 403):
        raise AuthError(str(detail))
    if response.status_code == 422:
        raise UploadRefused(str(detail))
    raise WheelmillError(
        f"{response.request.method} {response.request.url.path}: {response.status_code} {detail}"
    )
