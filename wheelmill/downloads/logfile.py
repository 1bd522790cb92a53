"""Reading an access log from where the last ingest stopped, plain or gzip-compressed, in chunks.

A log is known by the SHA-256 of its first line, not by its path or inode: logrotate renames
``access.log`` to ``access.log.1`` and compresses it to ``access.log.2.gz``, and each is still the
same log, already partly read. Positions are offsets in the uncompressed text.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wheelmill.errors import WheelmillError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 16 * 2**20  # one transaction each; more lines per chunk fold into fewer rollup rows
FIRST_LINE_MAX = 64 * 2**10  # a longer first line is known by this much of it


class LogUnreadable(WheelmillError):
    """An access log could not be read."""


@dataclass(frozen=True)
class Chunk:
    lines: list[bytes]
    end: int  # the uncompressed offset just after the last line
    progress: int  # bytes of the file on disk read so far, for a progress bar


@dataclass
class LogFile:
    """An open access log."""

    path: Path
    key: str  # SHA-256 of the first line: the log's identity across renames and compression
    size: int  # bytes on disk
    compressed: bool
    _raw: BinaryIO
    _text: BinaryIO

    def chunks(self, start: int) -> Iterator[Chunk]:
        """Whole lines from ``start`` on. A plain log's unfinished last line is left for next time,
        since the server may still be writing it; a compressed log is finished, so it is read too."""
        with _read_errors(self.path):
            self._text.seek(start)
            end = start
            while lines := self._text.readlines(CHUNK_BYTES):
                if not self.compressed and not lines[-1].endswith(b"\n"):
                    lines.pop()
                    if not lines:
                        return
                end += sum(map(len, lines))
                yield Chunk(lines, end, self._raw.tell())


@contextmanager
def open_log(path: Path) -> Iterator[LogFile | None]:
    """The log at ``path``, or None while it has no complete first line to know it by."""
    with ExitStack() as stack:
        with _read_errors(path):
            raw = stack.enter_context(path.open("rb"))
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            text = stack.enter_context(gzip.GzipFile(fileobj=raw)) if compressed else raw
            first = text.readline(FIRST_LINE_MAX)
            size = path.stat().st_size
        if first.endswith(b"\n") or len(first) == FIRST_LINE_MAX or (compressed and first):
            yield LogFile(path, hashlib.sha256(first).hexdigest(), size, compressed, raw, text)
        else:
            yield None


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: a truncated gzip
        raise LogUnreadable(f"cannot read {str(path)!r}: {exc}") from exc
