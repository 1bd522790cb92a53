"""A fast reader for the one XML-RPC answer that is big: a ``changelog_since_serial`` page.

A page is 50,000 entries of five values, a million XML elements; building an ElementTree of them
and walking it took more of the whole-index ingest than applying the entries. Every entry has the
same shape, so one compiled pattern reads them about 2.5 times as fast. Anything the pattern does not
account for (a fault, another encoding, an unexpected type) returns None and the caller decodes the
answer the general way, so this is only ever a shortcut.
"""

from __future__ import annotations

import html
import re

from wheelmill.upstream.events import Entry

_STRING = rb"<value>\s*(?:<string>([^<]*)</string>|<string/>|([^<]*))\s*</value>"
_OPTIONAL = rb"<value>\s*(?:<string>([^<]*)</string>|<string/>|(<nil/>)|([^<]*))\s*</value>"
_INT = rb"<value>\s*<(?:int|i4|i8)>\s*([-+]?\d+)\s*</(?:int|i4|i8)>\s*</value>"
_ENTRY = re.compile(
    rb"<value>\s*<array>\s*<data>\s*"
    + rb"\s*".join([_STRING, _OPTIONAL, _INT, _STRING, _INT])
    + rb"\s*</data>\s*</array>\s*</value>"
)
_UTF8 = re.compile(rb"<\?xml[^>]*?encoding=[\"'](?!utf-8[\"'])", re.IGNORECASE)


def changelog_entries(body: bytes) -> list[Entry] | None:
    """The entries of a ``changelog_since_serial`` answer, or None when it is not plainly one."""
    whole = body.rstrip().endswith(b"</methodResponse>")  # a truncated answer is retried, never used
    if not whole or b"<fault>" in body or b"<params>" not in body or _UTF8.match(body.lstrip()):
        return None
    entries = [
        (
            _text(name, bare_name),
            None if nil else _text(version, bare_version),
            int(timestamp),
            _text(action, bare_action),
            int(serial),
        )
        for name, bare_name, version, nil, bare_version, timestamp, action, bare_action, serial in (
            match.groups() for match in _ENTRY.finditer(body)
        )
    ]
    # Markup inside a value is escaped, so each entry is one <array> and the page is one more:
    # a count that disagrees means the pattern skipped something.
    return entries if len(entries) == body.count(b"<array>") - 1 else None


def _text(typed: bytes | None, bare: bytes | None) -> str:
    raw = (typed if typed is not None else bare or b"").decode()
    return html.unescape(raw) if "&" in raw else raw
