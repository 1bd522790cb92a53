"""Wheels and their PEP 658 metadata files under the output directory's ``files/NAME/``.

A wheel is moved in from the staging area by rename (same filesystem) so it appears whole;
an alias (the same wheel under another platform's filename) is a hard link: stored once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wheelmill.publish.writer import TEMP_PREFIX, write_bytes_atomic


class FileStore:
    def __init__(self, output_dir: Path) -> None:
        self.root = output_dir / "files"

    def path(self, package: str, filename: str) -> Path:
        return self.root / package / filename

    def store(self, package: str, filename: str, staged: Path, metadata: bytes) -> str:
        """Publish a validated wheel and its metadata file; returns the metadata's sha256."""
        target = self.path(package, filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The metadata goes first: an index page may list the wheel as soon as the rename lands.
        write_bytes_atomic(target.with_name(filename + ".metadata"), metadata)
        os.chmod(staged, 0o644)
        os.replace(staged, target)
        return hashlib.sha256(metadata).hexdigest()

    def link_alias(self, package: str, filename: str, alias: str) -> None:
        """Make ``alias`` a hard link of ``filename`` (and of its metadata file)."""
        for suffix in ("", ".metadata"):
            source = self.path(package, filename + suffix)
            target = self.path(package, alias + suffix)
            temp = target.with_name(f"{TEMP_PREFIX}{target.name}.link")
            temp.unlink(missing_ok=True)
            os.link(source, temp)
            os.replace(temp, target)

    def remove(self, package: str, filename: str) -> None:
        for suffix in ("", ".metadata"):
            self.path(package, filename + suffix).unlink(missing_ok=True)

    def exists(self, package: str, filename: str) -> bool:
        return self.path(package, filename).is_file()
