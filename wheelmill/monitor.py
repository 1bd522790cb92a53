"""``wheelmill monitor``: ``status`` redrawn live, with keys that steer the selected builder.

Keys: up/down (or j/k) select a builder; p pause, r resume, d drain, x kill (asks y to confirm);
q quits. A builder obeys at its next heartbeat or claim, as with ``wheelmill builders``.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from wheelmill.config import Settings
from wheelmill.db import builders as builder_sql
from wheelmill.db.engine import Database
from wheelmill.db.tables import BuilderState
from wheelmill.errors import WheelmillError
from wheelmill.status import render, take_snapshot

KEYS = {"p": BuilderState.paused, "r": BuilderState.active, "d": BuilderState.draining}
HELP = "up/down select   p pause   r resume   d drain   x kill   q quit"
_UP, _DOWN = ("\x1b[A", "k"), ("\x1b[B", "j")


def run_monitor(settings: Settings, *, refresh: float) -> int:
    if not sys.stdin.isatty():
        raise WheelmillError("monitor needs a terminal; `wheelmill status` prints the same tables once")
    db = Database(settings.resolved_database_url)
    selected: str | None = None
    message = ""
    confirming = False
    try:
        with _keys_unbuffered(), Live(console=Console(), screen=True, auto_refresh=False) as live:
            while True:
                snapshot = take_snapshot(db, settings)
                names = [row.name for row in snapshot.builders if row.state != "revoked"]
                selected = _keep_selection(names, selected)
                footer = Text(f"{HELP}\n{message}", style="dim")
                live.update(Group(render(snapshot, selected), footer), refresh=True)
                key = _read_key(refresh)
                if key == "q":
                    return 0
                if key is None or selected is None:
                    continue
                if confirming:
                    message = _steer(db, selected, BuilderState.killed) if key == "y" else "kill cancelled"
                    confirming = False
                elif key in _UP or key in _DOWN:
                    step = -1 if key in _UP else 1
                    selected = names[(names.index(selected) + step) % len(names)]
                elif key == "x":
                    message, confirming = f"kill {selected} and abort its build? y/n", True
                elif key in KEYS:
                    message = _steer(db, selected, KEYS[key])
    finally:
        db.dispose()


def _steer(db: Database, name: str, state: BuilderState) -> str:
    try:
        with db.write() as session:
            builder_sql.set_state(session, name, state)
    except WheelmillError as exc:
        return str(exc)
    return f"{name} is now {state}; it obeys at its next heartbeat or claim"


def _keep_selection(names: list[str], selected: str | None) -> str | None:
    if selected in names:
        return selected
    return names[0] if names else None


@contextmanager
def _keys_unbuffered() -> Iterator[None]:
    """Keys arrive one by one, unechoed; the terminal is restored however the monitor ends."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(timeout: float) -> str | None:
    """One key press (an arrow key's escape sequence whole), or None after ``timeout`` seconds."""
    fd = sys.stdin.fileno()
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    key = os.read(fd, 1).decode(errors="replace")
    if key == "\x1b" and select.select([fd], [], [], 0.05)[0]:
        key += os.read(fd, 2).decode(errors="replace")
    return key
