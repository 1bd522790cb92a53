"""Access-log ingest benchmark (issue 7, point 8): ``wheelmill logs ingest`` over a million-line nginx
log into SQLite, then the same log again (which must count nothing).

    python bench/ingest_logs.py [--lines 1000000] [--gzip] [--database-url URL]

The log mixes what a farm's nginx sees: wheel downloads by pip and uv (several versions, Pythons and
distros, their JSON agents escaped as nginx escapes them) and curl, index pages, PEP 658 metadata,
uv's HEAD requests, 304s and 404s, over 2,000 wheels and 30 days, with a sliver of malformed lines.
Progress goes to stderr; stdout gets the figures and a last line of JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wheelmill.db import downloads as downloads_sql
from wheelmill.db.engine import Database
from wheelmill.db.migrate import upgrade
from wheelmill.downloads.ingest import ingest_logs

TARGETS = {"lines_per_s": 20_000}
START = datetime(2024, 10, 1)
LAST_DAY = date(2024, 10, 30)
console = Console(stderr=True)


def pip_agent(pip: str, python: str, distro: str, version: str) -> str:
    return (
        f'pip/{pip} {{"ci":null,"cpu":"armv7l","distro":{{"name":"{distro}","version":"{version}"}},'
        f'"implementation":{{"name":"CPython","version":"{python}"}},"installer":{{"name":"pip","version":"{pip}"}},'
        f'"python":"{python}","system":{{"name":"Linux","release":"6.6.31+rpt-rpi-v7"}}}}'
    )


def uv_agent(uv: str, python: str, distro: str, version: str) -> str:
    return (
        f'uv/{uv} {{"installer":{{"name":"uv","version":"{uv}"}},"python":"{python}","implementation":'
        f'{{"name":"CPython","version":"{python}"}},"distro":{{"name":"{distro}","version":"{version}"}},'
        f'"system":{{"name":"Linux","release":"6.6.31"}},"cpu":"aarch64","openssl_version":null,"ci":null}}'
    )


def agents(rng: random.Random) -> list[str]:
    distros = [("Raspbian GNU/Linux", "11"), ("Raspbian GNU/Linux", "12"), ("Debian GNU/Linux", "12")]
    pythons = ["3.9.2", "3.11.2", "3.12.6"]
    made = [pip_agent(v, p, *d) for v in ("23.0.1", "24.0", "24.2") for p in pythons for d in distros]
    made += [uv_agent(v, p, *d) for v in ("0.4.18", "0.4.30") for p in pythons for d in distros]
    made.append("curl/8.5.0")
    rng.shuffle(made)
    return [agent.replace('"', "\\x22") for agent in made]  # as nginx writes them


def write_log(path: Path, lines: int, compress: bool) -> None:
    rng = random.Random(7)
    escaped = agents(rng)
    wheels = [(f"pkg{n}", f"pkg{n}-1.{n % 7}-cp311-cp311-linux_armv7l.whl") for n in range(2000)]
    step = 30 * 86_400 / lines  # the log runs through October 2024 in time order, as a server writes it
    opener = gzip.open if compress else open
    with opener(path, "wt") as out:
        batch = []
        for n in range(lines):
            name, wheel = rng.choice(wheels)
            stamp = (START + timedelta(seconds=n * step)).strftime("%d/%b/%Y:%H:%M:%S +0000")
            kind = rng.random()
            method, path, status = "GET", f"/files/{name}/{wheel}", 200
            if kind < 0.20:
                path = f"/simple/{name}/"
            elif kind < 0.25:
                path += ".metadata"
            elif kind < 0.28:
                method = "HEAD"
            elif kind < 0.33:
                status = 304
            elif kind < 0.35:
                status = 404
            if kind > 0.999:
                batch.append(f'192.0.2.{n % 250} - - [{stamp}] "GET {path} HTTP/1.1" 200\n')  # cut off
            else:
                batch.append(
                    f'192.0.2.{n % 250} - - [{stamp}] "{method} {path} HTTP/1.1" {status} 15321 "-" '
                    f'"{rng.choice(escaped)}"\n'
                )
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))


def run(lines: int, compress: bool, database_url: str, scratch: Path) -> dict[str, float | int]:
    log = scratch / ("access.log.gz" if compress else "access.log")
    started = time.perf_counter()
    write_log(log, lines, compress)
    mib = log.stat().st_size / 2**20
    console.print(f"wrote {lines:,} lines ({mib:.0f} MiB) in {time.perf_counter() - started:.1f} s")
    db = Database(database_url)
    upgrade(db)
    started = time.perf_counter()
    summary = ingest_logs(db, [log])
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = ingest_logs(db, [log])
    again_seconds = time.perf_counter() - started
    with db.read() as session:
        stored = sum(count for _, count in downloads_sql.downloads_per_day(session, 30, today=LAST_DAY))
    db.dispose()
    return {
        "lines": summary.lines,
        "wheel_downloads": summary.downloads,
        "malformed": summary.malformed,
        "downloads_stored": stored,
        "seconds": round(seconds, 2),
        "lines_per_s": round(summary.lines / seconds),
        "again_lines": again.lines,
        "again_seconds": round(again_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--gzip", action="store_true", help="write and read the log gzip-compressed")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wheelmill-logs-") as scratch:
        url = args.database_url or f"sqlite:///{scratch}/bench.db"
        figures = run(args.lines, args.gzip, url, Path(scratch))
    for key, value in figures.items():
        console.print(f"{key:>18}: {value:,}")
    met = {
        "lines_per_s": figures["lines_per_s"] >= TARGETS["lines_per_s"],
        "counted_once": figures["again_lines"] == 0
        and figures["downloads_stored"] == figures["wheel_downloads"],
    }
    print(json.dumps({"figures": figures, "targets": TARGETS, "met": met}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
