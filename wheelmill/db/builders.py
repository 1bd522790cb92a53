"""Builders and their tokens. Tokens are stored as sha256 hashes; the plain token is shown once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from wheelmill.db.tables import Builder, BuilderState, utcnow
from wheelmill.errors import AuthError, InvalidName, NotFound

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> str:
    """A new token for builder ``name`` (created if new; an old token is replaced)."""
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise InvalidName(f"builder name {name!r} must be 1-100 letters, digits, '-', '_' or '.'")
    token = secrets.token_urlsafe(32)
    builder = session.scalar(select(Builder).where(Builder.name == name))
    if builder is None:
        session.add(Builder(name=name, token_hash=hash_token(token)))
    else:
        builder.token_hash = hash_token(token)
        if builder.state is BuilderState.revoked:
            builder.state = BuilderState.active
    return token


def revoke_token(session: Session, name: str) -> None:
    builder = get_builder(session, name)
    builder.state = BuilderState.revoked
    builder.token_hash = hash_token(secrets.token_urlsafe(32))  # nobody holds this one


def authenticate(session: Session, token: str) -> Builder:
    builder = session.scalar(select(Builder).where(Builder.token_hash == hash_token(token)))
    if builder is None or builder.state is BuilderState.revoked:
        raise AuthError("unknown or revoked builder token")
    return builder


def get_builder(session: Session, name: str) -> Builder:
    builder = session.scalar(select(Builder).where(Builder.name == name))
    if builder is None:
        raise NotFound(f"no builder named {name!r}")
    return builder


def register(session: Session, builder: Builder, info: dict[str, Any]) -> None:
    """Record what a builder says about itself when it starts."""
    builder.target = info["target"]
    builder.os = info.get("os")
    builder.cpu = info.get("cpu")
    builder.memory_bytes = info.get("memory_bytes")
    builder.disk_free_bytes = info.get("disk_free_bytes")
    builder.versions = info.get("versions")
    builder.last_seen = utcnow()
    builder.phase = "idle"
    if builder.state is BuilderState.killed:
        builder.state = BuilderState.active  # a restarted builder starts afresh


def touch(
    session: Session,
    builder_id: int,
    *,
    phase: str | None = None,
    load: float | None = None,
    disk_free_bytes: int | None = None,
) -> BuilderState:
    """Record that a builder called, with what it reported; returns its state (one UPDATE)."""
    values: dict[str, Any] = {"last_seen": utcnow()}
    if phase is not None:
        values["phase"] = phase
    if load is not None:
        values["load"] = load
    if disk_free_bytes is not None:
        values["disk_free_bytes"] = disk_free_bytes
    builders = Builder.__table__
    state = session.connection().execute(
        update(builders).where(builders.c.id == builder_id).values(values).returning(builders.c.state)
    ).scalar_one()
    return BuilderState(state)


def set_state(session: Session, name: str, state: BuilderState) -> Builder:
    builder = get_builder(session, name)
    if builder.state is BuilderState.revoked:
        raise NotFound(f"builder {name!r} is revoked")
    builder.state = state
    return builder


def list_builders(session: Session) -> Sequence[Builder]:
    return session.scalars(select(Builder).order_by(Builder.name)).all()
