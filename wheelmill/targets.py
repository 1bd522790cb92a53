"""Targets: what a builder produces, as a Python tag, an ABI tag and a platform tag."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from functools import cached_property

from packaging import tags
from packaging.tags import Tag

from wheelmill.errors import InvalidTarget


@dataclass(frozen=True)
class Target:
    """One build target, e.g. ``cp311-cp311-linux_armv7l``."""

    interpreter: str  # e.g. cp311
    abi: str  # e.g. cp311
    platform: str  # e.g. linux_armv7l

    @classmethod
    def parse(cls, text: str) -> Target:
        parts = text.strip().split("-")
        if len(parts) != 3 or not all(parts):
            raise InvalidTarget(f"target {text!r} is not PYTHON-ABI-PLATFORM, e.g. cp311-cp311-linux_x86_64")
        interpreter, abi, platform = parts
        if not interpreter.startswith("cp") or not interpreter[2:].isdigit() or len(interpreter) < 4:
            raise InvalidTarget(f"target {text!r}: interpreter {interpreter!r} is not cpXY")
        return cls(interpreter, abi, platform)

    @classmethod
    def from_probe(cls, output: str) -> Target:
        """The target of an interpreter that ran ``TARGET_PROBE`` (a build root's, under emulation)."""
        lines = [line for line in output.splitlines() if line.startswith("wheelmill-target ")]
        if not lines:
            raise InvalidTarget(f"the interpreter did not say its target; it printed {output[-500:]!r}")
        return cls.parse(lines[-1].removeprefix("wheelmill-target "))

    @classmethod
    def host(cls) -> Target:
        """The target the running interpreter builds for (its most specific platform tag)."""
        best = next(iter(tags.sys_tags()))
        interpreter = f"cp{sys.version_info.major}{sys.version_info.minor}"
        abi = best.abi if best.abi.startswith("cp") else interpreter
        # The platform tag setuptools writes into a wheel it builds here, not manylinux.
        return cls(interpreter, abi, _build_platform())

    def __str__(self) -> str:
        return f"{self.interpreter}-{self.abi}-{self.platform}"

    @property
    def python_version(self) -> tuple[int, int]:
        digits = self.interpreter[2:]
        return int(digits[0]), int(digits[1:])

    @property
    def python_version_text(self) -> str:
        major, minor = self.python_version
        return f"{major}.{minor}"

    @cached_property
    def supported_tags(self) -> frozenset[Tag]:
        """Every wheel tag an interpreter of this target can install."""
        version = self.python_version
        platforms = [*_manylinux_platforms(self.platform), self.platform]
        found = set(tags.cpython_tags(version, abis=[self.abi], platforms=platforms))
        found.update(tags.compatible_tags(version, self.interpreter, platforms))
        return frozenset(found)

    def can_install(self, wheel_tags: frozenset[Tag] | set[Tag]) -> bool:
        return not self.supported_tags.isdisjoint(wheel_tags)


# Runs in another interpreter (any CPython 3, no packaging there) to learn its target as host() would:
# cpXY, the ABI with its debug and free-threading flags, and the platform setuptools writes in wheels.
TARGET_PROBE = """
import sys, sysconfig
version = "%d%d" % sys.version_info[:2]
debug = "d" if hasattr(sys, "gettotalrefcount") else ""
threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
print("wheelmill-target cp%s-cp%s%s%s-%s" % (version, version, debug, threaded, platform))
"""
# The C library a linux_* target is assumed to have: Debian bookworm's (Raspberry Pi OS 12).
# A manylinux wheel upstream built for an older glibc installs there, so it covers the target.
TARGET_GLIBC = (2, 36)
# The pre-PEP 600 names (glibc 2.17, 2.12, 2.5) and the architectures each was defined for.
_LEGACY_MANYLINUX = {
    "manylinux2014": {"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"},
    "manylinux2010": {"x86_64", "i686"},
    "manylinux1": {"x86_64", "i686"},
}


def _manylinux_platforms(platform: str) -> list[str]:
    """manylinux tags a glibc ``linux_ARCH`` platform can install, newest first."""
    if not platform.startswith("linux_"):
        return []
    arch = platform.removeprefix("linux_")
    major, newest = TARGET_GLIBC
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 4, -1)]
    tags += [f"{legacy}_{arch}" for legacy, arches in _LEGACY_MANYLINUX.items() if arch in arches]
    return tags


def _build_platform() -> str:
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")
