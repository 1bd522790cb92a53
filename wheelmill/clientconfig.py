"""Settings for the machines that install from this farm: pip's ``pip.conf`` and uv's ``uv.toml``.

Raspberry Pi OS ships ``/etc/pip.conf`` with ``extra-index-url=https://www.piwheels.org/simple``,
so every pip on the machine looks at piwheels beside PyPI and takes the best file. These are the
same settings for this farm, system-wide by default: pip reads ``/etc/pip.conf`` and uv reads
``/etc/uv/uv.toml``.

uv takes a package from the first index that has it. In merged mode (the default) the farm's
pages list upstream's files too, so the farm can come first and nothing is lost; a farm-only
index lists its own wheels alone, so uv is told to compare every index, as pip does.
"""

from __future__ import annotations

import configparser
import io
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from wheelmill.config import Settings
from wheelmill.errors import ConfigError
from wheelmill.publish.writer import write_text_atomic

PIP_CONF = Path("/etc/pip.conf")
UV_TOML = Path("/etc/uv/uv.toml")
INDEX_NAME = "wheelmill"


def index_url(settings: Settings) -> str:
    """The farm's simple index, as clients reach it."""
    return f"{settings.resolved_base_url}simple/"


def pip_config(settings: Settings, existing: str = "") -> str:
    """``pip.conf`` with this farm as an extra index, keeping what `existing` already sets.

    pip ignores plain-http indexes on other hosts unless they are trusted, hence ``trusted-host``.
    configparser is what pip reads the file with; comments in `existing` are not kept.
    """
    parser = configparser.RawConfigParser()
    parser.read_string(existing)
    if not parser.has_section("global"):
        parser.add_section("global")
    _add_words(parser, "extra-index-url", index_url(settings))
    url = urlsplit(index_url(settings))
    if url.scheme == "http" and url.hostname:
        _add_words(parser, "trusted-host", url.hostname)
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


def _add_words(parser: configparser.RawConfigParser, key: str, word: str) -> None:
    """Add `word` to the whitespace-separated list under [global] `key` (pip's multi-value form)."""
    words = parser.get("global", key, fallback="").split()
    if word not in words:
        parser.set("global", key, "\n".join([*words, word]))


def uv_config(settings: Settings, existing: str = "") -> str:
    """``uv.toml`` with this farm as an index searched before PyPI.

    There is no TOML writer in the standard library, so an `existing` file is kept only when it
    already lists the farm; one with other settings is left for the user to edit.
    """
    url = index_url(settings)
    if existing.strip():
        try:
            document = tomllib.loads(existing)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the existing uv configuration is not valid TOML: {exc}") from exc
        if any(index.get("url") == url for index in document.get("index", [])):
            return existing
    ours = f'# {INDEX_NAME}: wheels built for this machine\n[[index]]\nname = "{INDEX_NAME}"\nurl = "{url}"\n'
    if not settings.merged_index:
        ours = (
            f'index-strategy = "unsafe-best-match"\n\n[pip]\nindex-strategy = "unsafe-best-match"\n\n{ours}'
        )
    if existing.strip():
        raise ConfigError(f"the existing uv configuration has other settings; add these lines to it:\n{ours}")
    return ours


def render(settings: Settings, *, uv: bool, existing: str = "") -> str:
    """The uv or pip configuration for this farm, merged into `existing`."""
    return uv_config(settings, existing) if uv else pip_config(settings, existing)


def install(settings: Settings, *, uv: bool, path: Path) -> bool:
    """Write the configuration to `path`, keeping its other settings; returns whether it changed."""
    existing = path.read_text() if path.exists() else ""
    try:
        text = render(settings, uv=uv, existing=existing)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return write_text_atomic(path, text)
