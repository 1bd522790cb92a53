"""One line of an nginx or Apache "combined" access log: which wheel it served, on which day, to whom.

Both servers default to this format (nginx's ``combined``; Apache's ``%h %l %u %t "%r" %>s %b
"%{Referer}i" "%{User-agent}i"``). Fields after the user agent, as extended formats append, are
ignored. Only a ``200`` answer to a ``GET`` counts as a download: a ``206`` is a range read (pip's
and uv's lazy-wheel metadata reads), a ``304`` a client re-checking a copy it already has, and a
``HEAD`` fetches nothing.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote

from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename

# A quoted field, with backslash escapes inside (Apache writes \" and \\; nginx writes \x22 and \x5C).
_FIELD = r'[^"\\]*(?:\\.[^"\\]*)*'
_HEAD = re.compile(
    r"\S+ \S+ \S+ \[(\d\d/\w\w\w/\d{4}:\d\d:\d\d):\d\d ([+-]\d{4})\] "
    + f'"({_FIELD})"'
    + r" (\d{3}) (?:\d+|-) "
)
# Referer and agent. Escaped quotes make the general pattern step through each one, five times slower
# on pip's JSON agent, so lines without them (all of nginx's) take the plain pattern.
_TAIL = re.compile(r'"[^"]*" "([^"]*)"')
_TAIL_ESCAPED = re.compile(f'"{_FIELD}" "({_FIELD})"')
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")
_CONTROL = {"n": "\n", "r": "\r", "t": "\t"}
# Log timestamps use English month names whatever the locale, so no locale-dependent parsing.
_MONTHS = {
    name: number
    for number, name in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
# A filename longer than the column that stores it is no file the farm published.
MAX_FILENAME = 300


class MalformedLine(ValueError):
    """The line is not in the combined log format."""


class Download(NamedTuple):
    """A wheel download a log line records."""

    day: date  # the UTC day of the request
    filename: str
    package: NormalizedName
    agent: str  # the User-Agent header, unescaped


def parse_line(line: str) -> Download | None:
    """The download ``line`` records, or None when it records another request (a page, metadata, a
    partial or failed download). Raises :class:`MalformedLine` when the line is not a log line."""
    head = _HEAD.match(line)
    tail = None if head is None else (_TAIL_ESCAPED if '\\"' in line else _TAIL).match(line, head.end())
    if head is None or tail is None:
        raise MalformedLine(f"not a combined log line: {line[:200]!r}")
    minute, offset, request, status = head.groups()
    if status != "200" or not request.startswith("GET "):
        return None
    filename = _wheel_path(request)
    if filename is None:
        return None
    package = _package(filename)
    if package is None:
        return None
    return Download(_utc_day(minute, offset), filename, package, unescape(tail.group(1)))


def _wheel_path(request: str) -> str | None:
    """The wheel filename of a ``GET /files/NAME/FILE.whl HTTP/1.1`` request line, under any prefix."""
    parts = request.split(" ")
    if len(parts) > 3:
        return None
    path = parts[1].partition("?")[0]
    if not path.endswith(".whl"):
        return None
    segments = path.rsplit("/", 3)
    if len(segments) != 4 or segments[1] != "files":
        return None
    return unquote(segments[3]) if "%" in segments[3] else segments[3]


@lru_cache(maxsize=65536)
def _package(filename: str) -> NormalizedName | None:
    if len(filename) > MAX_FILENAME:
        return None
    try:
        return parse_wheel_filename(filename)[0]
    except InvalidWheelFilename:
        return None


@lru_cache(maxsize=4096)
def _utc_day(minute: str, offset: str) -> date:
    """The UTC day of a local time such as ``10/Oct/2024:23:55`` at ``+0100``; cached per minute,
    since a busy log repeats each minute thousands of times and strptime is slow."""
    month = _MONTHS.get(minute[3:6])
    if month is None:
        raise MalformedLine(f"no such month in {minute!r}")
    try:
        local = datetime(int(minute[7:11]), month, int(minute[:2]), int(minute[12:14]), int(minute[15:17]))
    except ValueError as exc:
        raise MalformedLine(f"no such time: {minute!r}") from exc
    shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return (local - shift if offset[0] == "+" else local + shift).date()


# Agents repeat: the same few thousand strings over millions of lines.
@lru_cache(maxsize=16384)
def unescape(field: str) -> str:
    """Undo the server's escaping of a quoted field. Escaped bytes above ASCII are UTF-8 (nginx writes
    ``é`` as ``\\xC3\\xA9``), so they are decoded as such when they form valid UTF-8."""
    if "\\" not in field:
        return field
    text = _ESCAPE.sub(_unescape_one, field)
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) == 3:
        return chr(int(code[1:], 16))
    return _CONTROL.get(code, code)
