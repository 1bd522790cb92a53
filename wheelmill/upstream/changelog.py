"""PyPI's mirroring calls, ``changelog_last_serial`` and ``changelog_since_serial``, over XML-RPC.

PyPI names them the supported way to follow the whole index. They go through the upstream client's
HTTP session and backoff, so they carry its User-Agent; a fault -32500 ("too many requests") and a
body that is not the XML-RPC answer promised are retried like a 429.

A changelog page is read by ``fastpage`` when it has the usual shape; other answers are decoded
with ElementTree rather than ``xmlrpc.client.loads``: a page of 50,000 entries
is a million XML elements, and the C tree builder reads them in half the time of xmlrpc's
pure-Python unmarshaller (both on the same expat parser), and with the cyclic garbage collector
paused: a tree has no cycles, and collections triggered by its million allocations doubled the time.
"""

from __future__ import annotations

import gc
import xmlrpc.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from xml.etree import ElementTree

import httpx

from wheelmill.errors import UpstreamError
from wheelmill.upstream.client import RetryableError, UpstreamClient
from wheelmill.upstream.events import Entry
from wheelmill.upstream.fastpage import changelog_entries

TOO_MANY_REQUESTS = -32500


class Changelog:
    """The changelog of the index ``client`` follows, read page by page."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client

    def last_serial(self) -> int:
        return self.client.with_backoff(
            "changelog_last_serial()", lambda: _serial(self._post("changelog_last_serial"))
        )

    def since(self, serial: int) -> list[Entry]:
        """One page: the entries after ``serial``, in serial order (PyPI sends at most 50,000)."""
        return self.client.with_backoff(
            f"changelog_since_serial({serial})",
            lambda: _entries(self._post("changelog_since_serial", serial, fast=changelog_entries), serial),
        )

    def pages(self, serial: int) -> Iterator[list[Entry]]:
        """Pages from ``serial`` on, each asked for once the previous one was used, until one is empty."""
        while page := self.since(serial):
            yield page
            serial = page[-1][4]

    def _post(self, method: str, *params: Any, fast: Callable[[bytes], Any] | None = None) -> Any:
        """Call ``method``; ``fast`` may read the answer first, returning None to leave it to ElementTree."""
        body = xmlrpc.client.dumps(params, method, allow_none=True)
        response = self.client.http.post(
            self.client.xmlrpc_url, content=body.encode(), headers={"Content-Type": "text/xml"}
        )
        _check_status(response)
        if fast is not None and (result := fast(response.content)) is not None:
            return result
        try:
            with _collector_paused():
                result, fault = _decode(response.content)
        except (ElementTree.ParseError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise RetryableError(f"{method}: the answer is not XML-RPC: {exc!r}") from exc
        if fault is None:
            return result
        code, text = fault.get("faultCode"), fault.get("faultString")
        if code == TOO_MANY_REQUESTS:
            raise RetryableError(f"{method}: upstream said fault {code} {text!r}")
        raise UpstreamError(f"{method}: upstream said fault {code} {text!r}")


def _decode(body: bytes) -> tuple[Any, dict[str, Any] | None]:
    """An XML-RPC methodResponse as (result, None), or (None, fault struct)."""
    root = ElementTree.fromstring(body)
    if root.tag != "methodResponse":
        raise ValueError(f"a <{root.tag}> document, not a methodResponse")
    fault = root.find("fault/value")
    if fault is not None:
        return None, _value(fault)
    param = root.find("params/param/value")
    if param is None:
        raise ValueError("a methodResponse with neither params nor fault")
    return _value(param), None


@contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _value(element: ElementTree.Element) -> Any:
    """One XML-RPC ``<value>``, of the types the mirroring calls and faults use."""
    if not len(element):
        return element.text or ""  # a bare <value> is a string
    typed = element[0]
    match typed.tag:
        case "string":
            return typed.text or ""
        case "int" | "i4" | "i8":
            return int(typed.text or "")
        case "nil":
            return None
        case "boolean":
            return typed.text == "1"
        case "array":
            return [_value(item) for item in typed[0]]
        case "struct":
            return {member.findtext("name"): _value(member[1]) for member in typed}
    raise ValueError(f"unexpected XML-RPC type <{typed.tag}>")


def _check_status(response: httpx.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableError(f"{response.request.url} answered {response.status_code}")
    if response.status_code != 200:
        raise UpstreamError(f"{response.request.url} answered {response.status_code}")


def _serial(result: Any) -> int:
    if not isinstance(result, int) or isinstance(result, bool):
        raise RetryableError(f"changelog_last_serial returned {result!r}, not a serial")
    return result


def _entries(result: Any, after: int) -> list[Entry]:
    """The page as 5-tuples, checked: a malformed page is retried, never half applied."""
    if not isinstance(result, list):
        raise RetryableError(f"changelog_since_serial({after}) returned {type(result).__name__}, not a list")
    entries: list[Entry] = []
    previous = after
    for item in result:
        if not (
            isinstance(item, list | tuple)
            and len(item) == 5
            and isinstance(item[0], str)
            and isinstance(item[1], str | None)
            and isinstance(item[2], int)
            and isinstance(item[3], str)
            and isinstance(item[4], int)
            and item[4] > previous
        ):
            raise RetryableError(
                f"changelog_since_serial({after}): entry {item!r} after serial {previous} is not "
                "(name, version, timestamp, action, serial) with a rising serial"
            )
        previous = item[4]
        entries.append((item[0], item[1], item[2], item[3], item[4]))
    return entries
