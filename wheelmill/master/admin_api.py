"""Admin calls under ``/api/v1/admin/``, behind the admin token (``admin_token`` in the settings):
the fleet, builder tokens, and the actions of ``wheelmill.admin`` (the CLI's add, remove, skip,
unskip, rebuild, yank, unyank, import and audit).

With no admin token configured the admin API is off: every call answers 403.
"""

from __future__ import annotations

import hmac
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from wheelmill.admin import actions
from wheelmill.admin.audit import audit
from wheelmill.admin.importing import import_wheel
from wheelmill.db import builders as builder_sql
from wheelmill.db.tables import BuilderState
from wheelmill.errors import AuthError, Forbidden, UploadRefused
from wheelmill.master.builder_api import MasterDep
from wheelmill.master.fields import PlainText
from wheelmill.wheels import check_filename

router = APIRouter(prefix="/api/v1/admin")
STATES = {
    "pause": BuilderState.paused,
    "resume": BuilderState.active,
    "drain": BuilderState.draining,
    "kill": BuilderState.killed,
}


def require_admin(master: MasterDep, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = master.settings.admin_token
    if not expected:
        raise Forbidden("the admin API is off: set admin_token (WHEELMILL_ADMIN_TOKEN) to use it")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthError("send the admin token as 'Authorization: Bearer TOKEN'")


Admin = Annotated[None, Depends(require_admin)]


class BuilderInfo(BaseModel):
    name: str
    state: str
    target: str | None
    phase: str | None
    last_seen: str | None


class NewToken(BaseModel):
    builder: str = Field(min_length=1, max_length=100)


class Token(BaseModel):
    builder: str
    token: str


@router.get("/builders", response_model=list[BuilderInfo])
def list_builders(master: MasterDep, _: Admin) -> list[BuilderInfo]:
    with master.db.read() as session:
        return [
            BuilderInfo(
                name=b.name,
                state=str(b.state),
                target=b.target,
                phase=b.phase,
                last_seen=b.last_seen.isoformat() if b.last_seen else None,
            )
            for b in builder_sql.list_builders(session)
        ]


@router.post("/builders/{name}/{action}", response_model=BuilderInfo)
def steer_builder(
    name: str, action: Literal["pause", "resume", "drain", "kill"], master: MasterDep, _: Admin
) -> BuilderInfo:
    """The builder obeys at its next heartbeat (kill aborts its build) or claim."""
    with master.db.write() as session:
        builder = builder_sql.set_state(session, name, STATES[action])
        info = BuilderInfo(
            name=builder.name,
            state=str(builder.state),
            target=builder.target,
            phase=builder.phase,
            last_seen=None,
        )
    master.tokens.forget()
    return info


@router.post("/tokens", response_model=Token, status_code=201)
def create_token(body: NewToken, master: MasterDep, _: Admin) -> Token:
    with master.db.write() as session:
        token = builder_sql.create_token(session, body.builder)
    return Token(builder=body.builder, token=token)


@router.delete("/tokens/{name}", status_code=204)
def revoke_token(name: str, master: MasterDep, _: Admin) -> None:
    with master.db.write() as session:
        builder_sql.revoke_token(session, name)
    master.tokens.forget()


class Action(BaseModel):
    """One admin action on a package, or one of its versions."""

    package: PlainText = Field(min_length=1, max_length=200)
    version: PlainText | None = Field(default=None, max_length=100)
    target: PlainText | None = Field(
        default=None, max_length=100, description="skip, unskip, rebuild: one target"
    )
    reason: PlainText | None = Field(default=None, max_length=2000, description="required by skip and remove")

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package


class ActionResult(BaseModel):
    changed: int
    messages: list[str]


class AuditResult(BaseModel):
    missing: list[str]
    mismatched: list[str]
    extra: list[str]
    stale_pages: list[str]
    extra_pages: list[str]
    rebuild: list[str]


@router.post("/actions/{action}", response_model=ActionResult)
def act(
    action: Literal["add", "remove", "skip", "unskip", "rebuild", "yank", "unyank"],
    body: Action,
    master: MasterDep,
    _: Admin,
) -> ActionResult:
    """What ``wheelmill add|remove|skip|unskip|rebuild|yank|unyank`` does, over HTTP."""
    reason = body.reason or ""
    run = {
        "add": lambda: actions.add(master, body.spec),
        "remove": lambda: actions.remove(master, body.spec, reason),
        "skip": lambda: actions.skip(master, body.spec, reason, body.target),
        "unskip": lambda: actions.unskip(master, body.spec, body.target),
        "rebuild": lambda: actions.rebuild(master, body.spec, body.target),
        "yank": lambda: actions.yank(master, body.spec, reason),
        "unyank": lambda: actions.unyank(master, body.spec),
    }[action]
    result = run()
    return ActionResult(changed=result.changed, messages=list(result.messages))


@router.put("/files/{filename}", response_model=ActionResult, status_code=201)
async def import_file(filename: str, request: Request, master: MasterDep, _: Admin) -> ActionResult:
    """``wheelmill import`` over HTTP: the body is the wheel, checked as a builder's upload is."""
    check_filename(filename)
    limit = master.settings.max_upload_bytes
    with tempfile.TemporaryDirectory(dir=master.settings.data_dir) as scratch:
        path = Path(scratch) / filename
        with path.open("wb") as out:
            async for chunk in request.stream():
                if out.tell() + len(chunk) > limit:
                    raise UploadRefused(
                        f"{filename!r} is larger than the limit of {limit} bytes", reason="size"
                    )
                out.write(chunk)
        result = await run_in_threadpool(import_wheel, master, path)
    return ActionResult(changed=result.changed, messages=list(result.messages))


@router.post("/imports", response_model=ActionResult, status_code=201)
async def import_with_log(request: Request, master: MasterDep, _: Admin) -> ActionResult:
    """``wheelmill import WHEEL --log FILE`` over HTTP: a multipart form with a ``wheel`` file and,
    optionally, a ``log`` (file or text) shown on the imported build's log page."""
    limit = master.settings.max_upload_bytes
    async with request.form(max_files=2, max_fields=2) as form:
        wheel, log = form.get("wheel"), form.get("log")
        if not isinstance(wheel, UploadFile) or not wheel.filename:
            raise UploadRefused("send the wheel as the form's 'wheel' file", reason="no_files")
        filename = wheel.filename
        check_filename(filename)
        if wheel.size is not None and wheel.size > limit:
            raise UploadRefused(f"{filename!r} is larger than the limit of {limit} bytes", reason="size")
        log_text = (await log.read()).decode(errors="replace") if isinstance(log, UploadFile) else log
        with tempfile.TemporaryDirectory(dir=master.settings.data_dir) as scratch:
            path = Path(scratch) / filename
            with path.open("wb") as out:
                while chunk := await wheel.read(1 << 20):
                    out.write(chunk)
            result = await run_in_threadpool(import_wheel, master, path, log_text)
    return ActionResult(changed=result.changed, messages=list(result.messages))


@router.post("/audit", response_model=AuditResult)
def run_audit(master: MasterDep, _: Admin, fix: bool = False) -> AuditResult:
    """``wheelmill audit [--fix]``; hashing every wheel takes a while on a large farm."""
    found = audit(master, fix=fix)
    return AuditResult(
        missing=found.missing,
        mismatched=found.mismatched,
        extra=found.extra,
        stale_pages=found.stale_pages,
        extra_pages=found.extra_pages,
        rebuild=sorted(found.rebuild),
    )
