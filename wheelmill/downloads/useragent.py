"""What a download's User-Agent says about the client: installer, Python, operating system.

pip and uv send ``NAME/VERSION {JSON}``, the JSON being the "linehaul" data PyPI's own statistics
read: ``installer`` (name, version), ``python`` ("3.11.2"), ``system`` (name "Linux", release),
``distro`` (name "Debian GNU/Linux", version "12", id, libc), ``implementation``, ``cpu`` and more.
pip sorts its keys and uv does not, so only the parsed JSON is trusted, never its layout. Other
agents (curl, a browser) are known by their first product token alone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, NamedTuple

# Column widths in the rollup table: longer values are cut, never refused.
INSTALLER_MAX = 50
VERSION_MAX = 50
PYTHON_MAX = 10
SYSTEM_MAX = 50
DISTRO_MAX = 100


class Client(NamedTuple):
    """The dimensions downloads are counted by; "" where the agent does not say."""

    installer: str  # pip, uv, or another agent's product name in lower case (curl)
    installer_version: str
    python: str  # major.minor: 3.11
    system: str  # Linux, Darwin, Windows
    distro: str  # Raspbian GNU/Linux 12, macOS 14.5


# Logs repeat a few thousand distinct agents millions of times: parse each once.
@lru_cache(maxsize=16384)
def parse_user_agent(agent: str) -> Client:
    product, _, rest = agent.partition(" ")
    name, _, version = product.partition("/")
    data = _linehaul(rest)
    if data is None:
        if name == "-":
            return Client("", "", "", "", "")
        return Client(name.lower()[:INSTALLER_MAX], version[:VERSION_MAX], "", "", "")
    installer = _mapping(data.get("installer"))
    system = _mapping(data.get("system"))
    distro = _mapping(data.get("distro"))
    python = ".".join(_text(data.get("python")).split(".")[:2])
    distro_text = f"{_text(distro.get('name'))} {_text(distro.get('version'))}".strip()
    return Client(
        installer=(_text(installer.get("name")) or name).lower()[:INSTALLER_MAX],
        installer_version=(_text(installer.get("version")) or version)[:VERSION_MAX],
        python=python[:PYTHON_MAX],
        system=_text(system.get("name"))[:SYSTEM_MAX],
        distro=distro_text[:DISTRO_MAX],
    )


def _linehaul(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # a hostile agent can nest arrays past the recursion limit
        return None
    return data if isinstance(data, dict) else None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
