"""Inside the sandbox: relay 127.0.0.1:PORT to the index proxy's Unix socket, then exec the build.

Usage: python -I -S forwarder.py SOCKET PORT -- COMMAND...

The sandbox's network namespace holds only loopback, and HTTP clients speak TCP to a proxy, so
this relays each TCP connection to the proxy's socket, bound into the sandbox. The listener is
bound before the build starts (no race with the first request), the relay runs in a detached
child reaped by the sandbox's init, and the build keeps the launcher's PID so the sandbox exits
when the build does. The sandbox runs this file from a copy, with `-S`: standard library only.
"""

from __future__ import annotations

import contextlib
import os
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


def main(argv: list[str]) -> None:
    socket_path, port, separator, *command = argv
    if separator != "--" or not command:
        sys.exit("usage: forwarder.py SOCKET PORT -- COMMAND...")
    listener = socket.create_server(("127.0.0.1", int(port)))
    child = os.fork()
    if child == 0:
        # Double fork: the relay becomes the sandbox init's child, not an unknown child of the build.
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)  # do not hold the build log's pipe open
            _serve(listener, socket_path)
        os._exit(0)
    os.waitpid(child, 0)
    listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
