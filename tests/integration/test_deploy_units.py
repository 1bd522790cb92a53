"""deploy/'s systemd units run as written, with the master.toml that docs/operating.md shows.

There is no systemd here (nor in CI), so the test reads each unit the way systemd would: its
Environment= and EnvironmentFile= (a leading '-' makes the file optional), ``${VAR}`` expansion,
ExecStartPre before ExecStart. It moves the units' absolute paths under a temporary root, runs the
commands for real, checks that what they write lies within the unit's ReadWritePaths, and stops
them with the unit's KillSignal within its TimeoutStopSec, expecting what systemd counts as a clean
exit (the master's Restart=on-failure would otherwise restart it on every stop).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.farm import wait_until
from tests.helpers import client_env, free_port
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream

REPO = Path(__file__).resolve().parents[2]
INSTALLED = "/opt/wheelmill/bin/wheelmill"
# The units' absolute paths, longest first so /var/lib/wheelmill-builder is not read as /var/lib/wheelmill.
CLEAN_EXITS = (0, -signal.SIGTERM)
UNIT_PATHS = ("/var/lib/wheelmill-builder", "/var/lib/wheelmill", "/etc/wheelmill", "/srv/wheelmill")


@dataclass(frozen=True)
class Unit:
    """The [Service] settings of a unit file (a key given twice keeps both values, as systemd does)."""

    service: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        service: dict[str, list[str]] = {}
        section = ""
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service":
                key, _, value = line.partition("=")
                service.setdefault(key.strip(), []).append(value.strip())
        return cls(service)

    def one(self, key: str) -> str:
        (value,) = self.service[key]
        return value

    def environment(self, root: Path) -> dict[str, str]:
        env: dict[str, str] = {}
        for assignment in self.service.get("Environment", []):
            key, _, value = assignment.partition("=")
            env[key] = relocate(value, root)
        for name in self.service.get("EnvironmentFile", []):
            optional, path = name.startswith("-"), Path(relocate(name.lstrip("-"), root))
            if optional and not path.exists():
                continue
            for line in path.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    env[key.strip()] = value.strip()
        return env

    def command(self, key: str, root: Path, env: dict[str, str]) -> list[str]:
        """The command line with ${VAR} expanded and the installed wheelmill replaced by this one."""
        line = re.sub(r"\$\{(\w+)\}", lambda match: env[match[1]], self.one(key))
        argv = shlex.split(relocate(line, root))
        assert argv[0] == INSTALLED
        return [sys.executable, "-m", "wheelmill", *argv[1:]]

    def writable(self, root: Path) -> list[Path]:
        paths = [Path(relocate(path.lstrip("-"), root)) for path in self.one("ReadWritePaths").split()]
        return paths + [root / "var/lib" / name for name in self.service.get("StateDirectory", [])]

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        """Stop as systemd would: KillSignal, then wait at most TimeoutStopSec."""
        process.send_signal(getattr(signal, self.one("KillSignal")))
        return process.wait(timeout=float(self.one("TimeoutStopSec")))


def relocate(text: str, root: Path) -> str:
    for path in UNIT_PATHS:
        text = text.replace(path, f"{root}{path}")
    return text


def documented_master_toml() -> dict[str, object]:
    """The master.toml example of docs/operating.md, as an operator would copy it."""
    docs = (REPO / "docs/operating.md").read_text()
    block = re.search(r"`/etc/wheelmill/master\.toml`.*?```toml\n(.*?)```", docs, re.DOTALL)
    assert block, "docs/operating.md no longer shows master.toml"
    return tomllib.loads(re.sub(r"(?m)^ +", "", block[1]))


def within(path: Path, roots: list[Path]) -> bool:
    return any(path.resolve().is_relative_to(root.resolve()) for root in roots)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for path in UNIT_PATHS:
        (tmp_path / path.lstrip("/")).mkdir(parents=True)
    return tmp_path


def test_the_units_start_a_master_and_a_builder_that_joins_it(root: Path, upstream: StandInUpstream) -> None:
    master_unit = Unit.read(REPO / "deploy/wheelmill-master.service")
    builder_unit = Unit.read(REPO / "deploy/wheelmill-builder.service")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    documented = documented_master_toml()
    # Only what this machine cannot provide changes: no PostgreSQL with peer authentication, no
    # farm.example.org, no armv7l builder; the paths stay the documented ones, moved under root.
    config = {
        **documented,
        "database_url": "sqlite:////var/lib/wheelmill/wheelmill.db",
        "base_url": url,
        "listen": f"127.0.0.1:{port}",
        "targets": ["host"],
        "upstream": upstream.simple_url,
        "min_free_bytes": 0,
    }
    # JSON strings, numbers and arrays are valid TOML values.
    config_lines = [f"{key} = {relocate(json.dumps(value), root)}" for key, value in config.items()]
    (root / "etc/wheelmill/master.toml").write_text("\n".join(config_lines) + "\n")
    (root / "etc/wheelmill/master.env").write_text("WHEELMILL_ADMIN_TOKEN=unit-test-admin-token\n")
    master_env = {**client_env(), **master_unit.environment(root)}

    def wheelmill(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wheelmill", *args], env=master_env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    subprocess.run(master_unit.command("ExecStartPre", root, master_env), env=master_env, check=True)
    master = subprocess.Popen(master_unit.command("ExecStart", root, master_env), env=master_env)
    builder = None
    try:
        wait_until(lambda: _answers(url), "the master to answer", master, timeout=60)
        token = root / "etc/wheelmill/builder.token"
        token.write_text(wheelmill("token", "create", "--builder", "pi-7").strip())
        token.chmod(0o600)
        (root / "etc/wheelmill/builder.env").write_text(f"MASTER={url}\n")
        builder_env = {**client_env(), **builder_unit.environment(root)}
        builder = subprocess.Popen(builder_unit.command("ExecStart", root, builder_env), env=builder_env)

        # The token made the builder's row; its target is set once the builder itself registered.
        database = root / "var/lib/wheelmill/wheelmill.db"

        def registered_target() -> str | None:
            with sqlite3.connect(database) as db:
                return db.execute("SELECT target FROM builders WHERE name = 'pi-7'").fetchone()[0]

        wait_until(lambda: registered_target() == str(Target.host()), "the builder to register", builder)

        written = [path for path in root.rglob("*") if path.is_file() and "etc" not in path.parts]
        assert written, "the units wrote nothing"
        writable = master_unit.writable(root) + builder_unit.writable(root)
        assert [path for path in written if not within(path, writable)] == []
        assert within(Path(relocate(str(config["output_dir"]), root)), master_unit.writable(root))
        # systemd counts exit 0 and death by SIGTERM as clean (uvicorn re-raises the signal once it
        # has finished the requests in flight); anything else would be a failure to restart from.
        assert builder_unit.stop(builder) in CLEAN_EXITS
        assert master_unit.stop(master) in CLEAN_EXITS
    finally:
        for process in (builder, master):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "simple/", timeout=2).status_code < 500
    except httpx.TransportError:
        return False
