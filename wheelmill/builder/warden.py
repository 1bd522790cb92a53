"""Between the builder and bubblewrap: end the sandbox when the builder dies, however early.

Usage: python -I -S warden.py LIFELINE_FD -- bwrap ARGS...

The launcher inside the sandbox ends the build once the builder is gone (launcher.py), but only
once it runs. Before that, bubblewrap's sandbox init waits for its outer process's go-ahead, and a
builder killed in that window took the outer process with it (its parent-death signal) and left
the init waiting, parented to the host's init, for good. This warden is the sandbox's parent
instead of the builder, and a child subreaper: a sandbox init orphaned by its outer process is
reparented here, not to the host's init, and killed.

The warden watches the same lifeline as the launcher (end of file: the builder is gone) and then
kills bubblewrap and whatever was orphaned to it. It exits as bubblewrap did, a signal included,
so the builder reads the build's end as if it had started bubblewrap itself. It keeps the build
log's pipe open until then: the builder, which kills the process group once the log ends, must
not cut the warden's cleanup short. A kill of that group reaches warden and bubblewrap alike.

Standard library only, with ``-S``: it starts before every sandboxed build.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
POLL_SECONDS = 0.05


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _children() -> list[int]:
    """This process's children, orphans reparented to it included (the /proc scan needs no
    kernel option, unlike /proc/PID/task/TID/children)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def _kill_all_children() -> None:
    """Kill every child, orphans included, and reap them all."""
    while True:
        for pid in _children():
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _builder_gone(lifeline: int, wait_seconds: float) -> bool:
    """End of file on the lifeline: the builder holds its only write end and never writes."""
    ready, _, _ = select.select([lifeline], [], [], wait_seconds)
    return bool(ready) and os.read(lifeline, 1) == b""


def _exit_like(status: int) -> None:
    """Leave as the sandbox did: its exit code, or the signal that ended it."""
    if os.WIFSIGNALED(status):
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    lifeline, separator, command = int(argv[1]), argv[2], argv[3:]
    if separator != "--" or not command:
        sys.exit("usage: warden.py LIFELINE_FD -- COMMAND...")
    _become_subreaper()
    if _builder_gone(lifeline, 0):
        sys.exit(1)  # killed while this started: no sandbox at all
    sandbox = os.posix_spawnp(command[0], command, os.environ)  # the lifeline is inherited: not CLOEXEC
    status = _wait_for(sandbox, lifeline)
    _kill_all_children()
    _exit_like(status)


def _wait_for(sandbox: int, lifeline: int) -> int:
    """The sandbox's wait status once it ends; killed first if the builder goes meanwhile."""
    while True:
        pid, status = os.waitpid(sandbox, os.WNOHANG)
        if pid:
            return status
        if _builder_gone(lifeline, POLL_SECONDS):
            os.kill(sandbox, signal.SIGKILL)
            return os.waitpid(sandbox, 0)[1]


if __name__ == "__main__":
    main(sys.argv)
