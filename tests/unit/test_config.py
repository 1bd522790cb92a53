"""Settings: defaults need no file, TOML and WHEELMILL_* override, bad values name their key."""

from pathlib import Path

import pytest

from wheelmill.config import load_settings
from wheelmill.errors import ConfigError
from wheelmill.targets import Target


def test_defaults_need_no_file() -> None:
    settings = load_settings(environ={})
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("wheelmill-data/wheelmill.db")
    assert settings.resolved_base_url == "http://127.0.0.1:8000/"
    assert settings.resolved_targets == [Target.host()]
    assert settings.upstream == "https://pypi.org/simple/"


def test_file_then_environment_then_arguments(tmp_path: Path) -> None:
    config = tmp_path / "farm.toml"
    config.write_text(
        'listen = "0.0.0.0:9000"\nwatch = ["numpy"]\nlease_seconds = 60\nmerged_index = false\n'
    )
    settings = load_settings(config, environ={"WHEELMILL_LEASE_SECONDS": "90", "WHEELMILL_WATCH": "a,b"})
    assert settings.listen_port == 9000
    assert settings.lease_seconds == 90.0
    assert settings.watch == ["a", "b"]
    assert settings.merged_index is False
    assert load_settings(config, environ={}, listen="127.0.0.1:1234").listen == "127.0.0.1:1234"


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "farm.toml"
    config.write_text('contact = "ops@example.org"\n')
    assert load_settings(environ={"WHEELMILL_CONFIG": str(config)}).contact == "ops@example.org"


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "farm.toml"
    config.write_text('lease_seconds = "soon"\nmerged_index = "maybe"\ncolour = "blue"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={"WHEELMILL_MAX_ATTEMPTS": "-1"})
    message = str(error.value)
    assert "lease_seconds: expected a float, got 'soon'" in message
    assert "merged_index: expected true or false, got 'maybe'" in message
    assert "unknown key 'colour'" in message
    assert "max_attempts: expected a number >= 0, got '-1'" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("WHEELMILL_SANDBOX", "sometimes", "sandbox: expected 'auto', 'required' or 'none'"),
        ("WHEELMILL_LISTEN", "8000", "listen: expected HOST:PORT"),
        ("WHEELMILL_TARGETS", "cp311-linux", "targets: target 'cp311-linux' is not PYTHON-ABI-PLATFORM"),
        ("WHEELMILL_UPSTREAM", "ftp://x/", "upstream: expected an http:// or https:// URL"),
        ("WHEELMILL_FOLLOW", "some", "follow: expected 'watch' or 'all'"),
    ],
)
def test_rules_across_values(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(environ={key: value})


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(broken, environ={})


def test_compiler_flags_per_target(tmp_path: Path) -> None:
    config = tmp_path / "farm.toml"
    config.write_text(
        'targets = ["host", "cp311-cp311-linux_armv7l"]\n'
        'target_cflags = {"cp311-cp311-linux_armv7l" = ["-march=armv6", "-marm"], host = ["-O3"]}\n'
    )
    settings = load_settings(config, environ={})
    assert settings.resolved_cflags == {
        "cp311-cp311-linux_armv7l": "-march=armv6 -marm",
        str(Target.host()): "-O3",
    }
    from_environment = load_settings(
        environ={"WHEELMILL_TARGET_CFLAGS": "cp311-cp311-linux_armv7l=-O2+-marm"}
    )
    assert from_environment.resolved_cflags == {"cp311-cp311-linux_armv7l": "-O2 -marm"}
    with pytest.raises(ConfigError, match="target_cflags: target 'armv6' is not PYTHON-ABI-PLATFORM"):
        load_settings(environ={"WHEELMILL_TARGET_CFLAGS": "armv6=-marm"})
