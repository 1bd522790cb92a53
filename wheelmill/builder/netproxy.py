"""The index proxy: a build's only way out, and only to the hosts it is allowed to reach.

It speaks just enough of the HTTP/1.1 proxy protocol for pip, git and curl: `CONNECT host:port`
tunnels (HTTPS) and absolute-URI requests such as `GET http://host:port/path` (plain HTTP, which
pip sends in that form to a proxy). Any other host:port is answered 403 and never contacted.

It runs outside the sandbox, so "127.0.0.1:8000" means the builder host's loopback: that is how a
build in its own network namespace reaches a farm index listening on the host.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from wheelmill.builder.launcher import relay

log = logging.getLogger(__name__)

HEAD_LIMIT = 65536
CONNECT_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
# Headers meant for the proxy or this one hop; the forwarded request says "Connection: close"
# so that each client connection carries one request to the one host that was checked.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}

HostPort = tuple[str, int]


def parse_host_port(authority: str) -> HostPort:
    """Split "host:port" ("[v6]:port" for IPv6) into a lower-case host and a port."""
    parts = urlsplit("//" + authority)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.netloc != authority or parts.username is not None:
        raise ValueError(f"expected host:port, got {authority!r}")
    return parts.hostname, port


class _Refused(Exception):
    """A request the proxy answers itself, with this status."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """The request head (without its blank line) and whatever body bytes came with it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > HEAD_LIMIT:
            raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        chunk = client.recv(4096)
        if not chunk:
            raise _Refused(HTTPStatus.BAD_REQUEST, "connection closed before the end of the request head")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _route(head: bytes, rest: bytes) -> tuple[HostPort, bytes | None]:
    """Where the request goes, and the bytes to send there first (None for a CONNECT tunnel)."""
    request_line, *headers = head.split(b"\r\n")
    try:
        method, target, version = request_line.decode("ascii").split(" ")
        if method == "CONNECT":
            return parse_host_port(target), None
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"expected CONNECT or an http:// absolute URI, got {target!r}")
        where = (url.hostname, url.port or 80)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Refused(HTTPStatus.BAD_REQUEST, str(exc)) from exc
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [line for line in headers if line.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP]
    forwarded = b"\r\n".join([f"{method} {path} {version}".encode(), *kept, b"Connection: close", b"", b""])
    return where, forwarded + rest


def _answer(client: socket.socket, status: HTTPStatus, message: str) -> None:
    body = f"wheelmill proxy: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    client.sendall(head.encode() + body)


class _Handler(socketserver.BaseRequestHandler):
    server: _UnixServer | _TCPServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(IDLE_TIMEOUT_S)
        try:
            (host, port), first = _route(*_read_head(client))
            if (host, port) not in self.server.allowed:
                log.info("index proxy refused %s:%s", host, port)
                raise _Refused(HTTPStatus.FORBIDDEN, f"{host}:{port} is not an allowed host for builds")
            try:
                upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise _Refused(HTTPStatus.BAD_GATEWAY, f"cannot connect to {host}:{port}: {exc}") from exc
        except _Refused as refusal:
            _answer(client, refusal.status, str(refusal))
            return
        except OSError:
            return
        with upstream:
            upstream.settimeout(IDLE_TIMEOUT_S)
            if first is None:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(first)
            relay(client, upstream)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allowed: frozenset[HostPort] = frozenset()


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allowed: frozenset[HostPort] = frozenset()


class NetProxy:
    """An allowlisting proxy served by a background thread while the `with` block runs.

    On a Unix socket (unix_path) for a bubblewrap sandbox, else on an ephemeral 127.0.0.1 port.
    """

    def __init__(self, allowed_hosts: Iterable[str], unix_path: Path | None = None) -> None:
        allowed = frozenset(parse_host_port(host) for host in allowed_hosts)
        if unix_path is None:
            self._server: _UnixServer | _TCPServer = _TCPServer(("127.0.0.1", 0), _Handler)
        else:
            self._server = _UnixServer(str(unix_path), _Handler)
        self._server.allowed = allowed
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="netproxy", daemon=True
        )

    @property
    def url(self) -> str:
        """The proxy URL for clients on this host (TCP only)."""
        host, port = self._server.server_address
        return f"http://{host}:{port}"

    def __enter__(self) -> NetProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
