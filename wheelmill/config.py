"""Settings: a TOML file, ``WHEELMILL_*`` environment overrides, and embedded defaults.

One typed :class:`Settings` object is built at start-up, checked loudly (every problem at
once, each naming its key and what it expected), and passed down explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelmill.errors import ConfigError, InvalidTarget
from wheelmill.targets import Target

ENV_PREFIX = "WHEELMILL_"
PYPI_SIMPLE = "https://pypi.org/simple/"


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Every option of a farm; each has a ``WHEELMILL_<NAME>`` environment variable."""

    data_dir: Path = _opt(Path("wheelmill-data"), "directory for the database, files and logs")
    database_url: str = _opt("", "SQLAlchemy URL; empty means SQLite in data_dir")
    output_dir: Path | None = _opt(None, "the published site; empty means data_dir/www")
    listen: str = _opt("127.0.0.1:8000", "HOST:PORT the master listens on")
    workers: int = _opt(
        1, "HTTP worker processes of `serve`; above 1 they share LISTEN and the loops run in the parent"
    )
    base_url: str = _opt("", "public URL of the site; empty means http://LISTEN/")
    admin_token: str = _opt("", "token for admin API calls; empty disables the admin API")
    upstream: str = _opt(PYPI_SIMPLE, "upstream simple index URL")
    contact: str = _opt("", "operator contact sent in the User-Agent to upstream")
    follow: str = _opt("watch", "'watch' (a watch list) or 'all' (the whole index via XML-RPC)")
    watch: list[str] = _opt([], "packages to follow in watch mode")
    poll_seconds: float = _opt(300.0, "seconds between upstream polls")
    targets: list[str] = _opt(
        ["host"], "targets to build, e.g. cp311-cp311-linux_armv7l; 'host' = this machine"
    )
    platform_aliases: dict[str, list[str]] = _opt(
        {"linux_armv7l": ["linux_armv6l"]}, "platform -> extra platform tags its wheels are published as"
    )
    target_cflags: dict[str, list[str]] = _opt(
        {},
        "target -> C compiler flags of its builds (CFLAGS), e.g. ARMv6 code in linux_armv7l wheels that are "
        "also published as linux_armv6l: -O2 -march=armv6 -mfpu=vfp -mfloat-abi=hard -marm",
    )
    merged_index: bool = _opt(True, "list upstream's files beside the farm's on project pages")
    skip_yanked: bool = _opt(False, "do not build versions that are yanked when discovered")
    lease_seconds: float = _opt(120.0, "how long a claim lasts without a heartbeat")
    max_attempts: int = _opt(3, "builds of one job before a lost builder's job is given up")
    max_upload_bytes: int = _opt(512 * 2**20, "largest wheel accepted")
    build_timeout: float = _opt(3600.0, "seconds a build may run")
    sandbox: str = _opt("auto", "'auto' (bubblewrap if installed), 'required', or 'none'")
    build_requirements: dict[str, list[str]] = _opt(
        {}, "package -> extra build requirements always provided (e.g. numpy for a setup.py importing it)"
    )
    smoke_test: bool = _opt(True, "import each built wheel before publishing it; broken wheels are kept out")
    smoke_test_skip: list[str] = _opt([], "packages whose wheels are published without the smoke test")
    smoke_test_modules: dict[str, list[str]] = _opt({}, "package -> the modules its smoke test imports")
    base_image_packages: list[str] = _opt(
        [], "Debian packages every target machine has (its base image): left out of a wheel's apt line"
    )
    min_free_bytes: int = _opt(
        2**30, "below this much free disk the master refuses uploads and pauses builders; 0 turns it off"
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'wheelmill.db').resolve()}"

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir or self.data_dir / "www"

    @property
    def resolved_base_url(self) -> str:
        url = self.base_url or f"http://{self.listen}/"
        return url if url.endswith("/") else url + "/"

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def resolved_targets(self) -> list[Target]:
        return [Target.host() if text == "host" else Target.parse(text) for text in self.targets]

    @property
    def resolved_cflags(self) -> dict[str, str]:
        """Target tag -> the CFLAGS its builds get, "host" resolved."""
        return {
            str(Target.host() if text == "host" else Target.parse(text)): " ".join(flags)
            for text, flags in self.target_cflags.items()
        }


def option_help() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for each option, for ``--help`` texts."""
    return [
        (ENV_PREFIX + f.name.upper(), repr(_default(f)), f.metadata["help"])
        for f in dataclasses.fields(Settings)
    ]


def load_settings(
    path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build settings from defaults, then the TOML file, then the environment, then ``overrides``."""
    environ = dict(os.environ if environ is None else environ)
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    raw: dict[str, Any] = {}
    if path is not None:
        raw.update(_read_toml(path))
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    problems = [f"unknown key {key!r} in {path}" for key in raw if key not in fields]
    for name in fields:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            raw[name] = value
    raw.update({key: value for key, value in overrides.items() if value is not None})
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        try:
            values[name] = _coerce(raw[name], _default(f))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if not problems:
        problems.extend(_check(values))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return Settings(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _coerce(value: Any, default: Any) -> Any:
    """Convert a TOML or environment value to the type of the option's default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(default, int | float):
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a {type(default).__name__}, got {value!r}") from None
        if number < 0:
            raise ValueError(f"expected a number >= 0, got {value!r}")
        return number
    if isinstance(default, list):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValueError(f"expected a list of strings, got {value!r}")
    if isinstance(default, dict):
        if isinstance(value, str):  # PLATFORM=ALIAS+ALIAS,PLATFORM=...
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError(f"expected PLATFORM=ALIAS[+ALIAS],..., got {value!r}")
            return {key.strip(): [a.strip() for a in aliases.split("+")] for key, aliases in pairs}
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            return value
        raise ValueError(f"expected a table of platform = [aliases], got {value!r}")
    if default is None or isinstance(default, Path):
        if not isinstance(value, str | Path):
            raise ValueError(f"expected a path, got {value!r}")
        return Path(value) if str(value) else None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _check(values: dict[str, Any]) -> list[str]:
    """Rules that span more than a value's type."""
    problems = []
    if values.get("follow", "watch") not in {"watch", "all"}:
        problems.append(f"follow: expected 'watch' or 'all', got {values['follow']!r}")
    if values.get("sandbox", "auto") not in {"auto", "required", "none"}:
        problems.append(f"sandbox: expected 'auto', 'required' or 'none', got {values['sandbox']!r}")
    if values.get("workers", 1) < 1:
        problems.append(f"workers: expected at least 1, got {values['workers']!r}")
    listen = values.get("listen", "127.0.0.1:8000")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"listen: expected HOST:PORT, got {listen!r}")
    for text in values.get("targets", []):
        if text != "host":
            try:
                Target.parse(text)
            except InvalidTarget as exc:
                problems.append(f"targets: {exc}")
    for text in values.get("target_cflags", {}):
        if text != "host":
            try:
                Target.parse(text)
            except InvalidTarget as exc:
                problems.append(f"target_cflags: {exc}")
    for key in ("upstream", "base_url"):
        url = values.get(key, "")
        if url and not url.startswith(("http://", "https://")):
            problems.append(f"{key}: expected an http:// or https:// URL, got {url!r}")
    if values.get("lease_seconds", 120.0) < 5:
        problems.append(f"lease_seconds: expected at least 5, got {values['lease_seconds']!r}")
    return problems
