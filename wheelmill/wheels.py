"""Wheel inspection and the upload checks, as separate small steps.

The master calls them in order on every upload: ``check_size``, ``check_filename``,
``inspect_wheel``, ``check_matches_job``. Each refuses with ``UploadRefused`` naming the culprit and a
short machine reason, which metrics count. Builders are untrusted, so nothing here trusts the archive:
entry names, sizes and hashes are all checked before anything is published.
"""

from __future__ import annotations

import base64
import csv
import email.parser
import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from functools import partial
from pathlib import Path, PurePosixPath

from packaging.tags import Tag
from packaging.utils import (
    BuildTag,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from wheelmill.errors import UploadRefused
from wheelmill.targets import Target

_SAFE_FILENAME = re.compile(r"[A-Za-z0-9._+!-]+\.whl")
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")
_CPYTHON = re.compile(r"cp(\d)(\d+)")
_CHUNK = 1 << 20
# METADATA, WHEEL, RECORD and top_level.txt are read whole: cap them so a zip bomb cannot exhaust memory.
_MAX_SMALL_MEMBER = 16 << 20
_STRONG_HASHES = frozenset({"sha256", "sha384", "sha512"})
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_SHOWN = 10
_PURE = Tag("py3", "none", "any")


@dataclass(frozen=True)
class WheelInfo:
    """What the master records and publishes about an accepted wheel."""

    filename: str
    name: NormalizedName
    version: Version
    build_tag: BuildTag
    tags: frozenset[Tag]
    metadata: bytes  # exact bytes of .dist-info/METADATA, published byte-identical as the PEP 658 file
    metadata_name: str
    metadata_version: str
    requires_python: str | None
    summary: str | None
    requires_dist: tuple[str, ...]
    top_level: tuple[str, ...]  # modules the smoke test imports
    shared_objects: tuple[str, ...]  # archive paths of ELF shared objects, for the library analysis


class Compat(StrEnum):
    """How widely a wheel serves: decides which other targets' jobs it covers."""

    PURE = "pure"  # py3-none-any: every target
    ABI3 = "abi3"  # cpXY-abi3-PLATFORM: that platform, any CPython >= X.Y
    SPECIFIC = "specific"  # only targets that can install one of its tags


def check_size(size: int, limit: int) -> None:
    """Checked on the size the master counted itself, never on the size the builder declared."""
    if size > limit:
        raise UploadRefused(f"wheel size {size!r} is over the limit of {limit!r} bytes", reason="size")


def check_filename(filename: str) -> tuple[NormalizedName, Version, BuildTag, frozenset[Tag]]:
    """Parse an uploaded filename; it becomes a path in the file store, so it must be one plain name."""
    if any(bad in filename for bad in ("/", "\\", "..", "\x00")) or not _SAFE_FILENAME.fullmatch(filename):
        raise UploadRefused(f"filename {filename!r} is not a safe wheel filename", reason="filename")
    try:
        return parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise UploadRefused(
            f"filename {filename!r} is not a valid wheel name: {exc}", reason="filename"
        ) from exc


def inspect_wheel(path: Path, filename: str) -> WheelInfo:
    """Check that the file at path is a sound wheel named filename, and read what we publish about it."""
    name, version, build_tag, tags = check_filename(filename)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_entries(archive, filename)
            names = frozenset(info.filename for info in archive.infolist() if not info.is_dir())
            dist_info = _dist_info_dir(names, name, filename)
            _check_record(archive, names, dist_info, filename)
            metadata = _read_small(archive, f"{dist_info}/METADATA", filename)
            top_level_txt = f"{dist_info}/top_level.txt"
            listed = _read_small(archive, top_level_txt, filename) if top_level_txt in names else None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise UploadRefused(
            f"wheel {filename!r} is not a readable zip archive: {exc}", reason="archive"
        ) from exc
    message = _parse_metadata(metadata, filename, name, version)
    return WheelInfo(
        filename=filename,
        name=name,
        version=version,
        build_tag=build_tag,
        tags=tags,
        metadata=metadata,
        metadata_name=message["Name"],
        metadata_version=message["Metadata-Version"],
        requires_python=message["Requires-Python"],
        summary=message["Summary"],
        requires_dist=tuple(message.get_all("Requires-Dist") or ()),
        top_level=_top_level(names, listed),
        shared_objects=tuple(sorted(entry for entry in names if is_shared_object(entry))),
    )


def check_matches_job(info: WheelInfo, package: str, version: str, target: Target) -> None:
    """Refuse a wheel that is not what the job asked for: another package, release or platform."""
    if info.name != canonicalize_name(package):
        raise UploadRefused(f"wheel {info.filename!r} is for {info.name!r}, not {package!r}", reason="name")
    if not _same_version(info.version, version):
        raise UploadRefused(
            f"wheel {info.filename!r} is version {str(info.version)!r}, not {version!r}", reason="version"
        )
    if not target.can_install(info.tags):
        raise UploadRefused(f"target {str(target)!r} cannot install wheel {info.filename!r}", reason="tags")


def wheel_compat(tags: Collection[Tag]) -> Compat:
    """Classify a wheel by how widely it serves; the planner closes other targets' jobs on it."""
    if _PURE in tags:
        return Compat.PURE
    if any(_abi3_floor(tag) for tag in tags):
        return Compat.ABI3
    return Compat.SPECIFIC


def covers(wheel_tags: frozenset[Tag], target: Target) -> bool:
    """Whether a wheel built for one target also serves target, so its job closes as covered."""
    if wheel_compat(wheel_tags) is Compat.PURE:
        return True
    return any(_abi3_serves(tag, target) for tag in wheel_tags) or target.can_install(wheel_tags)


def rename_platform(filename: str, new_platform: str) -> str:
    """The alias filename of a wheel for another platform it runs on (linux_armv7l serves linux_armv6l)."""
    check_filename(filename)
    head = filename.removesuffix(".whl").rpartition("-")[0]
    renamed = f"{head}-{new_platform}.whl"
    check_filename(renamed)
    return renamed


def is_shared_object(entry: str) -> bool:
    """An archive path of a shared object, versioned (libz.so.1.2.13) or not."""
    return bool(_SHARED_OBJECT.search(entry.rpartition("/")[2]))


def _same_version(wheel_version: Version, upstream: str) -> bool:
    try:
        return Version(upstream) == wheel_version
    except InvalidVersion:
        return False


def _abi3_floor(tag: Tag) -> tuple[int, int] | None:
    match = _CPYTHON.fullmatch(tag.interpreter)
    if tag.abi != "abi3" or not match:
        return None
    return int(match[1]), int(match[2])


def _abi3_serves(tag: Tag, target: Target) -> bool:
    floor = _abi3_floor(tag)
    return floor is not None and tag.platform == target.platform and target.python_version >= floor


def _refuse_problems(filename: str, what: str, problems: dict[str, list[str]]) -> None:
    """Name every culprit at once: whoever fixes the builder fixes them together."""
    found = [f"{kind} {_some(entries)!r}" for kind, entries in problems.items() if entries]
    if found:
        raise UploadRefused(f"wheel {filename!r}: {what}: {'; '.join(found)}", reason="archive")


def _some(entries: list[str]) -> list[str]:
    shown = sorted(entries)[:_SHOWN]
    return [*shown, f"... {len(entries) - _SHOWN} more"] if len(entries) > _SHOWN else shown


def _check_entries(archive: zipfile.ZipFile, filename: str) -> None:
    seen: set[str] = set()
    problems: dict[str, list[str]] = {"unsafe paths": [], "duplicates": [], "unsupported compression": []}
    for info in archive.infolist():
        entry = info.filename
        if entry in seen:
            problems["duplicates"].append(entry)
        seen.add(entry)
        if _unsafe_entry(entry):
            problems["unsafe paths"].append(entry)
        if info.compress_type not in _ZIP_METHODS or info.flag_bits & 0x1:  # bit 0: encrypted
            problems["unsupported compression"].append(entry)
    _refuse_problems(filename, "bad archive entries", problems)


def _unsafe_entry(entry: str) -> bool:
    return (
        entry.startswith("/")
        or "\\" in entry
        or re.match(r"[A-Za-z]:", entry) is not None
        or ".." in PurePosixPath(entry).parts
    )


def _dist_info_dir(names: frozenset[str], name: NormalizedName, filename: str) -> str:
    tops = {entry.split("/", 1)[0] for entry in names if "/" in entry}
    found = sorted(top for top in tops if top.endswith(".dist-info"))
    if len(found) != 1:
        raise UploadRefused(
            f"wheel {filename!r} needs one .dist-info directory, has {found!r}", reason="archive"
        )
    dist_info = found[0]
    if canonicalize_name(dist_info.partition("-")[0]) != name:
        raise UploadRefused(
            f"wheel {filename!r} has the .dist-info of another package: {dist_info!r}", reason="archive"
        )
    missing = [part for part in ("METADATA", "WHEEL", "RECORD") if f"{dist_info}/{part}" not in names]
    if missing:
        raise UploadRefused(f"wheel {filename!r} has no {missing!r} in {dist_info!r}", reason="archive")
    return dist_info


def _read_small(archive: zipfile.ZipFile, entry: str, filename: str) -> bytes:
    info = archive.getinfo(entry)
    if info.file_size > _MAX_SMALL_MEMBER:
        raise UploadRefused(f"wheel {filename!r}: {entry!r} is {info.file_size!r} bytes", reason="archive")
    return archive.read(info)


def _check_record(archive: zipfile.ZipFile, names: frozenset[str], dist_info: str, filename: str) -> None:
    """Every file must be in RECORD with a strong hash that matches; all are checked, streamed in chunks."""
    record = f"{dist_info}/RECORD"
    hashes = _parse_record(_read_small(archive, record, filename), filename)
    unhashed = {record, f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"}
    checked = names - unhashed
    _refuse_problems(
        filename,
        "RECORD does not match the archive",
        {
            "hash mismatch": [
                entry for entry in checked & hashes.keys() if not _hash_ok(archive, entry, hashes[entry])
            ],
            "not in RECORD": list(checked - hashes.keys()),
            "in RECORD but missing": list(hashes.keys() - names - unhashed),
        },
    )


def _parse_record(raw: bytes, filename: str) -> dict[str, str]:
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UploadRefused(f"wheel {filename!r}: RECORD is not UTF-8 CSV: {exc}", reason="archive") from exc
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows if row}


def _hash_ok(archive: zipfile.ZipFile, entry: str, recorded: str) -> bool:
    algorithm, _, expected = recorded.partition("=")
    if algorithm not in _STRONG_HASHES:
        return False
    digest = hashlib.new(algorithm)
    with archive.open(entry) as member:
        for chunk in iter(partial(member.read, _CHUNK), b""):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii") == expected


def _parse_metadata(raw: bytes, filename: str, name: NormalizedName, version: Version) -> Message:
    try:
        message = email.parser.Parser().parsestr(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UploadRefused(f"METADATA of {filename!r} is not UTF-8: {exc}", reason="metadata") from exc
    missing = [field for field in ("Metadata-Version", "Name", "Version") if not message[field]]
    if missing:
        raise UploadRefused(f"METADATA of {filename!r} has no {missing!r}", reason="metadata")
    if canonicalize_name(message["Name"]) != name:
        raise UploadRefused(
            f"METADATA Name {message['Name']!r} disagrees with filename {filename!r}", reason="metadata"
        )
    if not _same_version(version, message["Version"]):
        raise UploadRefused(
            f"METADATA Version {message['Version']!r} disagrees with filename {filename!r}", reason="metadata"
        )
    return message


def _top_level(names: frozenset[str], listed: bytes | None) -> tuple[str, ...]:
    """The importable top-level modules: top_level.txt when the build wrote one, else the wheel's layout."""
    if listed is not None:
        lines = listed.decode("utf-8", "replace").splitlines()
        return tuple(sorted({line.strip() for line in lines if line.strip()}))
    modules = set()
    for entry in names:
        first, slash, rest = entry.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if slash and rest == "__init__.py":
            modules.add(first)
        elif not slash and (first.endswith(".py") or is_shared_object(first)):
            modules.add(first.split(".", 1)[0])
    return tuple(sorted(modules))
