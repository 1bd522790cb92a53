"""Inside the sandbox, before the build: tie it to the builder's life, relay the proxy, exec it.

Usage: python -I -S launcher.py LIFELINE_FD [--proxy SOCKET PORT] -- COMMAND...

Lifeline. The builder holds the only write end of a pipe whose read end is LIFELINE_FD, and
never writes to it: end of file means the builder is gone. bubblewrap's --die-with-parent cannot
promise that alone: the sandbox's init arms it only some milliseconds into its setup, and a
builder killed in that window (measured: half of 40 kills in the first 40 ms) left the sandbox
running, parented to the host's init, for good. A detached keeper waits for end of file and then
kills the build's first process, whose end ends the sandbox: its init exits, and with it every
process of its PID namespace, keeper included. A sandbox init that never gets as far as starting
this launcher (still waiting for its dead parent's go-ahead) is the warden's to end (warden.py).

Proxy. The sandbox's network namespace holds only loopback, and HTTP clients speak TCP to a
proxy, so the keeper relays each TCP connection on 127.0.0.1:PORT to the index proxy's Unix
socket, bound into the sandbox. The listener is bound before the build starts (no race with the
first request).

The keeper is the sandbox init's child, not an unknown child of the build, and the build keeps the
launcher's PID so the sandbox exits when the build does. The sandbox runs this file from a copy,
with `-S`: standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

CHUNK = 65536


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until EOF; on an error, break both so the other direction stops too."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways between two connected sockets until both directions end."""
    other = threading.Thread(target=_pipe, args=(b, a), daemon=True)
    other.start()
    _pipe(a, b)
    other.join()


def _forward(client: socket.socket, socket_path: str) -> None:
    with client, socket.socket(socket.AF_UNIX) as upstream:
        try:
            upstream.connect(socket_path)
        except OSError:
            return
        relay(client, upstream)


def _serve(listener: socket.socket, socket_path: str) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_forward, args=(client, socket_path), daemon=True).start()


def _keep(leader: int, lifeline: int, listener: socket.socket | None, socket_path: str) -> None:
    """The keeper: relay the proxy if asked, and once the builder is gone kill the build's leader."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)  # do not hold the build log's pipe open
    if listener is not None:
        threading.Thread(target=_serve, args=(listener, socket_path), daemon=True).start()
    while True:
        try:
            if not os.read(lifeline, 1):
                break
        except InterruptedError:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.kill(leader, signal.SIGKILL)
    os._exit(0)


def main(argv: list[str]) -> None:
    usage = "usage: launcher.py LIFELINE_FD [--proxy SOCKET PORT] -- COMMAND..."
    if len(argv) < 3 or not argv[0].isdigit():
        sys.exit(usage)
    lifeline, rest = int(argv[0]), argv[1:]
    listener, socket_path = None, ""
    if rest[0] == "--proxy" and len(rest) >= 3:
        socket_path, port, rest = rest[1], rest[2], rest[3:]
        listener = socket.create_server(("127.0.0.1", int(port)))
    separator, *command = rest
    if separator != "--" or not command:
        sys.exit(usage)
    leader = os.getpid()
    child = os.fork()
    if child == 0:
        # Double fork: the keeper becomes the sandbox init's child, not an unknown child of the build.
        if os.fork() == 0:
            _keep(leader, lifeline, listener, socket_path)
        os._exit(0)
    os.waitpid(child, 0)
    if listener is not None:
        listener.close()
    os.close(lifeline)  # the build never sees it
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
