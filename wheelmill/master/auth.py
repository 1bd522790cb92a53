"""Who is calling: builder tokens, checked against their hashes, with a short-lived cache.

Every builder call carries its token; looking it up costs a database read, which at hundreds of
calls a second is most of a claim's cost. A cached answer lives ``ttl`` seconds, so a revoked
token or a paused builder is noticed within that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from wheelmill.db import builders as builder_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import BuilderState


@dataclass(frozen=True)
class Caller:
    """The authenticated builder making a call."""

    id: int
    name: str
    target: str | None
    state: BuilderState


class TokenCache:
    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def caller(self, token: str) -> Caller:
        key = builder_sql.hash_token(token)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        with self.db.read() as session:
            builder = builder_sql.authenticate(session, token)
            caller = Caller(builder.id, builder.name, builder.target, builder.state)
        with self._lock:
            self._entries[key] = (now + self.ttl, caller)
        return caller

    def forget(self, token_hash: str | None = None) -> None:
        """Drop cached answers (all, or one token's), e.g. after a builder registered."""
        with self._lock:
            if token_hash is None:
                self._entries.clear()
            else:
                self._entries.pop(token_hash, None)
