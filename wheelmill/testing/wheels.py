"""Upstream-built wheels: small but valid wheel files, as a maintainer would upload beside an sdist."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass

from packaging.tags import parse_tag

from wheelmill.testing.metadata import CoreMetadata

# A fixed member time keeps a wheel's sha256 stable from one test run to the next.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuiltWheel:
    filename: str
    content: bytes
    core_metadata: bytes  # the METADATA file, served beside the wheel (PEP 658)
    python_tag: str  # the wheel's python tag as written in its name, e.g. "py3" or "py2.py3"


def make_wheel(meta: CoreMetadata, tag: str) -> BuiltWheel:
    """A wheel for ``meta`` with the compressed tag set ``tag``, e.g. ``py3-none-any``."""
    expanded = sorted(str(each) for each in parse_tag(tag))  # raises on a malformed tag
    python_tag, _abi, platform = tag.split("-")
    dist_info = f"{meta.module}-{meta.file_version}.dist-info"
    core_metadata = meta.render().encode()
    wheel_file = "Wheel-Version: 1.0\nGenerator: wheelmill.testing\n"
    wheel_file += f"Root-Is-Purelib: {'true' if platform == 'any' else 'false'}\n"
    wheel_file += "".join(f"Tag: {each}\n" for each in expanded)
    members = {
        f"{meta.module}/__init__.py": f"__version__ = {meta.version!r}\n".encode(),
        f"{dist_info}/METADATA": core_metadata,
        f"{dist_info}/WHEEL": wheel_file.encode(),
    }
    record = "".join(f"{path},sha256={_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    filename = f"{meta.module}-{meta.file_version}-{tag}.whl"
    return BuiltWheel(filename, buffer.getvalue(), core_metadata, python_tag)


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
