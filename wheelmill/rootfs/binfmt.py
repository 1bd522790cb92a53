"""Let this machine run another architecture's programs: binfmt_misc hands their ELF files to qemu-user.

The entry is registered with the F (fix binary) flag: the kernel opens the emulator once, at
registration, so it also runs programs inside a build root or sandbox where its path does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wheelmill.rootfs import RootError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Emulation:
    """How the kernel recognises one architecture's ELF programs, and the qemu-user that runs them."""

    name: str  # the binfmt_misc entry, e.g. qemu-arm
    emulator: str  # the static qemu-user program, found on PATH
    magic: str  # the ELF header bytes to match, as binfmt_misc's \\x escapes
    mask: str

    def register_line(self, emulator_path: str) -> str:
        return f":{self.name}:M::{self.magic}:{self.mask}:{emulator_path}:F"


# Debian architecture -> its emulation. The magic is a 32-bit little-endian ELF executable or shared
# object (e_type 2 or 3, masked) for machine 40, ARM: the values qemu-user-static ships in binfmt.d.
EMULATIONS = {
    "armhf": Emulation(
        name="qemu-arm",
        emulator="qemu-arm-static",
        magic=r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask=r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
}


def emulation_for(arch: str) -> Emulation:
    try:
        return EMULATIONS[arch]
    except KeyError:
        raise RootError(
            f"architecture {arch!r} is not supported; choose one of {sorted(EMULATIONS)}"
        ) from None


def registered(emulation: Emulation, binfmt_dir: Path = BINFMT_DIR) -> bool:
    """Whether the kernel runs this architecture's programs anywhere: enabled, with the F flag."""
    try:
        entry = (binfmt_dir / emulation.name).read_text().splitlines()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1] for line in entry if line.startswith("flags:")), "")
    return "enabled" in entry and "F" in flags


def ensure_registered(emulation: Emulation, binfmt_dir: Path = BINFMT_DIR) -> bool:
    """Register the emulation unless it already is (mounting binfmt_misc first); True if it registered.

    An entry of the same name without the F flag (registered by hand, say) is replaced: without F
    the emulator cannot be found inside a root.
    """
    if registered(emulation, binfmt_dir):
        return False
    problems = []
    if os.geteuid() != 0:
        problems.append(f"registering {emulation.name} with binfmt_misc needs root (run this with sudo)")
    emulator = shutil.which(emulation.emulator)
    if emulator is None:
        problems.append(
            f"{emulation.emulator!r} is not installed: apt-get install qemu-user-static (it runs "
            f"{emulation.name.removeprefix('qemu-')} programs on this machine)"
        )
    if problems:
        raise RootError(
            f"{emulation.name} is not registered with binfmt_misc, and cannot be: " + "; ".join(problems)
        )
    assert emulator is not None
    if not (binfmt_dir / "register").exists():
        _mount(binfmt_dir)
    if (binfmt_dir / emulation.name).exists():
        (binfmt_dir / emulation.name).write_text("-1")  # remove the entry that lacks F
    try:
        (binfmt_dir / "register").write_text(emulation.register_line(emulator))
    except OSError as exc:
        raise RootError(f"the kernel refused to register {emulation.name} with binfmt_misc: {exc}") from exc
    return True


def _mount(binfmt_dir: Path) -> None:
    done = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not (binfmt_dir / "register").exists():
        raise RootError(
            f"binfmt_misc is not mounted on {binfmt_dir} and mounting it failed: {done.stderr.strip()!r} "
            "(does the kernel have CONFIG_BINFMT_MISC?)"
        )
