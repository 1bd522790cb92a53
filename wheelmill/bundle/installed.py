"""What the target already has: ``pip freeze`` output or ``pip inspect`` JSON captured on it.

A package counts as present when its installed version satisfies every requirement on it. The
resolver decides that, not this module: the installed versions go to it as preferences, and a
resolver keeps a preferred version exactly when no requirement in the tree excludes it. So a
package is present when the resolution pins the very version that is installed; any other pin
means some requirement wants another version, and that package goes into the bundle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelmill.bundle.errors import InvalidInstalled

Installed = dict[NormalizedName, Version]


def parse_installed(text: str) -> Installed:
    """Installed versions by canonical name, from either format (JSON starts with ``{``)."""
    if text.lstrip().startswith("{"):
        return parse_inspect(text)
    return parse_freeze(text)


def parse_freeze(text: str) -> Installed:
    """``pip freeze`` lines: ``NAME==VERSION``; comments and blank lines are skipped.

    Editable installs (``-e ...``), direct references (``NAME @ URL``) and ``NAME===LEGACY``
    carry no version an index offers, so they cannot count as present: the bundle carries those
    packages if the tree needs them.
    """
    installed: Installed = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(("-e ", "--editable")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise InvalidInstalled(
                f"installed packages, line {number}: {raw!r} is not NAME==VERSION"
            ) from exc
        pins = list(requirement.specifier)
        if requirement.url or (len(pins) == 1 and pins[0].operator == "==="):
            continue
        if len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            raise InvalidInstalled(
                f"installed packages, line {number}: {raw!r} is not NAME==VERSION, as pip freeze writes"
            )
        installed[canonicalize_name(requirement.name)] = _version(pins[0].version, f"line {number}", raw)
    return installed


def parse_inspect(text: str) -> Installed:
    """``pip inspect`` JSON: the name and version of each entry of ``installed``."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInstalled(
            f"installed packages: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    entries = report.get("installed") if isinstance(report, dict) else None
    if not isinstance(entries, list):
        raise InvalidInstalled("installed packages: pip inspect JSON has no 'installed' list")
    installed: Installed = {}
    for index, entry in enumerate(entries):
        name, version = _name_and_version(entry)
        where = f"installed[{index}]"
        if name is None or version is None:
            raise InvalidInstalled(f"installed packages, {where}: no metadata name and version")
        try:
            installed[canonicalize_name(name, validate=True)] = _version(version, where, name)
        except InvalidName as exc:
            raise InvalidInstalled(f"installed packages, {where}: name {name!r} is not valid") from exc
    return installed


def is_present(name: NormalizedName, version: str, installed: Mapping[NormalizedName, Version]) -> bool:
    """Whether the resolution's pin ``name==version`` is what the target has installed."""
    have = installed.get(name)
    return have is not None and have == Version(version)


def _name_and_version(entry: Any) -> tuple[str | None, str | None]:
    metadata = entry.get("metadata") if isinstance(entry, dict) else None
    if not isinstance(metadata, dict):
        return None, None
    name, version = metadata.get("name"), metadata.get("version")
    return (name if isinstance(name, str) else None), (version if isinstance(version, str) else None)


def _version(text: str, where: str, shown: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise InvalidInstalled(
            f"installed packages, {where}: {shown!r} has version {text!r}, not a PEP 440 version"
        ) from exc
