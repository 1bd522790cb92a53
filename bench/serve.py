"""Benchmark: requests/s for /simple/NAME/ from the embedded server and from nginx, same directory.

    python bench/serve.py [--projects 2000] [--seconds 10] [--connections 32]

Publishes PROJECTS projects of eight files each into bench/.cache/serve/ (kept between runs),
then serves that directory with `wheelmill serve`'s static app under uvicorn (one process, as
`wheelmill serve` runs it) and with nginx and deploy/nginx.conf (one worker), one after the
other. One load generator measures both: a small asyncio HTTP/1.1 client in its own process,
CONNECTIONS keep-alive connections asking for random projects' pages in PEP 691 JSON, as pip and
uv do. It checks every answer is a 200 of the announced length. Progress goes to stderr; stdout
gets one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from wheelmill.publish.model import IndexFile, ProjectIndex, ProjectPage
from wheelmill.publish.publisher import Publisher

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache" / "serve"
NGINX = "/usr/sbin/nginx"
ACCEPT = "application/vnd.pypi.simple.v1+json"
console = Console(stderr=True)


def publish(output: Path, projects: int) -> list[str]:
    """A published index of `projects` projects, eight wheels each; returns their names."""
    names = [f"project-{number:05d}" for number in range(projects)]
    marker = output / f".complete-{projects}"
    if marker.exists():
        return names
    shutil.rmtree(output, ignore_errors=True)
    publisher = Publisher(output)
    now = datetime.now(UTC)
    for name in names:
        files = tuple(
            IndexFile(
                filename=f"{name.replace('-', '_')}-1.{minor}-cp311-cp311-linux_armv7l.whl",
                url=f"/files/{name}/{name.replace('-', '_')}-1.{minor}-cp311-cp311-linux_armv7l.whl",
                sha256=hashlib.sha256(f"{name}{minor}".encode()).hexdigest(),
                size=250_000,
                upload_time=now,
                requires_python=">=3.8",
                yanked=None,
                core_metadata_sha256=hashlib.sha256(name.encode()).hexdigest(),
                from_farm=True,
            )
            for minor in range(8)
        )
        versions = tuple(f"1.{minor}" for minor in range(8))
        index = ProjectIndex(name, name, versions, files, 1, f"https://pypi.org/simple/{name}/")
        publisher.write_project(index, ProjectPage(name, name, None, None, None, versions, (), (), (), ()))
    publisher.write_root_index(names, 1)
    marker.touch()
    return names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def start_embedded(output: Path, port: int) -> subprocess.Popen[bytes]:
    """The static app `wheelmill serve` mounts, under uvicorn with its default loop and parser."""
    code = (
        "import sys, uvicorn; from pathlib import Path; from wheelmill.master.static import make_static_app; "
        "uvicorn.run(make_static_app(Path(sys.argv[1])), host='127.0.0.1', port=int(sys.argv[2]), "
        "log_level='warning', access_log=False, lifespan='off')"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(output), str(port)])


def start_nginx(output: Path, port: int, prefix: Path) -> subprocess.Popen[bytes]:
    """nginx with deploy/nginx.conf, one worker, in the foreground, as the integration test runs it."""
    site = (REPO / "deploy" / "nginx.conf").read_text()
    (prefix / "wheelmill.conf").write_text(
        site.replace("@OUTPUT@", str(output)).replace("@PORT@", f"127.0.0.1:{port}")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"{kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"daemon off;\n{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\naccess_log off;\n{temp_paths}include {prefix}/wheelmill.conf;\n}}\n"
    )
    return subprocess.Popen(
        [NGINX, "-c", str(prefix / "nginx.conf"), "-p", str(prefix), "-e", str(prefix / "error.log")]
    )


async def _connection(port: int, names: list[str], until: float, counts: list[int]) -> None:
    """One client asking for pages until `until` over a keep-alive connection; counts [ok, errors].

    A server may close a connection after so many requests (nginx: keepalive_requests 1000), as
    pip and uv find too: the client opens another and goes on.
    """
    rng = random.Random()
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            keep_alive = True
            while keep_alive and time.monotonic() < until:
                request = (
                    f"GET /simple/{rng.choice(names)}/ HTTP/1.1\r\nHost: bench\r\nAccept: {ACCEPT}\r\n\r\n"
                )
                writer.write(request.encode())
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                good = lines[0].split(" ")[1] == "200" and body.startswith(b'{"meta"')
                counts[0 if good else 1] += 1
                keep_alive = fields.get("connection", "keep-alive").lower() != "close"
        except asyncio.IncompleteReadError as closed:
            if closed.partial:  # closed in the middle of an answer: that is an error
                counts[1] += 1
        finally:
            writer.close()


def load(port: int, names: list[str], seconds: float, connections: int) -> tuple[int, int, float]:
    """Requests answered well, errors, and the seconds they took, from this process."""

    async def run() -> tuple[int, int, float]:
        counts = [0, 0]
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(_connection(port, names, until, counts) for _ in range(connections)))
        return counts[0], counts[1], time.monotonic() - started

    return asyncio.run(run())


def measure(
    pool: ProcessPoolExecutor,
    port: int,
    names: list[str],
    args: argparse.Namespace,
    progress: Progress,
    label: str,
) -> tuple[float, int]:
    """Warm up for a second, then measure: requests/s and errors."""
    task = progress.add_task(label, total=args.seconds + 1)
    pool.submit(load, port, names, 1.0, args.connections).result()
    progress.advance(task, 1)
    future = pool.submit(load, port, names, args.seconds, args.connections)
    while not future.done():
        time.sleep(0.25)
        progress.update(task, completed=min(args.seconds + 1, progress.tasks[task].completed + 0.25))
    ok, errors, took = future.result()
    progress.update(task, completed=args.seconds + 1)
    return ok / took, errors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    output = CACHE / "www"
    names = publish(output, args.projects)
    figures: dict[str, float] = {}
    with (
        ProcessPoolExecutor(1) as pool,
        Progress(console=console) as progress,
        tempfile.TemporaryDirectory() as prefix,
    ):
        for server in ("embedded", "nginx"):
            port = free_port()
            nginx = server == "nginx"
            process = start_nginx(output, port, Path(prefix)) if nginx else start_embedded(output, port)
            try:
                wait_for_port(port)
                rate, errors = measure(pool, port, names, args, progress, server)
            finally:
                process.send_signal(signal.SIGQUIT if nginx else signal.SIGTERM)  # both: a graceful stop
                process.wait(30)
            figures |= {f"{server}_rps": round(rate, 1), f"{server}_errors": errors}
    figures["nginx_to_embedded"] = round(figures["nginx_rps"] / figures["embedded_rps"], 2)
    targets = {"embedded_errors": 0, "nginx_errors": 0}  # no target for the rates: they are compared
    met = {key: figures[key] <= limit for key, limit in targets.items()}
    console.print(f"embedded {figures['embedded_rps']} req/s, nginx {figures['nginx_rps']} req/s")
    print(json.dumps({"figures": figures, "targets": targets, "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
