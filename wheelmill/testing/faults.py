"""Faults a test asks the stand-in upstream to answer with, as PyPI and its CDN sometimes do."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    """One bad answer."""

    SERVER_ERROR = "500"  # 500 Internal Server Error
    TOO_MANY_REQUESTS = "429"  # 429 with Retry-After: 1
    TRUNCATED = "truncated"  # status 200, the body cut in half (Content-Length matches the half)
    GARBAGE = "garbage"  # status 200, an HTML error page where JSON or XML was asked for
    XMLRPC_FAULT = "xmlrpc-fault"  # XML-RPC fault -32500 "too many requests"
    STALE = "stale"  # a cached copy from before the project's last change, with its older serial


@dataclass
class _Pending:
    path_prefix: str
    fault: Fault
    remaining: int
    method: str | None


class FaultPlan:
    """Faults waiting for requests, first asked first served; thread-safe."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()

    def add(self, path_prefix: str, fault: Fault | str, times: int = 1, method: str | None = None) -> None:
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times!r}")
        pending = _Pending(path_prefix, Fault(fault), times, method.upper() if method else None)
        with self._lock:
            self._pending.append(pending)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault this request gets, if any; each request uses up one answer."""
        with self._lock:
            for pending in self._pending:
                if path.startswith(pending.path_prefix) and pending.method in (None, method):
                    pending.remaining -= 1
                    if not pending.remaining:
                        self._pending.remove(pending)
                    return pending.fault
        return None
