"""The index proxy and the in-sandbox launcher, with real sockets and a real HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from wheelmill.builder import launcher
from wheelmill.builder.netproxy import NetProxy, parse_host_port


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path} via {self.headers['Connection']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def index_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(index_port: int) -> Iterator[NetProxy]:
    with NetProxy([f"127.0.0.1:{index_port}", "pypi.org:443"]) as running:
        yield running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(proxy_url: str, url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def raw(proxy_url: str, request: bytes) -> bytes:
    host, port = parse_host_port(proxy_url.removeprefix("http://"))
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [("pypi.org:443", ("pypi.org", 443)), ("PyPI.org:443", ("pypi.org", 443)), ("[::1]:8000", ("::1", 8000))],
)
def test_allowed_hosts_are_host_and_port(authority: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(authority) == expected


@pytest.mark.parametrize("authority", ["pypi.org", "pypi.org:https", "me@pypi.org:443", "pypi.org:443/x", ""])
def test_an_allowed_host_without_a_port_is_refused(authority: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        NetProxy([authority])


def test_plain_http_to_an_allowed_host_is_forwarded_one_request_per_connection(
    proxy: NetProxy, index_port: int
) -> None:
    assert fetch(proxy.url, f"http://127.0.0.1:{index_port}/simple/?x=1") == (
        200,
        "hello /simple/?x=1 via close",
    )


def test_other_hosts_and_ports_are_forbidden(proxy: NetProxy, index_port: int) -> None:
    status, body = fetch(proxy.url, f"http://127.0.0.1:{free_port()}/")
    assert status == 403 and "is not an allowed host for builds" in body
    assert fetch(proxy.url, "http://example.com/")[0] == 403
    assert raw(proxy.url, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 403 ")


def test_connect_tunnels_to_an_allowed_host(proxy: NetProxy, index_port: int) -> None:
    host, port = parse_host_port(proxy.url.removeprefix("http://"))
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{index_port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(4096) == b"HTTP/1.1 200 Connection established\r\n\r\n"
        sock.sendall(b"GET /tunnelled HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200 ") and answer.endswith(b"hello /tunnelled via None")


def test_malformed_requests_are_answered_not_forwarded(proxy: NetProxy) -> None:
    assert raw(proxy.url, b"hello\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(proxy.url, b"GET /relative HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(proxy.url, b"GET https://pypi.org/ HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(proxy.url, b"GET / HTTP/1.1\r\nX: " + b"y" * 70000).startswith(b"HTTP/1.1 431 ")


def test_an_allowed_host_that_is_down_is_a_bad_gateway(index_port: int) -> None:
    down = free_port()
    with NetProxy([f"127.0.0.1:{down}"]) as proxy:
        status, body = fetch(proxy.url, f"http://127.0.0.1:{down}/")
    assert status == 502 and "cannot connect" in body


def test_launcher_relays_tcp_to_the_unix_socket_proxy_then_runs_the_command(
    tmp_path: Path, index_port: int
) -> None:
    socket_path = tmp_path / "proxy.sock"
    port = free_port()
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{index_port}/x').read())"
    env = {"http_proxy": f"http://127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}
    lifeline, held = os.pipe()
    proxy = ["--proxy", str(socket_path), str(port)]
    argv = [
        sys.executable,
        "-I",
        "-S",
        launcher.__file__,
        str(lifeline),
        *proxy,
        "--",
        sys.executable,
        "-c",
        code,
    ]
    with NetProxy([f"127.0.0.1:{index_port}"], unix_path=socket_path):
        # Outside a sandbox nothing ends the detached keeper with the command: its process group does.
        launched = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, start_new_session=True, pass_fds=[lifeline]
        )
        try:
            stdout, _ = launched.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launched.pid, signal.SIGKILL)
            os.close(lifeline)
            os.close(held)
    assert (launched.returncode, stdout) == (0, b"b'hello /x via close'\n")


def test_the_launched_command_is_killed_once_the_lifeline_closes() -> None:
    """The builder holds the lifeline's write end: its death, however sudden, ends the build."""
    lifeline, held = os.pipe()
    argv = [sys.executable, "-I", "-S", launcher.__file__, str(lifeline), "--", "sleep", "30"]
    launched = subprocess.Popen(argv, start_new_session=True, pass_fds=[lifeline])
    os.close(lifeline)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            launched.wait(timeout=1)  # the lifeline held: the command runs
        os.close(held)
        assert launched.wait(timeout=10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched.pid, signal.SIGKILL)
