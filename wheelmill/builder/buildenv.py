"""Describe the environment a build ran in, for its record and its log page.

A wheel that fails on a user's machine is first explained by where it was built: the OS, the
compiler, the Python and the build tools. All of it is fixed for a builder's life but the Python
it was asked about, so each piece is looked up once per process.
"""

from __future__ import annotations

import functools
import platform
import subprocess

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


def describe_environment(python: str, sandbox_mode: str) -> dict[str, str]:
    """OS release, kernel, Python, pip, setuptools and compiler versions, and the sandbox mode."""
    return {**_machine(), **_python(python), "sandbox": sandbox_mode}


@functools.cache
def _machine() -> dict[str, str]:
    try:
        os_release = platform.freedesktop_os_release().get("PRETTY_NAME", UNKNOWN)
    except OSError:
        os_release = platform.platform()
    return {"os": os_release, "kernel": platform.release(), "compiler": _first_line(["gcc", "--version"])}


@functools.cache
def _python(python: str) -> dict[str, str]:
    words = _first_line([python, "-I", "-c", _VERSIONS_SCRIPT]).split()
    if len(words) != 4:
        return {"python": UNKNOWN, "pip": UNKNOWN, "setuptools": UNKNOWN}
    version, implementation, pip, setuptools = words
    return {"python": f"{implementation} {version}", "pip": pip, "setuptools": setuptools}


def _first_line(argv: list[str]) -> str:
    """The first line a command prints, or "none" when it is not installed or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "none"
    return done.stdout.partition("\n")[0].strip() or "none"
