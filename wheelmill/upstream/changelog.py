"""PyPI's mirroring calls, ``changelog_last_serial`` and ``changelog_since_serial``, over XML-RPC.

PyPI names them the supported way to follow the whole index. They go through the upstream client's
HTTP session and backoff, so they carry its User-Agent; a fault -32500 ("too many requests") and a
body that is not the XML-RPC answer promised are retried like a 429.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator
from typing import Any
from xml.parsers.expat import ExpatError

import httpx

from wheelmill.errors import UpstreamError
from wheelmill.upstream.client import RetryableError, UpstreamClient
from wheelmill.upstream.events import Entry

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
            lambda: _entries(self._post("changelog_since_serial", serial), serial),
        )

    def pages(self, serial: int) -> Iterator[list[Entry]]:
        """Pages from ``serial`` on, each asked for once the previous one was used, until one is empty."""
        while page := self.since(serial):
            yield page
            serial = page[-1][4]

    def _post(self, method: str, *params: Any) -> Any:
        body = xmlrpc.client.dumps(params, method, allow_none=True)
        response = self.client.http.post(
            self.client.xmlrpc_url, content=body.encode(), headers={"Content-Type": "text/xml"}
        )
        _check_status(response)
        try:
            (result,), _ = xmlrpc.client.loads(response.content)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == TOO_MANY_REQUESTS:
                raise RetryableError(f"{method}: upstream said {fault.faultString!r}") from fault
            raise UpstreamError(f"{method}: fault {fault.faultCode} {fault.faultString!r}") from fault
        except (ExpatError, xmlrpc.client.ResponseError, ValueError) as exc:
            raise RetryableError(f"{method}: the answer is not XML-RPC: {exc!r}") from exc
        return result


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
