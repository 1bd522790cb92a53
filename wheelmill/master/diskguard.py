"""The disk guard: below ``min_free_bytes`` free, refuse uploads and hand builders no work.

A full disk mid-upload leaves half-written wheels and a database that lists files it could not
store; refusing early is cheaper. The guard sits in front of the routes as ASGI middleware, so the
builder protocol's routes stay unaware of it: uploads get 507 with reason ``disk_full`` (builders
retry with backoff, keeping their lease), claims get 204 (builders wait and ask again). A
completion is still recorded; the next job it would hand out is withheld (``claiming_target``). The
home page (``notice``), ``wheelmill status`` and /metrics say why; ``GuardWatch`` has the home
page rewritten when the guard trips or clears.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from wheelmill.master.context import Master
from wheelmill.master.disk import disk_state

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 60
_UPLOAD = re.compile(r"/api/v1/leases/[^/]+/files/[^/]+")
CLAIM_PATH = "/api/v1/jobs/claim"


def notice(master: Master) -> str | None:
    """A sentence for the home page while the guard refuses work; None while there is room."""
    state = disk_state(master.settings)
    if not state.low:
        return None
    return (
        f"The farm is low on disk space ({_gib(state.free_bytes)} free, {_gib(state.min_free_bytes)} "
        "needed): new builds are paused and uploads refused until an operator frees space."
    )


class GuardWatch:
    """Marks the site pages when the guard trips or clears, so the home page's notice follows it.

    Nothing else need change the site when the disk fills: without this, the notice would wait
    for the next build or upstream change to appear, and stay after the operator freed space.
    ``shown`` is whether the home page shows the notice now; None if unknown, as when a master
    starts: a page written before the restart may show a notice for a disk the operator has freed
    meanwhile, so the first look then marks the pages either way.
    """

    def __init__(self, shown: bool | None = False) -> None:
        self.shown = shown

    def check(self, master: Master) -> bool:
        """Look at the disk; mark the site pages if the notice they show (or may show) is not the
        guard's state now, and say whether it did."""
        low = disk_state(master.settings).low
        if low == self.shown:
            return False
        if low or self.shown is not None:
            log.warning("disk guard %s: site pages marked for rewriting", "tripped" if low else "cleared")
        self.shown = low
        master.dirty.mark()
        return True


class DiskGuard:
    """ASGI middleware; ``refused(reason)`` is told of each refused upload (metrics count them)."""

    def __init__(self, app: ASGIApp, low: Callable[[], bool], refused: Callable[[str], None]) -> None:
        self.app = app
        self.low = low
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _guarded(scope) or not self.low():
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":  # a claim: no work now
            await _answer(send, 204, b"", [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
            return
        # Read the body before answering: a client still sending would otherwise see a reset
        # connection instead of the reason.
        while (await receive()).get("more_body", False):
            pass
        self.refused("disk_full")
        body = {
            "error": "DiskFull",
            "detail": "the master is low on disk space; retry later",
            "reason": "disk_full",
        }
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        ]
        await _answer(send, 507, json.dumps(body).encode(), headers)


def _guarded(scope: Scope) -> bool:
    path, method = scope["path"], scope["method"]
    if method == "POST":
        return path == CLAIM_PATH
    return method == "PUT" and _UPLOAD.fullmatch(path) is not None


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
