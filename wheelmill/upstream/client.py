"""A polite client for the upstream index: PEP 691 project pages and the JSON API.

Polite means one User-Agent that names wheelmill and the operator's contact, ETags so an
unchanged project costs one small request, and exponential backoff with jitter on connection
errors, timeouts, 429, 5xx and bodies that are not what the API promises.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from wheelmill import __version__
from wheelmill.errors import UpstreamError
from wheelmill.upstream.model import ProjectSnapshot, UpstreamFile

log = logging.getLogger(__name__)
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
T = TypeVar("T")


class RetryableError(UpstreamError):
    """Upstream failed in a way that may pass: try again after a pause."""


@dataclass(frozen=True)
class Fetched:
    """A project page: its snapshot and ETag, or ``snapshot=None`` when unchanged (304) or gone (404)."""

    snapshot: ProjectSnapshot | None
    etag: str | None
    status: int


def user_agent(contact: str) -> str:
    return f"wheelmill/{__version__} (+https://github.com/wheelmill; {contact or 'no contact configured'})"


class UpstreamClient:
    def __init__(
        self,
        simple_url: str,
        *,
        contact: str = "",
        attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.simple_url = simple_url if simple_url.endswith("/") else simple_url + "/"
        root = self.simple_url.removesuffix("simple/")
        self.json_url = root + "pypi/"
        self.xmlrpc_url = root + "pypi"
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.http = httpx.Client(
            headers={"User-Agent": user_agent(contact)}, timeout=timeout, follow_redirects=True
        )

    def close(self) -> None:
        self.http.close()

    def with_backoff(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``, retrying retryable failures with exponential backoff and full jitter."""
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except (httpx.TransportError, RetryableError) as exc:
                if attempt == self.attempts:
                    raise UpstreamError(f"{what}: gave up after {attempt} attempts: {exc}") from exc
                delay = random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
                if isinstance(exc, RetryableError) and exc.args and "Retry-After" in str(exc):
                    delay = max(delay, 1.0)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def project(self, name: str, etag: str | None = None) -> Fetched:
        """The PEP 691 JSON page of ``name``; 304 and 404 are answers, not errors."""

        def fetch() -> Fetched:
            headers = {"Accept": SIMPLE_JSON}
            if etag:
                headers["If-None-Match"] = etag
            response = self.http.get(self.simple_url + name + "/", headers=headers)
            if response.status_code in (304, 404):
                return Fetched(None, etag if response.status_code == 304 else None, response.status_code)
            raise_for_status(response)
            return Fetched(parse_project_page(response), response.headers.get("ETag"), response.status_code)

        return self.with_backoff(f"GET simple page of {name!r}", fetch)

    def project_info(self, name: str) -> dict[str, Any] | None:
        """The JSON API's ``info`` for ``name`` (summary, description), or None if unknown."""

        def fetch() -> dict[str, Any] | None:
            response = self.http.get(self.json_url + name + "/json")
            if response.status_code == 404:
                return None
            raise_for_status(response)
            body = json_body(response)
            if not isinstance(body.get("info"), dict):
                raise RetryableError(f"JSON API for {name!r} has no 'info' object")
            return body["info"]

        return self.with_backoff(f"GET JSON API of {name!r}", fetch)


def raise_for_status(response: httpx.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = response.headers.get("Retry-After")
        raise RetryableError(
            f"{response.request.url} answered {response.status_code}"
            + (f" (Retry-After {retry_after})" if retry_after else "")
        )
    if response.status_code >= 400:
        raise UpstreamError(f"{response.request.url} answered {response.status_code}")


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RetryableError(f"{response.request.url} sent a body that is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RetryableError(f"{response.request.url} sent JSON that is not an object")
    return body


def parse_project_page(response: httpx.Response) -> ProjectSnapshot:
    """A PEP 691 project page as a snapshot; a body that breaks the spec is retryable, never recorded."""
    body = json_body(response)
    try:
        meta = body["meta"]
        files = tuple(_file(entry, str(response.request.url)) for entry in body["files"])
        return ProjectSnapshot(
            name=str(body["name"]),
            versions=tuple(str(v) for v in body.get("versions", ())),
            files=files,
            last_serial=int(meta.get("_last-serial", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RetryableError(f"{response.request.url} is not a PEP 691 project page: {exc!r}") from exc


def _file(entry: dict[str, Any], page_url: str) -> UpstreamFile:
    yanked = entry.get("yanked", False)
    metadata = entry.get("core-metadata", entry.get("dist-info-metadata", False))
    upload_time = entry.get("upload-time")
    return UpstreamFile(
        filename=str(entry["filename"]),
        url=str(httpx.URL(page_url).join(entry["url"])),
        sha256=str(entry["hashes"]["sha256"]),
        size=int(entry.get("size", 0)),
        requires_python=entry.get("requires-python") or None,
        upload_time=datetime.fromisoformat(upload_time.replace("Z", "+00:00")) if upload_time else None,
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
        core_metadata_sha256=metadata.get("sha256") if isinstance(metadata, dict) else None,
    )
