"""Make or update a minimal Debian root of another architecture for builds: debootstrap under qemu-user.

A new root is made in two stages: debootstrap downloads and unpacks the packages here (``--foreign``),
then runs their maintainer scripts inside the root, where every program is an ARM one run by qemu.
The root gets only what a build needs (minbase, Python with its headers, pip, gcc) and the ``uv``
this builder uses, for that architecture. A root that exists is updated in place (apt-get upgrade),
and one whose second stage was interrupted is finished, so running the command again is always safe.

``etc/wheelmill-root.json`` in the root records what it was made as; the builder reads it back.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from wheelmill.rootfs import RootError
from wheelmill.rootfs.binfmt import EMULATIONS, emulation_for, ensure_registered

MIRROR = "http://deb.debian.org/debian"
# What a build needs, no more: the root is made on every fresh CI machine and each package costs
# time under emulation (byte-compiling Python modules above all).
PACKAGES = ("python3", "python3-dev", "python3-pip", "gcc", "libc6-dev", "ca-certificates")
STAMP = "etc/wheelmill-root.json"
UV_PATH = "usr/local/bin/uv"
# Debian architecture -> the platform tag of the uv wheel that runs there.
UV_PLATFORMS = {"armhf": "manylinux2014_armv7l"}
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RootInfo:
    """What a root was made as; written to its STAMP after every successful create or update."""

    arch: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    uv: str  # the uv version installed in the root: the builder's own


def read_info(root: Path) -> RootInfo | None:
    """The root's record, or None when ``root`` is not a finished wheelmill root."""
    try:
        data = json.loads((root / STAMP).read_text())
        return RootInfo(**{**data, "packages": tuple(data["packages"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def create_or_update(root: Path, arch: str, suite: str, mirror: str, console: Console) -> str:
    """Make the root at ``root``, or bring an existing one up to date; returns "created" or "updated".

    One run at a time per root: a second one would unpack over the first's half-made root.
    """
    emulation_for(arch)  # an unknown architecture is refused before anything is touched
    root = root.resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RootError(f"another builder-root create is working on {str(root)!r}") from None
        try:
            return _create_or_update(root, arch, suite, mirror, console)
        finally:
            _unmount_inside(root)


def _create_or_update(root: Path, arch: str, suite: str, mirror: str, console: Console) -> str:
    info = read_info(root)
    if info is not None and (info.arch, info.suite) != (arch, suite):
        raise RootError(f"{str(root)!r} is a {info.arch} {info.suite} root, not {arch} {suite}")
    half_made = info is None and (root / "debootstrap" / "debootstrap").exists()
    if info is None and not half_made and root.exists() and any(root.iterdir()):
        raise RootError(
            f"{str(root)!r} is neither empty nor a wheelmill build root; choose another directory"
        )
    _check_tools()
    ensure_registered(EMULATIONS[arch])
    wanted = RootInfo(arch, suite, mirror, PACKAGES, importlib.metadata.version("uv"))
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        if info is None:
            steps = progress.add_task("debootstrap", total=4)
            if half_made:
                progress.advance(steps)
            else:
                _run(progress, steps, "first stage: download and unpack", _first_stage(root, wanted))
            _lean_dpkg(root)
            _run(progress, steps, "second stage: configure under qemu", _in_root(root, _SECOND_STAGE))
        else:
            steps = progress.add_task("update", total=len(_UPDATE) + 2)
            _copy_resolv_conf(root)
            for what, argv in _UPDATE:
                _run(progress, steps, what, _in_root(root, argv))
        progress.update(steps, description=f"uv {wanted.uv} for {arch}")
        _install_uv(root, wanted, info)
        progress.advance(steps)
        (root / STAMP).write_text(json.dumps(asdict(wanted), indent=2) + "\n")
        progress.advance(steps)
    return "created" if info is None else "updated"


_SECOND_STAGE = ["/debootstrap/debootstrap", "--second-stage"]
_APT_GET = ["apt-get", "-q", "-y", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"]
# An update: the suite's fixes, and the packages this version of wheelmill wants, then a clean cache.
_UPDATE = (
    ("apt-get update", [*_APT_GET, "update"]),
    ("apt-get upgrade", [*_APT_GET, "dist-upgrade"]),
    ("apt-get install", [*_APT_GET, "install", *PACKAGES]),
    ("apt-get clean", [*_APT_GET, "clean"]),
)


def _check_tools() -> None:
    """Everything missing at once: root, debootstrap, and bubblewrap, which builds will need."""
    problems = []
    if os.geteuid() != 0:
        problems.append("debootstrap and binfmt_misc need root: run this with sudo")
    for program, package in (("debootstrap", "debootstrap"), ("bwrap", "bubblewrap")):
        if shutil.which(program) is None:
            problems.append(f"{program!r} is not installed: apt-get install {package}")
    if problems:
        raise RootError("cannot make a build root here:\n  " + "\n  ".join(problems))


def _first_stage(root: Path, info: RootInfo) -> list[str]:
    return [
        "debootstrap", "--foreign", "--variant=minbase", f"--arch={info.arch}",
        f"--include={','.join(info.packages)}", info.suite, str(root), info.mirror,
    ]  # fmt: skip


def _in_root(root: Path, argv: list[str]) -> list[str]:
    """argv run as root in ``root`` (chroot, as debootstrap itself does), with a clean environment."""
    return [
        "chroot", str(root), "/usr/bin/env", "-i", f"PATH={ROOT_PATH}", "DEBIAN_FRONTEND=noninteractive",
        "LANG=C.UTF-8", *argv,
    ]  # fmt: skip


def _unmount_inside(root: Path) -> None:
    """Unmount what the second stage left mounted in the root (its /proc and /sys when it fails), so
    that nothing reaches this machine's own through the root, and removing the root is safe."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    inside = [point for point in mounts if Path(point).is_relative_to(root) and Path(point) != root]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _lean_dpkg(root: Path) -> None:
    """dpkg in the root skips fsync and leaves out documentation: under emulation every file costs.

    Written after the first stage, so the second stage (which installs everything again) obeys it.
    """
    settings = root / "etc" / "dpkg" / "dpkg.cfg.d" / "wheelmill"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        "force-unsafe-io\n"
        + "".join(f"path-exclude=/usr/share/{name}/*\n" for name in ("doc", "man", "info", "locale"))
    )


def _copy_resolv_conf(root: Path) -> None:
    """apt in the root resolves names as this machine does (debootstrap copies it on the first stage)."""
    with_resolver = Path("/etc/resolv.conf")
    if with_resolver.exists():
        target = root / "etc" / "resolv.conf"
        target.unlink(missing_ok=True)
        shutil.copyfile(with_resolver, target)


def _run(progress: Progress, task: TaskID, what: str, argv: list[str]) -> None:
    """Run one step, its latest output line beside the bar; on failure, raise with its last lines."""
    progress.update(task, description=what)
    tail: deque[str] = deque(maxlen=30)
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace",
    )  # fmt: skip
    assert process.stdout is not None
    with process:
        for line in process.stdout:
            tail.append(line.rstrip())
            progress.update(task, description=f"{what}: {line.strip()[:60]}")
    if process.returncode != 0:
        raise RootError(f"{what} failed (exit {process.returncode}):\n" + "\n".join(tail))
    progress.update(task, description=what)
    progress.advance(task)


def _install_uv(root: Path, wanted: RootInfo, had: RootInfo | None) -> None:
    """Put the builder's own uv version, built for the root's architecture, at /usr/local/bin/uv.

    pip on this machine fetches the wheel (through its configured indexes); running pip in the root
    under emulation would take a minute for the same file.
    """
    target = root / UV_PATH
    if had is not None and had.uv == wanted.uv and target.exists():
        return
    platform = UV_PLATFORMS[wanted.arch]
    with tempfile.TemporaryDirectory(prefix="wheelmill-uv-") as scratch:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--platform", platform, "--dest", scratch, f"uv=={wanted.uv}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wheels = list(Path(scratch).glob("uv-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RootError(f"could not fetch uv {wanted.uv} for {platform}: {done.stderr.strip()[-1500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = f"uv-{wanted.uv}.data/scripts/uv"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(member))
    target.chmod(0o755)
