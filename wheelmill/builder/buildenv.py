"""Describe the environment a build ran in, for its record and its log page.

A wheel that fails on a user's machine is first explained by where it was built: the OS, the
compiler, the Python and the build tools. All of it is fixed for a builder's life but the Python
it was asked about, so each piece is looked up once per process. A builder with a build root
describes the root: its OS release, its compiler and Python, asked inside the sandbox.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

from wheelmill.builder.sandbox import Sandbox, SandboxUnavailable, make_sandbox

UNKNOWN = "unknown"
# Run with `python -I`: only the interpreter's own installation counts, not the builder's env.
_VERSIONS_SCRIPT = """
import importlib.metadata as m, platform
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "none"
print(platform.python_version(), platform.python_implementation(), version("pip"), version("setuptools"))
"""


def describe_environment(python: str, sandbox: Sandbox) -> dict[str, str]:
    """OS release, kernel, Python, pip, setuptools and compiler versions, and the sandbox mode."""
    machine = _root_machine(sandbox.root) if sandbox.root else _host_machine()
    return {**machine, **_python(python, sandbox.root), "sandbox": sandbox.mode}


@functools.cache
def _host_machine() -> dict[str, str]:
    try:
        os_release = platform.freedesktop_os_release().get("PRETTY_NAME", UNKNOWN)
    except OSError:
        os_release = platform.platform()
    return {"os": os_release, "kernel": platform.release(), "compiler": _first_line(["gcc", "--version"])}


@functools.cache
def _root_machine(root: Path) -> dict[str, str]:
    release = _os_release(root / "etc" / "os-release")
    return {"os": release, "kernel": platform.release(), "compiler": _first_line(["gcc", "--version"], root)}


def _os_release(path: Path) -> str:
    """PRETTY_NAME from an os-release file (platform.freedesktop_os_release reads only this machine's)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return UNKNOWN
    for line in lines:
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"') or UNKNOWN
    return UNKNOWN


@functools.cache
def _python(python: str, root: Path | None) -> dict[str, str]:
    words = _first_line([python, "-I", "-c", _VERSIONS_SCRIPT], root).split()
    if len(words) != 4:
        return {"python": UNKNOWN, "pip": UNKNOWN, "setuptools": UNKNOWN}
    version, implementation, pip, setuptools = words
    return {"python": f"{implementation} {version}", "pip": pip, "setuptools": setuptools}


def _first_line(argv: list[str], root: Path | None = None) -> str:
    """The first line a command prints (here, or in a build root's sandbox), or "none" when it fails."""
    try:
        if root is None:
            output = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
        else:
            output = make_sandbox("required", root=root).output(argv)
    except (OSError, subprocess.SubprocessError, SandboxUnavailable):
        return "none"
    return output.partition("\n")[0].strip() or "none"
