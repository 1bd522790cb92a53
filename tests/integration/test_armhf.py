"""Raspberry Pi wheels for real: a farm with a host builder and an armv7l builder in an armhf root
(debootstrap, run by qemu-user) builds a C extension for both; pip fetches the ARM wheel.

The root is made once by ``wheelmill builder-root create`` under the test cache and reused while its
record says it is a finished armhf bookworm root with this uv; making it needs root (debootstrap).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import WHEELHOUSE
from tests.farm import Farm, wait_until
from tests.helpers import client_env
from wheelmill.analysis.libraries import debian_packages
from wheelmill.builder.sandbox import ROOT_PYTHON, make_sandbox
from wheelmill.rootfs.debootstrap import read_info
from wheelmill.targets import Target
from wheelmill.testing import StandInUpstream

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = WHEELHOUSE / "armhf-root"
V7 = "cp311-cp311-linux_armv7l"
ARMV6_CFLAGS = ["-O2", "-march=armv6", "-mfpu=vfp", "-mfloat-abi=hard", "-marm"]
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def armhf_root() -> Path:
    """The cached root if it is finished and current, else made (or its interrupted making finished).

    xdist may run this module's tests on two workers at once: the first makes the root, the other
    waits for it on a lock, then finds it made.
    """
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    with (WHEELHOUSE / "armhf-root.fixture-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = read_info(ROOT)
        if info is None or (info.arch, info.suite, info.uv) != ("armhf", "bookworm", version("uv")):
            create = ["builder-root", "create", "--arch", "armhf", str(ROOT)]
            sudo = [] if os.geteuid() == 0 else ["sudo", "-n", "--preserve-env=PATH"]  # as .ci/run installs
            subprocess.run([*sudo, sys.executable, "-m", "wheelmill", *create], check=True)
    return ROOT


def test_libraries_resolve_to_the_roots_packages_not_the_hosts(armhf_root: Path) -> None:
    """An armv7l wheel's apt line comes from the root's dpkg: what a Pi user installs."""
    sonames = ["libz.so.1", "libxml2.so.2"]  # libxml2: on this machine, not in the minimal root
    assert debian_packages(sonames) == {"libz.so.1": "zlib1g", "libxml2.so.2": "libxml2"}

    assert debian_packages(sonames, root=armhf_root) == {"libz.so.1": "zlib1g", "libxml2.so.2": None}
    assert debian_packages(sonames, base_packages={"zlib1g"}, root=armhf_root) == {"libxml2.so.2": None}


def so_headers(wheel: bytes) -> list[tuple[int, str, int]]:
    """(ELF class bits, machine, EABI version) of each shared object in a wheel."""
    found = []
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                elf = ELFFile(io.BytesIO(archive.read(name)))
                found.append((elf.elfclass, elf.header.e_machine, elf.header.e_flags >> 24))
    return found


def test_the_root_runs_arm_programs_inside_the_same_sandbox(armhf_root: Path) -> None:
    """As the sandbox's user, with none of this machine's private files and no network."""
    script = (
        "import os, platform, socket\n"
        "print(platform.machine(), os.getuid(), os.path.exists('/root/.cache'), os.path.exists('/work'))\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n    print('network')\n"
        "except OSError:\n    print('no-network')\n"
    )
    output = make_sandbox("required", root=armhf_root).output([ROOT_PYTHON, "-I", "-c", script])
    assert output.split() == ["armv7l", "1000", "False", "False", "no-network"]


def test_a_farm_builds_a_c_extension_for_the_host_and_for_armv7l(
    upstream: StandInUpstream, tmp_path: Path, armhf_root: Path
) -> None:
    host = str(Target.host())
    upstream.add_release("democ", "1.0", kind="cext")
    farm = Farm(
        tmp_path, upstream.simple_url, watch=["democ"], targets=[host, V7], target_cflags={V7: ARMV6_CFLAGS}
    )
    index = httpx.Client(base_url=farm.url, timeout=30)
    try:
        master = farm.serve()
        builders = [farm.builder("host-1"), farm.builder("pi-1", options=["--root", str(armhf_root)])]
        wanted = {f"democ-1.0-{host}.whl", f"democ-1.0-{V7}.whl", "democ-1.0-cp311-cp311-linux_armv6l.whl"}

        def listed() -> set[str]:
            page = index.get("/simple/democ/", headers=JSON)
            return {entry["filename"] for entry in page.json()["files"]} if page.status_code == 200 else set()

        wait_until(
            lambda: wanted <= listed(), "both wheels and the armv6l alias", master, *builders, timeout=900
        )

        # The armv7l builder claimed the root's target, which it learnt from the root's interpreter.
        assert sorted(farm.query("SELECT name, target FROM builders")) == [("host-1", host), ("pi-1", V7)]
        arm = index.get(f"/files/democ/democ-1.0-{V7}.whl").content
        assert so_headers(arm) == [(32, "EM_ARM", 5)]  # ARM, EABI5
        assert so_headers(index.get(f"/files/democ/democ-1.0-{host}.whl").content)[0][1] != "EM_ARM"

        # The alias is the same file under the armv6l name: one inode.
        files = tmp_path / "data" / "www" / "files" / "democ"
        assert os.path.samefile(
            files / f"democ-1.0-{V7}.whl", files / "democ-1.0-cp311-cp311-linux_armv6l.whl"
        )

        # The ARM build used the target's ARMv6 flags and says so: the target, the build's record, its log.
        assert farm.query(f"SELECT cflags FROM targets WHERE tag = '{V7}'") == [(" ".join(ARMV6_CFLAGS),)]
        [(environment, build_id)] = farm.query(
            "SELECT b.environment, b.id FROM builds b JOIN jobs j ON j.id = b.job_id "
            f"JOIN targets t ON t.id = j.target_id WHERE t.tag = '{V7}'"
        )
        environment = json.loads(environment) if isinstance(environment, str) else environment
        assert environment["cflags"] == " ".join(ARMV6_CFLAGS)
        assert (
            environment["os"].startswith("Debian GNU/Linux 12") and environment["python"] == "CPython 3.11.2"
        )
        log_page = index.get(f"/logs/{build_id}/")
        assert "-march=armv6" in log_page.text and "smoke test passed" in log_page.text

        # pip on any machine fetches the armv7l wheel for a Pi.
        downloads = tmp_path / "downloads"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--platform", "linux_armv7l", "--python-version", "3.11", "--implementation", "cp",
             "--index-url", f"{farm.url}/simple/", "--dest", str(downloads), "democ"],
            check=True, env=client_env(),
        )  # fmt: skip
        assert [path.name for path in downloads.iterdir()] == [f"democ-1.0-{V7}.whl"]
        assert (downloads / f"democ-1.0-{V7}.whl").read_bytes() == arm
    finally:
        index.close()
        farm.close()
