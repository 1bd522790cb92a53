"""What building through the farm costs over a bare ``pip wheel``: twenty real small sdists, both ways.

A: ``pip wheel --no-deps`` of each sdist in turn, as a user would run it (pip's own cache fresh for
   each round, so no round reuses the wheels an earlier one built).
B: the same sdists through a real farm: ``wheelmill serve`` following a local stand-in upstream that
   serves them, and one ``wheelmill builder`` with the sandbox required, timed from the builder's
   start until every wheel is on the published index (claim, download, build, upload, publish).

Both resolve build dependencies from the same local stand-in upstream (the wheels PyPI serves for
them, fetched once), so the network is not measured. Rounds alternate A B A B, so drift in the
machine's load hits both; the figure is the ratio of the medians of wall time, and beside it the same
for CPU time (every process of the round, by a cpuacct cgroup), which a busy machine sways less.
The sdists and build-dependency wheels are fetched once from PyPI (JSON API, files.pythonhosted.org,
``pip download``) into bench/.cache/.

    python bench/overhead.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import canonicalize_name, parse_sdist_filename

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import client_env, free_port
from wheelmill.testing import StandInUpstream

CACHE = Path(__file__).parent / ".cache"
TARGET_RATIO = 1.10
# Pure Python first, then C extensions; each builds from its sdist with its declared build requirements.
PACKAGES = [
    ("six", "1.16.0"),
    ("certifi", "2024.2.2"),
    ("toml", "0.10.2"),
    ("click", "8.1.7"),
    ("itsdangerous", "2.1.2"),
    ("decorator", "5.1.1"),
    ("pycparser", "2.22"),
    ("cachetools", "5.3.3"),
    ("idna", "3.7"),
    ("tomli", "2.0.1"),
    ("markupsafe", "2.1.5"),
    ("simplejson", "3.19.2"),
    ("wrapt", "1.16.0"),
    ("multidict", "6.0.5"),
    ("pyrsistent", "0.20.0"),
    ("bitarray", "2.9.2"),
    ("mmh3", "4.1.0"),
    ("setproctitle", "1.3.3"),
    ("websockets", "12.0"),
    ("crcmod", "1.7"),
]
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0", "wheel"]  # PEP 517's fallback for a setup.py-only sdist


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without its pip, uv or wheelmill settings, plus ``extra``."""
    return {**client_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


# -- fetching, once ---------------------------------------------------------------------------------


def fetch_sdists(cache: Path) -> list[Path]:
    """Each package's sdist, from PyPI's JSON API, checked against its published sha256."""
    cache.mkdir(parents=True, exist_ok=True)
    found = []
    with httpx.Client(timeout=120, follow_redirects=True) as client:
        for name, version in PACKAGES:
            answer = client.get(f"https://pypi.org/pypi/{name}/json").raise_for_status()
            (sdist,) = (u for u in answer.json()["releases"][version] if u["packagetype"] == "sdist")
            path = cache / sdist["filename"]
            if not path.exists() or _sha256(path) != sdist["digests"]["sha256"]:
                print(f"fetching {sdist['filename']}", file=sys.stderr)
                data = client.get(answer.url.join(sdist["url"])).raise_for_status().content  # may be relative
                if hashlib.sha256(data).hexdigest() != sdist["digests"]["sha256"]:
                    raise SystemExit(f"{sdist['filename']}: sha256 does not match PyPI's")
                path.write_bytes(data)
            found.append(path)
    return found


def fetch_build_dependencies(cache: Path, sdists: list[Path]) -> list[Path]:
    """Wheels of every sdist's build requirements (and theirs), from PyPI by ``pip download``."""
    cache.mkdir(parents=True, exist_ok=True)
    done = cache / "fetched.json"
    wanted = sorted({requirement for sdist in sdists for requirement in build_requires(sdist)})
    if not done.exists() or json.loads(done.read_text()) != wanted:
        for sdist in sdists:  # one at a time: their requirements may conflict with each other's
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--dest"]
            subprocess.run([*pip, str(cache), *build_requires(sdist)], env=clean_env(), check=True)
        done.write_text(json.dumps(wanted))
    return sorted(cache.glob("*.whl"))


def build_requires(sdist: Path) -> list[str]:
    """[build-system] requires of an sdist's pyproject.toml, plus wheel (older setuptools ask for it)."""
    with tarfile.open(sdist) as archive:
        top = {member.name: member for member in archive.getmembers() if member.name.count("/") == 1}
        member = next((m for name, m in top.items() if name.endswith("/pyproject.toml")), None)
        text = archive.extractfile(member).read().decode() if member else ""  # type: ignore[union-attr]
    pyproject = tomllib.loads(text)
    return list(
        dict.fromkeys([*pyproject.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES), "wheel"])
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float | None  # user + system of every process the round ran: less swayed by a busy machine


class CpuMeter:
    """CPU time of the processes started in it and all their descendants: a cgroup v1 cpuacct group.

    rusage would miss a build's processes that the sandbox kills before their parent reaps them.
    Where no cpuacct group can be made (not root, cgroup v2), ``seconds()`` is None.
    """

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self.path: Path | None = self.ROOT / f"wheelmill-bench-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.path.mkdir()
        except OSError:
            self.path = None

    def join(self) -> None:
        """Between fork and exec: put the new process in the group."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text("0")

    def seconds(self) -> float | None:
        return None if self.path is None else int((self.path / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        while self.path is not None and self.path.exists():
            with contextlib.suppress(OSError):
                self.path.rmdir()  # refused until the last process in it is reaped
            time.sleep(0.05)


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# -- A: bare pip ------------------------------------------------------------------------------------


def round_bare_pip(upstream: StandInUpstream, sdists: list[Path], scratch: Path, meter: CpuMeter) -> Timing:
    """``pip wheel --no-deps`` of every sdist, one after another."""
    env = clean_env(PIP_CACHE_DIR=str(scratch / "pip-cache"), PIP_INDEX_URL=upstream.simple_url)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(scratch / "out")]
    started = time.monotonic()
    for sdist in sdists:
        done = subprocess.run(
            [*argv, str(sdist)], env=env, capture_output=True, text=True, preexec_fn=meter.join
        )
        if done.returncode:
            raise SystemExit(f"bare pip could not build {sdist.name}:\n{done.stdout}{done.stderr}")
    return Timing(time.monotonic() - started, meter.seconds())


# -- B: a farm --------------------------------------------------------------------------------------


def wheelmill(config: Path, *args: str) -> str:
    argv = [sys.executable, "-m", "wheelmill", "--config", str(config), *args]
    return subprocess.run(argv, env=clean_env(), capture_output=True, text=True, check=True).stdout.strip()


@contextlib.contextmanager
def running(
    argv: list[str], env: dict[str, str], output: Path, meter: CpuMeter
) -> Iterator[subprocess.Popen[bytes]]:
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=output.parent, preexec_fn=meter.join
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def job_states(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return [status for (status,) in conn.execute("SELECT status FROM jobs")]


def published(url: str, names: list[str]) -> bool:
    """Whether every package's index page lists a wheel the farm built."""
    for name in names:
        page = httpx.get(f"{url}/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        files = page.json()["files"] if page.status_code == 200 else []
        if not any(f["filename"].endswith(".whl") and not f["url"].startswith("http") for f in files):
            return False
    return True


def round_farm(
    upstream: StandInUpstream, names: list[str], scratch: Path, port: int, meter: CpuMeter
) -> Timing:
    """From a builder's start until a fresh farm has published a wheel of every package.

    The farm plans its jobs before the builder starts; the CPU counted is the builder's (with its
    builds) and the master's while the builder ran.
    """
    url = f"http://127.0.0.1:{port}"
    config = scratch / "farm.toml"
    config.write_text(
        f'data_dir = "{scratch / "data"}"\nupstream = "{upstream.simple_url}"\nlisten = "127.0.0.1:{port}"\n'
        'sandbox = "required"\n'
    )
    wheelmill(config, "watch", "add", *names)
    token = wheelmill(config, "token", "create", "--builder", "bench")
    database = scratch / "data" / "wheelmill.db"
    serve = [sys.executable, "-m", "wheelmill", "--config", str(config), "serve"]
    builder = [sys.executable, "-m", "wheelmill", "--config", str(config), "builder", "--master", url]
    builder += ["--workdir", str(scratch / "builder")]

    with running(serve, clean_env(), scratch / "master.log", meter) as master:

        def done() -> bool:
            states = job_states(database)
            if "failed" in states or master.poll() is not None:
                raise SystemExit(f"the farm failed a build or stopped: see {scratch}")
            return states.count("built") == len(names) and published(url, names)

        wait_for(lambda: job_states(database).count("queued") == len(names), "the farm to plan its jobs", 120)
        cpu_before, started = meter.seconds(), time.monotonic()
        with running(builder, clean_env(WHEELMILL_TOKEN=token), scratch / "builder.log", meter):
            wait_for(done, "every wheel on the farm's index", 3600)
            return Timing(time.monotonic() - started, _spent(cpu_before, meter.seconds()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each, alternating A B (default 2)")
    args = parser.parse_args()
    sdists = fetch_sdists(CACHE / "sdists")
    wheels = fetch_build_dependencies(CACHE / "build-dependencies", sdists)
    timings: dict[str, list[Timing]] = {"bare_pip": [], "farm": []}
    with StandInUpstream() as upstream:
        for path in [*wheels, *sdists]:
            upstream.add_wheel_file(path) if path.suffix == ".whl" else upstream.add_sdist_file(path)
        for number in range(1, args.rounds + 1):
            for way in timings:
                timing = one_round(way, upstream, sdists)
                timings[way].append(timing)
                cpu = "n/a" if timing.cpu_s is None else f"{timing.cpu_s:7.2f} s"
                print(f"round {number} {way:8}: {timing.wall_s:7.2f} s wall, {cpu} CPU", flush=True)
    figures = _figures(timings)
    print(f"farm / bare pip, ratio of medians: {figures['ratio']} wall, {figures['cpu_ratio']} CPU")
    summary = {"figures": figures, "targets": {"ratio": TARGET_RATIO}}
    print(json.dumps({**summary, "met": {"ratio": figures["ratio"] <= TARGET_RATIO}}))
    return 0


def one_round(way: str, upstream: StandInUpstream, sdists: list[Path]) -> Timing:
    """One round of ``way`` (bare_pip or farm) over every sdist, in a scratch directory of its own."""
    meter = CpuMeter()
    try:
        with tempfile.TemporaryDirectory(prefix="wheelmill-bench-") as scratch:
            if way == "bare_pip":
                return round_bare_pip(upstream, sdists, Path(scratch), meter)
            names = [canonicalize_name(parse_sdist_filename(sdist.name)[0]) for sdist in sdists]
            return round_farm(upstream, names, Path(scratch), free_port(), meter)
    finally:
        meter.close()


def _figures(timings: dict[str, list[Timing]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for way, runs in timings.items():
        figures[f"{way}_wall_s"] = [round(t.wall_s, 2) for t in runs]
        figures[f"{way}_cpu_s"] = [round(t.cpu_s, 2) for t in runs if t.cpu_s is not None]
    for what, key in (("wall_s", "ratio"), ("cpu_s", "cpu_ratio")):
        farm, bare = figures[f"farm_{what}"], figures[f"bare_pip_{what}"]
        figures[key] = round(statistics.median(farm) / statistics.median(bare), 3) if farm and bare else None
    return figures


if __name__ == "__main__":
    sys.exit(main())
