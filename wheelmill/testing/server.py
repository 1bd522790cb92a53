"""The stand-in's HTTP server: a stdlib threading server on 127.0.0.1, run in a background thread.

It adds what sits in front of PyPI's views: faults a test planned, ETags and 304s, and a record of
every request so a test can count what a client cost.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from wheelmill.testing.faults import Fault, FaultPlan
from wheelmill.testing.routes import Response, Router, xmlrpc_fault

logger = logging.getLogger(__name__)

RequestRecord = tuple[str, str, dict[str, str]]  # method, path with query, headers

_MAX_BODY = 1 << 20
_GARBAGE = b"<html><body><h1>Service Unavailable</h1><p>Try again later.</p></body></html>\n"


def faulty_response(fault: Fault) -> Response | None:
    """The answer for faults that replace the response outright; None for those that alter it."""
    match fault:
        case Fault.SERVER_ERROR:
            return Response(500, b"500 Internal Server Error")
        case Fault.TOO_MANY_REQUESTS:
            return Response(429, b"429 Too Many Requests", headers={"Retry-After": "1"})
        case Fault.GARBAGE:
            return Response(200, _GARBAGE, "text/html; charset=utf-8")
        case Fault.XMLRPC_FAULT:
            return xmlrpc_fault(-32500, "too many requests")
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, router: Router, faults: FaultPlan, requests: list[RequestRecord]) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.router = router
        self.faults = faults
        self.requests = requests
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (or a stop() that cuts them off) are normal for a test server.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a polling client is not slowed by reconnects
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle's algorithm and delayed ACKs
        # hold every keep-alive answer back 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: http.server would write a line per request to stderr."""

    def _answer(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        path = urlsplit(self.path).path
        fault = self.server.faults.take(self.command, path)
        try:
            response = faulty_response(fault) if fault else None
            if response is None:
                stale = fault == Fault.STALE
                response = self.server.router.route(
                    self.command, path, self.headers.get("Accept"), body, stale=stale
                )
        except Exception:
            logger.exception("stand-in upstream failed on %s %s", self.command, self.path)
            response = Response(500, b"500 Internal Server Error")
        if fault == Fault.TRUNCATED:
            response.body = response.body[: len(response.body) // 2]
        elif fault in (None, Fault.STALE):
            response = self._conditional(response)
        self._send(response)

    def _conditional(self, response: Response) -> Response:
        if response.status != 200 or self.command == "POST":
            return response
        etag = '"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
        response.headers["ETag"] = etag
        wanted = {tag.strip().removeprefix("W/") for tag in self.headers.get("If-None-Match", "").split(",")}
        if etag in wanted or "*" in wanted:
            return Response(304, b"", "", response.headers)
        return response

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.status != 304:
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.status != 304:
            self.wfile.write(response.body)


class UpstreamServer:
    """Runs the HTTP server in a daemon thread; restartable on the same port."""

    def __init__(self, router: Router, faults: FaultPlan, requests: list[RequestRecord]) -> None:
        self._router = router
        self._faults = faults
        self._requests = requests
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0  # 0 until the first start picks a free port; later starts reuse it

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(self.port, self._router, self._faults, self._requests)
        self.port = self._server.server_address[1]
        self._router.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stand-in-upstream",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, as a server going down would."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        with server.connections_lock:
            for connection in server.connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        self._server = self._thread = None
