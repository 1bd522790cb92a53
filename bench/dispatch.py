"""Dispatch benchmark (issue 4): a queue of 1,000,000 jobs, served by a real ``wheelmill serve``,
claimed and completed by simulated builders through the real HTTP API.

    python bench/dispatch.py [--jobs N] [--postgres URL] [--seconds S] [--workers W]

Prints (a) capacity: jobs claimed and completed per second by builders that take no time to
build; (b) claim latency p50/p99 under 200 builders whose builds take 0.5-1.5 s; (c) duplicate
claims across both; (d) the naive "versions with no build yet" query's time as a ratio to one
claim. Between (a) and (b) the master publishes the pages of (a)'s thousands of builds first:
the latency phase measures 200 builders, not that backlog. SQLite always; PostgreSQL too when
--postgres (or WHEELMILL_BENCH_DATABASE_URL) is given. The master runs as ``serve`` with
``workers`` API processes; the figures include the master's CPU per job, which other load on a
shared machine does not inflate as much as it does throughput.
The last line is JSON: figures, targets, and whether each was met.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from simulation import (
    console,
    duplicates,
    fill_queue,
    make_tokens,
    naive_and_claim_ms,
    run_load,
    start_master,
    wait_for_publisher,
)

TARGETS = {"capacity_jobs_per_s": 500, "p99_claim_ms": 10, "duplicates": 0, "naive_ratio": 100}


def bench_backend(name: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    console.rule(f"{name}: {args.jobs:,} jobs")
    fill_queue(url, args.jobs)
    tokens = make_tokens(url, 200)
    server, base = start_master(url, workdir, args.workers)
    try:
        capacity = run_load(server, base, tokens[: args.capacity_builders], args.seconds, None, "capacity")
        publisher_catch_up = wait_for_publisher(url)
        loaded = run_load(server, base, tokens, args.seconds, (0.5, 1.5), "200 builders")
    finally:
        server.terminate()
        server.wait(timeout=30)
    naive_ms, claim_ms = naive_and_claim_ms(url)
    ms = sorted(latency * 1000 for latency in loaded.latencies)
    figures = {
        "capacity_jobs_per_s": round(capacity.per_second, 1),
        "master_cpu_ms_per_job": round(1000 * capacity.master_cpu / max(1, len(capacity.done)), 2),
        "loops_cpu_ms_per_job": round(1000 * capacity.loops_cpu / max(1, len(capacity.done)), 2),
        "publisher_catch_up_s": round(publisher_catch_up, 1),
        "p50_claim_ms": round(ms[len(ms) // 2], 2),
        "p99_claim_ms": round(ms[int(len(ms) * 0.99)], 2),
        "claims_under_load": len(ms),
        "jobs_completed": len(capacity.done) + len(loaded.done),
        "duplicates": duplicates(url),
        "naive_query_ms": round(naive_ms, 1),
        "claim_ms": round(claim_ms, 3),
        "naive_ratio": round(naive_ms / claim_ms, 1),
    }
    for key, value in figures.items():
        console.print(f"  {name} {key}: {value}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--capacity-builders", type=int, default=16)
    # Two per core, as docs/operating.md advises: a worker answers a call while it waits on the
    # database, so with one per core the cores idle during PostgreSQL's round trips and a burst
    # of calls queues behind them (p99 8.6-10.3 ms at 2 workers, 6.3-6.6 ms at 4, one machine).
    parser.add_argument("--workers", type=int, default=4, help="API processes of the master (serve)")
    parser.add_argument("--postgres", default=os.environ.get("WHEELMILL_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wheelmill-dispatch-") as tmp:
        workdir = Path(tmp)
        (workdir / "sqlite").mkdir()
        results["sqlite"] = bench_backend(
            "sqlite", f"sqlite:///{workdir / 'sqlite' / 'q.db'}", args, workdir / "sqlite"
        )
        if args.postgres:
            (workdir / "pg").mkdir()
            results["postgresql"] = bench_backend("postgresql", args.postgres, args, workdir / "pg")
    met = {
        f"{backend}.{key}": (
            figures[key] >= target
            if key in ("capacity_jobs_per_s", "naive_ratio")
            else figures[key] <= target
        )
        for backend, figures in results.items()
        for key, target in TARGETS.items()
    }
    print(json.dumps({"figures": results, "workers": args.workers, "targets": TARGETS, "met": met}))


if __name__ == "__main__":
    main()
