"""Build roots: what binfmt_misc entries count as registered, and the refusals that name what is wrong.

Making a real root is the end-to-end test's job (tests/integration/test_armhf.py); these cases stop
before debootstrap or the kernel would be touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
from pathlib import Path

import pytest
from rich.console import Console

from wheelmill.builder.sandbox import SandboxUnavailable, make_sandbox
from wheelmill.rootfs import RootError
from wheelmill.rootfs.binfmt import EMULATIONS, Emulation, emulation_for, ensure_registered, registered
from wheelmill.rootfs.debootstrap import STAMP, create_or_update, read_info

ARM = EMULATIONS["armhf"]
ENTRY = "{state}\ninterpreter /usr/bin/qemu-arm-static\nflags: {flags}\noffset 0\nmagic 7f454c46\n"


@pytest.mark.parametrize(
    ("state", "flags", "counts"),
    [("enabled", "F", True), ("enabled", "OCF", True), ("enabled", "OC", False), ("disabled", "F", False)],
)
def test_only_an_enabled_entry_with_the_fix_binary_flag_counts(
    tmp_path: Path, state: str, flags: str, counts: bool
) -> None:
    """Without F the emulator's path is looked up in the build root, where it does not exist."""
    (tmp_path / "qemu-arm").write_text(ENTRY.format(state=state, flags=flags))
    assert registered(ARM, tmp_path) is counts


def test_a_missing_emulator_is_named_before_anything_is_changed(tmp_path: Path) -> None:
    missing = Emulation("qemu-wheelmill-test", "qemu-wheelmill-test-static", ARM.magic, ARM.mask)
    with pytest.raises(RootError) as raised:
        ensure_registered(missing, tmp_path)
    assert "'qemu-wheelmill-test-static' is not installed: apt-get install qemu-user-static" in str(
        raised.value
    )
    if os.geteuid() != 0:
        assert "needs root (run this with sudo)" in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # nothing mounted, nothing registered


def test_the_register_line_carries_the_fix_binary_flag() -> None:
    line = ARM.register_line("/usr/bin/qemu-arm-static")
    assert line.startswith(":qemu-arm:M::\\x7f\\x45\\x4c\\x46\\x01") and line.endswith(
        ":/usr/bin/qemu-arm-static:F"
    )


def test_unknown_architectures_are_refused() -> None:
    with pytest.raises(RootError, match=r"architecture 'mips' is not supported; choose one of \['armhf'\]"):
        emulation_for("mips")


def test_a_directory_that_is_not_a_root_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(RootError, match="neither empty nor a wheelmill build root"):
        create_or_update(tmp_path, "armhf", "bookworm", "http://deb.debian.org/debian", Console())
    assert [path.name for path in tmp_path.iterdir()] == ["precious.txt"]


def test_a_root_of_another_suite_is_not_updated_into_this_one(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    record = {"arch": "armhf", "suite": "bullseye", "mirror": "m", "packages": ["python3"], "uv": "0.1"}
    (tmp_path / STAMP).write_text(json.dumps(record))
    assert read_info(tmp_path) is not None
    with pytest.raises(RootError, match="is a armhf bullseye root, not armhf bookworm"):
        create_or_update(tmp_path, "armhf", "bookworm", "http://deb.debian.org/debian", Console())


def test_a_broken_record_is_no_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / STAMP).write_text('{"arch": "armhf"')
    assert read_info(tmp_path) is None


def test_a_builder_refuses_a_directory_that_is_no_root(tmp_path: Path) -> None:
    with pytest.raises(
        SandboxUnavailable, match=r"is not a build root \(no /usr/bin/python3\): see wheelmill builder-root"
    ):
        make_sandbox("required", root=tmp_path)
    with pytest.raises(SandboxUnavailable, match='used through bubblewrap; sandbox = "none" cannot'):
        make_sandbox("none", root=tmp_path)


def test_a_root_this_machine_cannot_run_says_what_to_register(tmp_path: Path) -> None:
    """A root whose programs are of an architecture binfmt_misc does not know (big-endian MIPS here)."""
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    mips = b"\x7fELF\x01\x02\x01\x00" + bytes(8) + struct.pack(">HHI", 2, 8, 1) + bytes(64)
    for name in ("true", "sh", "python3"):
        (tmp_path / "usr" / "bin" / name).write_bytes(mips)
        (tmp_path / "usr" / "bin" / name).chmod(0o755)
    with pytest.raises(SandboxUnavailable) as raised:
        make_sandbox("required", root=tmp_path)
    assert "Exec format error" in str(raised.value)
    assert "not registered with binfmt_misc; `sudo wheelmill builder-root create` registers" in str(
        raised.value
    )


def test_a_root_being_made_is_not_made_twice_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with (tmp_path / ".root.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RootError, match="another builder-root create is working on"):
            create_or_update(root, "armhf", "bookworm", "http://deb.debian.org/debian", Console())
    assert not root.exists()
