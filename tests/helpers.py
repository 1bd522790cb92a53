"""Small helpers the integration tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from wheelmill.testing import StandInUpstream
from wheelmill.upstream.model import UpstreamFile


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_env() -> dict[str, str]:
    """No pip or uv settings of this machine (extra indexes, find-links): only our index may answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELMILL_"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1"}


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def hears_ctrl_c() -> None:
    """For ``preexec_fn``: a shell's background job starts with Ctrl-C ignored, and Python then
    ignores it for good; a farm stopped with Ctrl-C must hear it, as from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stand_in_job(
    upstream: StandInUpstream,
    package: str,
    sdist: UpstreamFile,
    extra_requirements: list[str],
    time_limit: int,
) -> dict[str, object]:
    """What a claim hands a builder for ``sdist`` of the stand-in upstream, which is also its index."""
    return {
        "package": package,
        "source_url": upstream.url + sdist.path,
        "source_filename": sdist.filename,
        "source_sha256": sdist.sha256,
        "source_size": sdist.size,
        "index_url": upstream.simple_url,
        "extra_index_url": upstream.simple_url,
        "time_limit_seconds": time_limit,
        "extra_requirements": extra_requirements,
    }


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:  # gone meanwhile
            pass
    return found


def command_name(pid: int) -> str:
    """A process's command name (bwrap, python3...), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
