"""The calls every build makes, claim and complete, answered without FastAPI's per-request work.

A busy builder makes one call per build: it completes one job and is handed the next. Routing
that call through FastAPI, solving its dependencies and validating it cost an API worker more
CPU than recording the build (about half its time, profiled with py-spy at a few hundred builds
a second). This middleware answers the well-formed calls itself, with the same functions the
routes use (``builder_api.claim_answer``, ``complete_answer``) and the app's own exception
handlers. Anything else (no bearer token, a body that fails validation, an unusual query) it
hands on to the FastAPI route, body and all, which answers with its usual errors: the routes
stay the API's contract and its OpenAPI description.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wheelmill.master import builder_api
from wheelmill.master.context import Master
from wheelmill.master.diskguard import CLAIM_PATH

Handler = Callable[[Request, Exception], Awaitable[Response]]
_COMPLETE = re.compile(r"/api/v1/leases/([^/]+)/complete")
_CLAIM_NEXT = {b"": False, b"claim_next=true": True, b"claim_next=false": False}


class HotRoutes:
    """ASGI middleware; ``handlers`` is the app's exception handlers (``app.exception_handlers``),
    read at each error so that handlers registered after this middleware count too."""

    def __init__(self, app: ASGIApp, master: Master, handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        self.master = master
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == CLAIM_PATH:
                await self._claim(scope, receive, send)
                return
            if (match := _COMPLETE.fullmatch(path)) and scope["query_string"] in _CLAIM_NEXT:
                await self._complete(match[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _claim(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        try:
            caller = self.master.tokens.caller(token)
            response = builder_api.json_answer(builder_api.claim_answer(self.master, caller))
        except Exception as exc:
            response = await self._error(scope, receive, exc)
        await response(scope, receive, send)

    async def _complete(self, lease_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        token = _bearer_token(scope)
        try:
            completion = builder_api.Completion.model_validate_json(body)
        except ValidationError:
            completion = None
        if token is None or completion is None:
            await self.app(scope, _replay(body, receive), send)
            return
        claim_next = _CLAIM_NEXT[scope["query_string"]]
        try:
            caller = self.master.tokens.caller(token)
            response = builder_api.json_answer(
                builder_api.complete_answer(self.master, caller, lease_id, completion, claim_next=claim_next)
            )
        except Exception as exc:
            response = await self._error(scope, receive, exc)
        await response(scope, receive, send)

    async def _error(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        """The answer the app's handler for ``exc`` gives; an exception nobody handles propagates."""
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return await handler(Request(scope, receive), exc)
        raise exc


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return builder_api.bearer_token(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: the route sees no body
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then whatever comes next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
