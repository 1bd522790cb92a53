"""The master's ASGI application: builder API, then the published site for everything else."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from wheelmill import __version__
from wheelmill.errors import (
    AuthError,
    Forbidden,
    InvalidName,
    InvalidTarget,
    LeaseLost,
    NotFound,
    UploadRefused,
    WheelmillError,
)
from wheelmill.master import admin_api, builder_api, bundle_api, diskguard, metrics
from wheelmill.master.context import Master
from wheelmill.master.hot_routes import HotRoutes
from wheelmill.master.loops import start_loops, stop_loops
from wheelmill.master.static import make_static_app

log = logging.getLogger(__name__)

_STATUS = {
    AuthError: 401,
    Forbidden: 403,
    NotFound: 404,
    LeaseLost: 409,
    UploadRefused: 422,
    InvalidName: 422,
    InvalidTarget: 422,
}


def create_app(master: Master, *, run_loops: bool = True) -> FastAPI:
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops = start_loops(master, stop) if run_loops else []
        yield
        stop_loops(loops, stop)

    app = FastAPI(title="wheelmill", version=__version__, lifespan=lifespan)
    app.state.master = master
    app.include_router(builder_api.router)
    app.include_router(admin_api.router)
    app.include_router(bundle_api.router)
    app.add_exception_handler(WheelmillError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    refusals = metrics.install(app, master, _domain_error)
    # Added first, so it runs inside the disk guard: a low disk still turns claims away.
    app.add_middleware(HotRoutes, master=master, handlers=app.exception_handlers)
    app.add_middleware(diskguard.DiskGuard, low=master.disk.low, refused=refusals.count)
    app.mount("/", make_static_app(master.settings.resolved_output_dir))
    return app


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    """One place maps domain errors to HTTP answers; unknown ones are 500s and logged."""
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
    if status == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    body = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, UploadRefused):
        body["reason"] = exc.reason
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, except that an input JSON cannot hold (``1e999`` parses as infinity) is left
    out of the answer instead of failing it with a 500."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    try:
        return JSONResponse({"detail": errors}, status_code=422)
    except ValueError:
        return JSONResponse({"detail": [{k: v for k, v in e.items() if k != "input"} for e in errors]}, 422)
