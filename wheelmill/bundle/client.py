"""``wheelmill bundle``: ask a running master for a bundle through its API, wait, and unpack it.

The command holds no farm logic: the master resolves, queues and assembles (``service.py``), so
the command line, the API and the web page make the same bundles.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from wheelmill.errors import WheelmillError
from wheelmill.publish.pages import file_size

POLL_SECONDS = 2.0
# Generous: the answer that finds the last build done also downloads every wheel into the bundle.
TIMEOUT_S = 900.0
DONE = ("built", "failed")


def run_bundle(
    *,
    master_url: str,
    token: str,
    requirements: Path,
    target: str,
    installed: Path | None,
    output: Path,
    wait: bool,
    console: Console,
) -> int:
    """Make the bundle into ``output``; 0 when it is complete, 1 when wheels are missing."""
    if output.exists() and any(output.iterdir()):
        raise WheelmillError(f"output directory {str(output)!r} is not empty")
    request = {
        "requirements": _read(requirements, "requirements"),
        "target": target,
        "installed": _read(installed, "installed packages") if installed else "",
    }
    base = master_url if master_url.endswith("/") else master_url + "/"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S) as http:
        status = _call(http, "POST", "api/v1/bundles", json=request)
        if status["state"] == "building" and wait:
            status = _wait(http, status, console)
        if status["state"] != "ready":
            _report_missing(status, console)
            return 1
        _download(http, status["id"], output)
    _report_ready(status, output, console)
    return 0


def _wait(http: httpx.Client, status: dict[str, Any], console: Console) -> dict[str, Any]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"building wheels for {status['target']}", total=None)
        while True:
            items = status["items"]
            building = [f"{i['name']} {i['version']}" for i in items if i["status"] == "building"]
            progress.update(
                task,
                total=len(items),
                completed=sum(item["status"] in DONE for item in items),
                description=f"building {', '.join(building)}" if building else "waiting for a builder",
            )
            if status["state"] != "building":
                return status
            time.sleep(POLL_SECONDS)
            status = _call(http, "GET", f"api/v1/bundles/{status['id']}")


def _report_missing(status: dict[str, Any], console: Console) -> None:
    missing = [item for item in status["items"] if item["status"] != "built"]
    if status["state"] == "building":
        console.print(
            f"[yellow]{len(missing)} wheels for {status['target']} are not built yet.[/yellow] They are "
            "queued on the farm at high priority: run this again later, or with --wait.",
            highlight=False,
        )
    else:
        console.print("[red]The bundle cannot be made; these wheels are missing:[/red]", highlight=False)
        if status["error"]:
            console.print(status["error"], highlight=False, markup=False)
    table = Table("package", "version", "status", "why", "log")
    for item in missing:
        table.add_row(
            item["name"], item["version"], item["status"], item["reason"] or "", item["log_url"] or ""
        )
    if missing:
        console.print(table)
    console.print(f"status: {status['status_url']}", highlight=False)


def _report_ready(status: dict[str, Any], output: Path, console: Console) -> None:
    wheels, left_out = status["wheels"], status["left_out"]
    console.print(
        f"[green]Bundle for {status['target']} written to {output}:[/green] {len(wheels)} wheel(s), "
        f"{file_size(status['total_size'])}. Install it on the target with {output / 'install.sh'}.",
        highlight=False,
    )
    if left_out:
        names = ", ".join(f"{p['name']} {p['version']}" for p in left_out)
        console.print(f"Left out, already installed on the target: {names}", highlight=False)


def _download(http: httpx.Client, bundle_id: str, output: Path) -> None:
    """Fetch the .tar.gz and unpack its files (flat, under one top directory) into ``output``."""
    with tempfile.TemporaryFile() as archive:
        with http.stream("GET", f"api/v1/bundles/{bundle_id}/bundle.tar.gz") as response:
            if response.status_code != 200:
                response.read()
                _raise(response)
            for chunk in response.iter_bytes(1 << 20):
                archive.write(chunk)
        archive.seek(0)
        output.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                # The master's archive is flat: a member any other shape is refused, never written.
                if not member.isfile() or "/" in name or name.startswith("."):
                    raise WheelmillError(f"the bundle archive has an unexpected member {member.name!r}")
                source = tar.extractfile(member)
                assert source is not None, "a regular file member has content"
                (output / name).write_bytes(source.read())
                (output / name).chmod(0o755 if member.mode & 0o100 else 0o644)


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise WheelmillError(f"cannot reach the master at {http.base_url}: {exc}") from exc
    if response.is_error:
        _raise(response)
    return response.json()


def _raise(response: httpx.Response) -> None:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    raise WheelmillError(str(detail or f"the master answered {response.status_code}: {response.text[:500]}"))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WheelmillError(f"cannot read the {what} file {str(path)!r}: {exc}") from exc
