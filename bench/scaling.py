"""Scaling benchmark (issue 4): does the farm build N times faster with N builders?

    python bench/scaling.py [--builders 1,10,100,300] [--seconds S] [--postgres URL] [--workers W]

Simulated builders whose builds take 1 s claim and complete through the real HTTP API of a real
``wheelmill serve``. For each fleet size it prints the throughput (jobs/s) and the efficiency
against linear scaling (N builders of 1 s builds can do at most N jobs/s). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from simulation import console, fill_queue, make_tokens, run_load, start_master, wait_for_publisher

BUILD_SECONDS = 1.0
TARGETS = {"efficiency_100": 0.95, "efficiency_300": 0.90}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--builders", default="1,10,100,300")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--postgres", default=os.environ.get("WHEELMILL_BENCH_DATABASE_URL"))
    parser.add_argument("--workers", type=int, default=2, help="API processes of the master (serve)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.builders.split(",")]
    with tempfile.TemporaryDirectory(prefix="wheelmill-scaling-") as tmp:
        workdir = Path(tmp)
        url = args.postgres or f"sqlite:///{workdir / 'queue.db'}"
        fill_queue(url, args.jobs)
        tokens = make_tokens(url, max(sizes))
        server, base = start_master(url, workdir, args.workers)
        figures: dict[str, float] = {}
        try:
            for size in sizes:
                wait_for_publisher(url)  # the last fleet's pages are not this one's load
                build = (BUILD_SECONDS, BUILD_SECONDS)
                load = run_load(server, base, tokens[:size], args.seconds, build, f"{size} builders")
                # A builder's cycle is its build plus two calls; linear means size / BUILD_SECONDS jobs/s.
                throughput = load.per_second
                figures[f"throughput_{size}"] = round(throughput, 2)
                figures[f"efficiency_{size}"] = round(throughput / (size / BUILD_SECONDS), 3)
                console.print(
                    f"  {size:>4} builders: {throughput:8.1f} jobs/s, efficiency "
                    f"{figures[f'efficiency_{size}']:.1%}"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    met = {key: figures.get(key, 0.0) >= target for key, target in TARGETS.items()}
    print(
        json.dumps(
            {
                "figures": figures,
                "backend": "postgresql" if args.postgres else "sqlite",
                "workers": args.workers,
                "targets": TARGETS,
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
