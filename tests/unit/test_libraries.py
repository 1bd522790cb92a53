"""System libraries of a real C-extension wheel that links libz, and of wheels that bundle it."""

from __future__ import annotations

import platform
import struct
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from wheelmill.analysis.libraries import debian_packages, elf_machine, external_sonames, needed_sonames

SETUP_PY = """\
from setuptools import setup, Extension
setup(name="zdemo", version="1.0", ext_modules=[Extension("zdemo", ["zdemo.c"], libraries=["z"])])
"""
ZDEMO_C = """\
#include <Python.h>
#include <zlib.h>
static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString(zlibVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "zdemo", NULL, -1, methods};
PyMODINIT_FUNC PyInit_zdemo(void) { return PyModule_Create(&module); }
"""
SYSTEM_LIBZ = Path("/usr/lib") / str(sysconfig.get_config_var("MULTIARCH")) / "libz.so.1"


@pytest.fixture(scope="module")
def zdemo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("zdemo")
    (project / "setup.py").write_text(SETUP_PY)
    (project / "zdemo.c").write_text(ZDEMO_C)
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--quiet", "--wheel-dir", str(out), str(project)],
        check=True,
    )  # fmt: skip
    return next(out.glob("zdemo-1.0-*.whl"))


def extension_of(wheel: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(entry for entry in archive.namelist() if entry.endswith(".so"))
        return name, archive.read(name)


@pytest.mark.slow
def test_needed_sonames_reads_dt_needed_of_each_shared_object(zdemo: Path) -> None:
    name, _ = extension_of(zdemo)

    needed = needed_sonames(zdemo)

    assert list(needed) == [name]
    assert "libz.so.1" in needed[name]


@pytest.mark.slow
def test_a_linked_system_library_is_external_and_resolves_to_its_debian_package(zdemo: Path) -> None:
    sonames = external_sonames(zdemo)

    assert sonames == ["libz.so.1"]
    assert debian_packages(sonames) == {"libz.so.1": "zlib1g"}


@pytest.mark.slow
def test_packages_of_the_base_image_are_dropped(zdemo: Path) -> None:
    assert debian_packages(external_sonames(zdemo), base_packages={"zlib1g"}) == {}


@pytest.mark.slow
def test_a_library_no_package_provides_is_reported_as_unresolved() -> None:
    assert debian_packages(["libwheelmill-absent.so.7", "libc.so.6"]) == {
        "libwheelmill-absent.so.7": None,
        "libc.so.6": "libc6",
    }


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEM_LIBZ.exists(), reason="needs the system's libz.so.1")
def test_libraries_bundled_in_the_wheel_are_not_external(zdemo: Path, tmp_path: Path) -> None:
    name, data = extension_of(zdemo)
    bundled = tmp_path / zdemo.name
    with zipfile.ZipFile(bundled, "w") as archive:
        archive.writestr(name, data)
        # As auditwheel repair does: the library in a .libs directory beside the package.
        archive.writestr("zdemo.libs/libz.so.1", SYSTEM_LIBZ.read_bytes())

    needed = needed_sonames(bundled)

    assert "libc.so.6" in needed["zdemo.libs/libz.so.1"]
    assert external_sonames(bundled) == []


def test_shared_objects_that_are_not_elf_are_skipped(tmp_path: Path) -> None:
    wheel = tmp_path / "odd-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("odd/_mach.so", b"\xcf\xfa\xed\xfe" + bytes(60))  # a Mach-O file, built on a Mac

    assert needed_sonames(wheel) == {}
    assert external_sonames(wheel) == []


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="names this machine's CPU")
def test_elf_machine_of_a_real_extension(zdemo: Path) -> None:
    assert elf_machine(extension_of(zdemo)[1]) == "x86_64"


def test_elf_machine_of_an_arm_eabi5_header() -> None:
    # The 52-byte header of a 32-bit little-endian ARM shared object, EABI version 5, hard-float.
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", 3, 40, 1, 0, 0, 0, 0x05000400, 52, 32, 0, 40, 0, 0)

    assert elf_machine(header) == "ARM EABI5"


def test_elf_machine_refuses_what_is_not_elf() -> None:
    with pytest.raises(ValueError, match="not an ELF file"):
        elf_machine(b"PK\x03\x04 a zip file")
