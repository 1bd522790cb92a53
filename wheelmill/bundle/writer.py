"""The bundle directory: the wheels, ``requirements.txt`` pinned with hashes, ``install.sh``, a README.

The directory is everything a machine with no network needs: ``install.sh`` runs pip with
``--no-index --find-links .``, and the hashes make pip refuse a wheel that changed on the way.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelmill.bundle.errors import BundleError
from wheelmill.bundle.resolve import WheelLink
from wheelmill.publish.pages import file_size

INSTALL_SH = """\
#!/bin/sh
# Installs this bundle with no network: every wheel is here, checked against requirements.txt.
# PYTHON chooses the interpreter (default: python3), e.g. PYTHON=/opt/venv/bin/python ./install.sh
set -eu
cd "$(dirname "$0")"
exec "${PYTHON:-python3}" -m pip install --no-index --find-links . -r requirements.txt "$@"
"""
TEXT_FILES = ("requirements.txt", "install.sh", "README.txt")


@dataclass(frozen=True)
class BundledWheel:
    name: str  # canonical
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Contents:
    """What a bundle holds and what it leaves out."""

    target: str
    requirements: tuple[str, ...]  # as asked for
    wheels: tuple[BundledWheel, ...]
    left_out: tuple[tuple[str, str], ...]  # (name, version) already installed on the target

    @property
    def total_size(self) -> int:
        return sum(wheel.size for wheel in self.wheels)


def fetch(link: WheelLink, directory: Path) -> Path:
    """Download one wheel into ``directory``; its sha256 and size must be what the index said."""
    path = directory / _safe_filename(link.filename)
    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", link.url, follow_redirects=True, timeout=120) as response:
            response.raise_for_status()
            with path.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise BundleError(f"downloading {link.filename} from {link.url} failed: {exc}") from exc
    if digest.hexdigest() != link.sha256:
        raise BundleError(f"{link.filename}: sha256 {digest.hexdigest()!r}, the index said {link.sha256!r}")
    if link.size and path.stat().st_size != link.size:
        raise BundleError(f"{link.filename}: {path.stat().st_size} bytes, the index said {link.size}")
    return path


def write_bundle(directory: Path, contents: Contents) -> None:
    """Write the text files beside the wheels, which must be in ``directory`` already."""
    for wheel in contents.wheels:
        if not (directory / wheel.filename).is_file():
            raise BundleError(f"{wheel.filename} is not in {directory}")
    (directory / "requirements.txt").write_text(requirements_txt(contents))
    install = directory / "install.sh"
    install.write_text(INSTALL_SH)
    install.chmod(0o755)
    (directory / "README.txt").write_text(readme(contents))


def requirements_txt(contents: Contents) -> str:
    lines = [f"# The wheels of this bundle for {contents.target}; ./install.sh installs them."]
    for wheel in sorted(contents.wheels, key=lambda w: w.name):
        lines += [f"{wheel.name}=={wheel.version} \\", f"    --hash=sha256:{wheel.sha256}"]
    return "\n".join(lines) + "\n"


def readme(contents: Contents) -> str:
    total = contents.total_size
    lines = [
        "wheelmill offline bundle",
        "",
        f"Target:      {contents.target}",
        f"Requested:   {', '.join(contents.requirements)}",
        f"Total size:  {file_size(total)} ({total} bytes) in {_wheels(len(contents.wheels))}",
        "",
        "Install on the target, with no network: ./install.sh",
        "It runs: python3 -m pip install --no-index --find-links . -r requirements.txt",
        "(PYTHON=/path/to/python ./install.sh picks the interpreter.)",
        "",
        "In this bundle:",
    ]
    width = max((len(f"{w.name} {w.version}") for w in contents.wheels), default=0)
    for wheel in sorted(contents.wheels, key=lambda w: w.name):
        label = f"{wheel.name} {wheel.version}"
        lines.append(f"  {label:{width}}  {wheel.filename}  {file_size(wheel.size)}")
    lines += ["", "Left out, already installed on the target:"]
    lines += [f"  {name} {version}" for name, version in sorted(contents.left_out)] or ["  (nothing)"]
    return "\n".join(lines) + "\n"


def make_archive(directory: Path, archive: Path) -> None:
    """``directory`` as a .tar.gz whose one top-level directory is named after the archive."""
    top = archive.name.removesuffix(".tar.gz")
    temp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(temp, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=f"{top}/{path.name}", recursive=False)
    os.replace(temp, archive)


def _wheels(count: int) -> str:
    return f"{count} wheel" if count == 1 else f"{count} wheels"


def _safe_filename(filename: str) -> str:
    """A wheel file name that stays in the bundle directory: the index's word is data."""
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise BundleError(f"{filename!r} is not a wheel file name") from exc
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise BundleError(f"{filename!r} is not a plain file name")
    return filename
