"""Let a remedy reach a setup.py-only sdist.

uv adds ``extra-build-dependencies`` only to the build environment of a project that declares a
``[build-system]`` table; an sdist with a bare setup.py (most of the old ones that import numpy or
Cython without saying so) gets uv's default legacy environment and nothing more. For those, the
sdist is unpacked and given the table uv would assume, with the extra requirements added, and the
wheel is built from that tree. An sdist that has the table is built as it is.

Unpacking is file I/O only (no code of the package runs) and refuses members that would land
outside the destination, links included, via tarfile's ``data`` filter and a check on zip names.
"""

from __future__ import annotations

import json
import tarfile
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

from wheelmill.errors import WheelmillError

# What pip and uv assume for a project without a [build-system] table (PEP 517's fallback).
_LEGACY_REQUIRES = ("setuptools>=40.8.0",)
_LEGACY_BACKEND = "setuptools.build_meta:__legacy__"


class BadSdist(WheelmillError):
    """The sdist cannot be opened or unpacked safely."""


def source_for_build(sdist: Path, extra_requirements: list[str], scratch: Path) -> Path:
    """What to hand ``uv build``: the sdist itself, or an unpacked tree that declares the extras."""
    if not extra_requirements or _declares_build_system(sdist):
        return sdist
    tree = _unpack(sdist, scratch)
    pyproject = tree / "pyproject.toml"
    existing = pyproject.read_text(encoding="utf-8") if pyproject.exists() else ""
    requires = [*_LEGACY_REQUIRES, *extra_requirements]
    # JSON strings and arrays are valid TOML: a requirement string cannot break out of the table.
    table = f'\n[build-system]\nrequires = {json.dumps(requires)}\nbuild-backend = "{_LEGACY_BACKEND}"\n'
    pyproject.write_text(existing + table, encoding="utf-8")
    return tree


def _declares_build_system(sdist: Path) -> bool:
    text = _read_member(sdist, "pyproject.toml")
    if text is None:
        return False
    try:
        return "build-system" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False  # uv would refuse it too; the legacy table below replaces nothing


def _read_member(sdist: Path, name: str) -> str | None:
    """The text of ``<top>/name`` in the archive, or None."""
    try:
        if zipfile.is_zipfile(sdist):
            with zipfile.ZipFile(sdist) as archive:
                for info in archive.infolist():
                    if _is_top_level_file(info.filename, name):
                        return archive.read(info).decode("utf-8", "replace")
            return None
        with tarfile.open(sdist) as archive:
            for member in archive:
                if member.isfile() and _is_top_level_file(member.name, name):
                    handle = archive.extractfile(member)
                    return None if handle is None else handle.read().decode("utf-8", "replace")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadSdist(f"{sdist.name}: cannot read the archive: {exc}") from exc
    return None


def _is_top_level_file(member: str, name: str) -> bool:
    parts = PurePosixPath(member).parts
    return len(parts) == 2 and parts[1] == name


def _unpack(sdist: Path, scratch: Path) -> Path:
    """Unpack into ``scratch``; the sdist's single top directory is the project tree."""
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(sdist):
            with zipfile.ZipFile(sdist) as archive:
                for info in archive.infolist():
                    target = (scratch / info.filename).resolve()
                    if not target.is_relative_to(scratch.resolve()):
                        raise BadSdist(f"{sdist.name}: member {info.filename!r} points outside the sdist")
                archive.extractall(scratch)
        else:
            with tarfile.open(sdist) as archive:
                archive.extractall(scratch, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadSdist(f"{sdist.name}: cannot unpack: {exc}") from exc
    tops = [entry for entry in scratch.iterdir() if entry.is_dir()]
    if len(tops) != 1:
        raise BadSdist(f"{sdist.name}: expected one top directory, found {len(tops)}")
    return tops[0]
