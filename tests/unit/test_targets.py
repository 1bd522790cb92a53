"""Targets and what they can install."""

import subprocess
import sys

import pytest
from packaging.utils import parse_wheel_filename

from wheelmill.errors import InvalidTarget
from wheelmill.targets import TARGET_PROBE, Target

ARMV7 = Target.parse("cp311-cp311-linux_armv7l")


def tags(filename: str):  # type: ignore[no-untyped-def]
    return parse_wheel_filename(filename)[3]


@pytest.mark.parametrize(
    ("filename", "installable"),
    [
        ("a-1-cp311-cp311-linux_armv7l.whl", True),
        ("a-1-py3-none-any.whl", True),
        ("a-1-cp39-abi3-linux_armv7l.whl", True),
        ("a-1-cp311-cp311-manylinux_2_17_armv7l.manylinux2014_armv7l.whl", True),
        ("a-1-cp311-cp311-manylinux_2_39_armv7l.whl", False),  # newer glibc than bookworm's
        ("a-1-cp311-cp311-linux_aarch64.whl", False),
        ("a-1-cp312-cp312-linux_armv7l.whl", False),
        ("a-1-cp311-cp311-musllinux_1_2_armv7l.whl", False),
    ],
)
def test_installable_wheels(filename: str, installable: bool) -> None:
    assert ARMV7.can_install(tags(filename)) is installable


def test_host_target_is_what_setuptools_builds_here() -> None:
    host = Target.host()
    assert str(host).startswith("cp3")
    assert host.platform.startswith("linux_")


@pytest.mark.parametrize("text", ["", "cp311", "cp311-cp311", "py3-none-any-x", "pyxy-cp311-linux_x86_64"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(InvalidTarget):
        Target.parse(text)


def test_another_interpreter_reports_its_target_as_host_would() -> None:
    """The probe a builder runs in a build root's interpreter gives this machine's target here."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", TARGET_PROBE], capture_output=True, text=True, check=True
    )
    assert Target.from_probe("some noise\n" + done.stdout) == Target.host()


def test_a_probe_that_says_nothing_is_an_error() -> None:
    with pytest.raises(InvalidTarget, match=r"did not say its target.*Exec format error"):
        Target.from_probe("bwrap: execvp /usr/bin/python3: Exec format error\n")
