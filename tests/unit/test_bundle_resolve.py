"""Resolving for a target: requirement lines checked, and a universal resolution cut to the target."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from wheelmill.bundle.errors import InvalidRequirements, UnknownTarget, Unresolvable
from wheelmill.bundle.resolve import Indexes, marker_environment, parse_requirements, read_lock, resolve
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream

ARMV7 = Target.parse("cp311-cp311-linux_armv7l")


def test_requirements_keep_names_specifiers_extras_and_markers() -> None:
    text = "# tools\nrequests[socks]>=2  # comment\n\nnumpy ; python_version >= '3.9'\n"
    assert [str(r) for r in parse_requirements(text)] == [
        "requests[socks]>=2",
        'numpy; python_version >= "3.9"',
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-r other.txt", "requirements, line 2: '-r other.txt': options are not accepted"),
        ("--index-url https://evil.example/", "line 2: '--index-url https://evil.example/': options"),
        ("pkg @ https://example.org/pkg.whl", "line 2: 'pkg @ https://example.org/pkg.whl': a URL or path"),
        ("numpy==", "requirements, line 2: 'numpy=='"),
    ],
)
def test_a_line_the_farm_cannot_bundle_is_named(line: str, message: str) -> None:
    with pytest.raises(InvalidRequirements, match=message.replace("[", r"\[")):
        parse_requirements(f"six\n{line}\n")


def test_no_requirements_is_an_error() -> None:
    with pytest.raises(InvalidRequirements, match="no requirement given"):
        parse_requirements("# nothing\n\n")


def test_the_marker_environment_is_the_targets_not_this_machines() -> None:
    environment = marker_environment(ARMV7)
    assert environment["platform_machine"] == "armv7l"
    assert environment["sys_platform"] == "linux"
    assert environment["python_version"] == "3.11"
    with pytest.raises(UnknownTarget, match="'win_amd64'"):
        marker_environment(Target.parse("cp311-cp311-win_amd64"))


def test_a_universal_lock_is_cut_to_the_targets_pins() -> None:
    lock = """
lock-version = "1.0"
[[packages]]
name = "Alpha"
version = "1.0"
[[packages.wheels]]
url = "http://farm/files/alpha/alpha-1.0-cp311-cp311-linux_armv7l.whl"
size = 3
hashes = { sha256 = "ab" }
[[packages]]
name = "numpy"
version = "1.26.4"
marker = "python_full_version < '3.12'"
[[packages]]
name = "numpy"
version = "2.1.0"
marker = "python_full_version >= '3.12'"
[[packages]]
name = "pywin32"
version = "306"
marker = "sys_platform == 'win32'"
"""
    pins = read_lock(lock, marker_environment(ARMV7))
    assert [(pin.name, pin.version) for pin in pins] == [("alpha", "1.0"), ("numpy", "1.26.4")]
    assert pins[0].wheels[0].filename == "alpha-1.0-cp311-cp311-linux_armv7l.whl"


@pytest.mark.slow
def test_uv_resolves_for_an_arm_target_on_this_machine(tmp_path: Path) -> None:
    with StandInUpstream() as index:
        index.add_release(
            "app",
            "1.0",
            dependencies=[
                'pi-only; platform_machine == "armv7l"',
                'pc-only; platform_machine == "x86_64"',
                "lib",
            ],
        )
        for name in ("pi-only", "pc-only"):
            index.add_release(name, "1.0")
        index.add_release("lib", "1.0")
        index.add_release("lib", "2.0")
        indexes = Indexes(farm=index.simple_url, upstream=index.simple_url)

        pins = resolve(parse_requirements("app\n"), ARMV7, {"lib": Version("1.0")}, indexes, tmp_path, "auto")

        assert sorted((pin.name, pin.version) for pin in pins) == [
            ("app", "1.0"),
            ("lib", "1.0"),
            ("pi-only", "1.0"),
        ]
        with pytest.raises(Unresolvable, match="you require lib>=3"):
            resolve(parse_requirements("lib>=3\n"), ARMV7, {}, indexes, tmp_path, "auto")
