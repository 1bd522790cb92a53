"""System libraries a wheel needs: the DT_NEEDED entries of its shared objects and their Debian packages.

Runs on the builder after a build, whose system is the target's base image: a library resolved here
is the one a user installs there, and the project page turns the packages into ``sudo apt install``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Collection, Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from elftools.common.exceptions import ELFError, ELFParseError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

from wheelmill.wheels import is_shared_object

logger = logging.getLogger(__name__)

# glibc and the interpreter itself: every target has them, so they are never worth an apt line.
_ALWAYS_PRESENT = re.compile(
    r"(libc|libm|libpthread|libdl|librt|libutil)\.so\.\d+|ld-linux.*\.so\.\d+|ld64\.so\.\d+|libpython.*"
)
# Small libraries stay in memory; large ones spill to a temporary file that is deleted after reading.
_IN_MEMORY = 32 << 20
_MERGED_DIRS = ("/lib/", "/lib32/", "/lib64/", "/libx32/")
_MACHINES = {
    "EM_X86_64": "x86_64",
    "EM_386": "i386",
    "EM_ARM": "ARM",
    "EM_AARCH64": "AArch64",
    "EM_PPC64": "PowerPC64",
    "EM_S390": "S390",
    "EM_RISCV": "RISC-V",
}
_EF_ARM_EABIMASK = 0xFF000000


def needed_sonames(wheel_path: Path) -> dict[str, list[str]]:
    """Each ELF shared object's archive path -> its DT_NEEDED entries; other .so files are left out."""
    needed = {}
    with zipfile.ZipFile(wheel_path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not is_shared_object(info.filename):
                continue
            with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as copy:
                with archive.open(info) as member:
                    shutil.copyfileobj(member, copy)
                entries = _dt_needed(copy)
            if entries is not None:
                needed[info.filename] = entries
    return needed


def external_sonames(wheel_path: Path) -> list[str]:
    """The libraries the target system must provide: needed, not bundled in the wheel, not glibc."""
    with zipfile.ZipFile(wheel_path) as archive:
        bundled = {PurePosixPath(entry).name for entry in archive.namelist()}
    needed = {soname for entries in needed_sonames(wheel_path).values() for soname in entries}
    return sorted(soname for soname in needed - bundled if not _ALWAYS_PRESENT.fullmatch(soname))


def debian_packages(
    sonames: Iterable[str], base_packages: Collection[str] = frozenset(), root: Path | None = None
) -> dict[str, str | None]:
    """soname -> the Debian package (without architecture) providing it, None if unresolved.

    Asked of the system the wheel was built in: this machine, or a build ``root`` of another
    architecture, whose linker cache and dpkg database this machine's tools read directly (no
    emulation needed). Sonames whose package is in base_packages (the base image's, by name) are
    dropped: every machine of the target has them already.
    """
    found = _ldconfig_paths(root)
    spellings = {soname: _spellings(found.get(soname, [])) for soname in sonames}
    owners = _dpkg_owners(root, {path for paths in spellings.values() for path in paths})
    packages = {}
    for soname, paths in spellings.items():
        package = next((owners[path] for path in paths if path in owners), None)
        if package not in base_packages:
            packages[soname] = package
    return packages


def elf_machine(data: bytes) -> str:
    """The CPU an ELF file runs on, e.g. "x86_64" or "ARM EABI5"; the header alone is enough."""
    try:
        header = ELFFile(io.BytesIO(data)).header
    except (ELFError, ELFParseError) as exc:
        raise ValueError(f"not an ELF file: {data[:16]!r}") from exc
    machine = str(header.e_machine)
    eabi = (header.e_flags & _EF_ARM_EABIMASK) >> 24
    if machine == "EM_ARM" and eabi:
        return f"ARM EABI{eabi}"
    return _MACHINES.get(machine, machine.removeprefix("EM_"))


def _dt_needed(stream: IO[bytes]) -> list[str] | None:
    try:
        elf = ELFFile(stream)
        for segment in elf.iter_segments():
            if isinstance(segment, DynamicSegment):
                return [tag.needed for tag in segment.iter_tags("DT_NEEDED")]
    except (ELFError, ELFParseError):
        return None
    return []


def _ldconfig_paths(root: Path | None) -> dict[str, list[str]]:
    """soname -> paths in the dynamic linker's cache, in its order of preference."""
    # /sbin is not on an unprivileged user's PATH on Debian.
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    cache = ["-C", str(root / "etc" / "ld.so.cache")] if root else []
    try:
        listing = subprocess.run([ldconfig, "-p", *cache], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        logger.warning("cannot list shared libraries with %s: %s", ldconfig, exc)
        return {}
    paths: dict[str, list[str]] = {}
    for line in listing.splitlines():
        left, arrow, path = line.partition(" => ")
        if arrow:
            paths.setdefault(left.split()[0], []).append(path.strip())
    return paths


def _spellings(paths: list[str]) -> list[str]:
    """Each path, its real path, and their /usr-merge twins: dpkg knows a file only by its shipped name."""
    spelled = []
    for path in paths:
        for name in (path, os.path.realpath(path)):
            spelled.append(name)
            if name.startswith("/usr/") and name[4:].startswith(_MERGED_DIRS):
                spelled.append(name[4:])
            elif name.startswith(_MERGED_DIRS):
                spelled.append("/usr" + name)
    return list(dict.fromkeys(spelled))


def _dpkg_owners(root: Path | None, paths: set[str]) -> dict[str, str]:
    """path -> owning package, in one dpkg call; paths no package owns are left out."""
    if not paths:
        return {}
    database = [f"--admindir={root / 'var' / 'lib' / 'dpkg'}"] if root else []
    try:
        # dpkg-query -S exits 1 when some path has no owner; the owners it found are still on stdout.
        listing = subprocess.run(
            ["dpkg-query", *database, "-S", *sorted(paths)], capture_output=True, text=True
        ).stdout
    except OSError as exc:
        logger.warning("cannot ask dpkg which packages own shared libraries: %s", exc)
        return {}
    owners = {}
    for line in listing.splitlines():
        packages, sep, path = line.partition(": /")
        if sep and not line.startswith("diversion by"):
            owners["/" + path] = packages.split(", ")[0].split(":")[0]
    return owners
