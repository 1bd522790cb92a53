"""`wheelmill client-config`: the pip and uv settings for machines that install from the farm."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import client_env
from wheelmill import clientconfig
from wheelmill.config import Settings
from wheelmill.errors import ConfigError

FARM = Settings(base_url="http://farm.example.org:8000")
PIWHEELS = "[global]\nextra-index-url=https://www.piwheels.org/simple\nbreak-system-packages = true\n"


def wheelmill(
    *args: str, base_url: str = "http://farm.example.org:8000/"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelmill", *args],
        capture_output=True,
        text=True,
        env={**client_env(), "WHEELMILL_BASE_URL": base_url},
        check=True,
    )


def pip_config(path: Path) -> dict[str, str]:
    """What real pip reads from `path`: `pip config list` with PIP_CONFIG_FILE."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        env={**client_env(), "PIP_CONFIG_FILE": str(path)},
        check=True,
    ).stdout
    pairs = (line.split("=", 1) for line in listed.splitlines() if line.startswith("global."))
    return {key: value.strip("'") for key, value in pairs}


def test_prints_the_pip_settings() -> None:
    printed = wheelmill("client-config").stdout
    assert printed.splitlines() == [
        "[global]",
        "extra-index-url = http://farm.example.org:8000/simple/",
        "trusted-host = farm.example.org",
        "",
    ]


def test_pip_reads_the_written_file_and_other_settings_stay(tmp_path: Path) -> None:
    path = tmp_path / "pip.conf"
    path.write_text(PIWHEELS)  # as Raspberry Pi OS ships it
    done = wheelmill("client-config", "--write", "--path", str(path))
    assert f"wrote {path}" in done.stderr
    read = pip_config(path)
    assert read["global.extra-index-url"].split("\\n") == [
        "https://www.piwheels.org/simple",
        "http://farm.example.org:8000/simple/",
    ]
    assert read["global.trusted-host"] == "farm.example.org"
    assert read["global.break-system-packages"] == "true"
    again = wheelmill("client-config", "--write", "--path", str(path))
    assert "already up to date" in again.stderr


def test_https_needs_no_trusted_host() -> None:
    text = clientconfig.pip_config(Settings(base_url="https://wheels.example.org/farm/"))
    assert "extra-index-url = https://wheels.example.org/farm/simple/" in text
    assert "trusted-host" not in text


def test_uv_settings_merged_and_farm_only() -> None:
    merged = tomllib.loads(clientconfig.uv_config(FARM))
    assert merged == {"index": [{"name": "wheelmill", "url": "http://farm.example.org:8000/simple/"}]}
    farm_only = tomllib.loads(clientconfig.uv_config(Settings(base_url=FARM.base_url, merged_index=False)))
    # A farm-only index lists no upstream files: uv must compare indexes, as pip does.
    assert farm_only["index-strategy"] == farm_only["pip"]["index-strategy"] == "unsafe-best-match"


def test_uv_file_with_other_settings_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "uv.toml"
    path.write_text("native-tls = true\n")
    with pytest.raises(ConfigError, match=r"uv\.toml: .*add these lines") as raised:
        clientconfig.install(FARM, uv=True, path=path)
    assert 'url = "http://farm.example.org:8000/simple/"' in str(raised.value)
    assert path.read_text() == "native-tls = true\n"
    path.write_text(clientconfig.uv_config(FARM))
    assert clientconfig.install(FARM, uv=True, path=path) is False  # already there


def test_writes_a_new_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "uv" / "uv.toml"
    assert clientconfig.install(FARM, uv=True, path=path) is True
    assert tomllib.loads(path.read_text())["index"][0]["name"] == "wheelmill"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # every user's uv reads it
