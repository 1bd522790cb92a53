"""What emulation costs: the same sdists built natively and in an armhf build root under qemu-user.

Each package is built by the builder's own build step (``building.build``: bubblewrap sandbox,
``uv build --wheel``, smoke test), once for this machine and once in the root, alternating
native / emulated so drift in the machine's load hits both. Build dependencies come from a local
stand-in upstream (setuptools and wheel wheels fetched once by the tests' fixture), so the network
is not measured. The figures are each build's wall time and, per package and overall, the ratio
emulated / native. The issue sets no target: this measures, it does not pass or fail.

    sudo python bench/emulation.py [--root ~/.cache/wheelmill-tests/armhf-root] [--rounds 1]

The root must exist: ``wheelmill builder-root create --arch armhf DIR`` makes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import BUILD_DEPENDENCIES, WHEELHOUSE
from wheelmill.builder import building
from wheelmill.builder.sandbox import ROOT_PYTHON
from wheelmill.rootfs.debootstrap import read_info
from wheelmill.testing import StandInUpstream

# (name, kind): C extensions, where the compiler runs under emulation, and pure Python packages.
PACKAGES = [
    ("bench-c-one", "cext"),
    ("bench-c-two", "cext"),
    ("bench-pure-one", "pure"),
    ("bench-pure-two", "pure"),
]


def build_once(job: dict[str, Any], root: Path | None, scratch: Path) -> float:
    """Wall seconds of one successful build (natively when root is None)."""
    workdir = Path(tempfile.mkdtemp(dir=scratch))
    python = ROOT_PYTHON if root else sys.executable
    started = time.perf_counter()
    outcome = building.build(job, workdir, "required", python, threading.Event(), root=root)
    elapsed = time.perf_counter() - started
    building.clean(workdir)
    if not outcome.success:
        raise SystemExit(
            f"{job['package']} failed to build ({root or 'native'}):\n{outcome.log.decode()[-3000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=WHEELHOUSE / "armhf-root", help="the armhf build root")
    parser.add_argument("--rounds", type=int, default=1, help="builds of each package each way")
    args = parser.parse_args()
    info = read_info(args.root)
    if info is None:
        raise SystemExit(
            f"{args.root} is not a build root: wheelmill builder-root create --arch armhf {args.root}"
        )
    wheels = [path for name in BUILD_DEPENDENCIES for path in sorted(WHEELHOUSE.glob(f"{name}-*.whl"))[-1:]]
    if len(wheels) != len(BUILD_DEPENDENCIES):
        raise SystemExit(
            f"no setuptools and wheel wheels in {WHEELHOUSE}: run the tests once, or pip download them"
        )
    console = Console(stderr=True)
    times: dict[str, dict[str, list[float]]] = {name: {"native": [], "emulated": []} for name, _ in PACKAGES}
    with StandInUpstream() as upstream, tempfile.TemporaryDirectory(prefix="wheelmill-bench-") as scratch:
        for wheel in wheels:
            upstream.add_wheel_file(wheel)
        jobs = {name: job_for(upstream, name, kind) for name, kind in PACKAGES}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("building", total=len(PACKAGES) * args.rounds * 2)
            for _ in range(args.rounds):
                for name, job in jobs.items():
                    for way, root in (("native", None), ("emulated", args.root)):
                        progress.update(task, description=f"{name} {way}")
                        times[name][way].append(build_once(job, root, Path(scratch)))
                        progress.advance(task)
    report(times, info.arch, console)


def job_for(upstream: StandInUpstream, name: str, kind: str) -> dict[str, Any]:
    sdist = upstream.add_release(name, "1.0", kind=kind)
    assert sdist is not None
    return {
        "package": name, "version": "1.0", "source_url": upstream.url + sdist.path,
        "source_filename": sdist.filename, "source_sha256": sdist.sha256, "source_size": sdist.size,
        "index_url": upstream.simple_url, "extra_index_url": upstream.simple_url,
        "time_limit_seconds": 1800, "extra_requirements": [],
    }  # fmt: skip


def report(times: dict[str, dict[str, list[float]]], arch: str, console: Console) -> None:
    figures: dict[str, Any] = {}
    for name, ways in times.items():
        native, emulated = statistics.median(ways["native"]), statistics.median(ways["emulated"])
        figures[name] = {
            "native_s": round(native, 2),
            "emulated_s": round(emulated, 2),
            "ratio": round(emulated / native, 1),
        }
        console.print(
            f"{name:16} native {native:7.2f} s   {arch} in qemu {emulated:7.2f} s   x{emulated / native:.1f}"
        )
    ratios = [figure["ratio"] for figure in figures.values()]
    total_native = sum(figure["native_s"] for figure in figures.values())
    total_emulated = sum(figure["emulated_s"] for figure in figures.values())
    console.print(
        f"all: native {total_native:.1f} s, emulated {total_emulated:.1f} s, "
        f"x{total_emulated / total_native:.1f}"
    )
    print(
        json.dumps(
            {
                "bench": "emulation",
                "packages": figures,
                "total_native_s": round(total_native, 2),
                "total_emulated_s": round(total_emulated, 2),
                "ratio_total": round(total_emulated / total_native, 1),
                "ratio_median": statistics.median(ratios),
                "targets": {},
                "met": {},
                "note": "the issue sets no numeric target for emulation; these are measurements",
            }
        )
    )


if __name__ == "__main__":
    main()
