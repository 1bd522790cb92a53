"""Admin calls under ``/api/v1/admin/``, behind the admin token (``admin_token`` in the settings).

With no admin token configured the admin API is off: every call answers 403.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from wheelmill.db import builders as builder_sql
from wheelmill.db.tables import BuilderState
from wheelmill.errors import AuthError, Forbidden
from wheelmill.master.builder_api import MasterDep

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
