"""The smoke test on real wheels: one that imports, and one whose shared library is missing at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from wheelmill.builder.building import _readonly_paths
from wheelmill.builder.sandbox import make_sandbox
from wheelmill.builder.smoke import smoke_test

pytestmark = pytest.mark.slow

SETUP = """
from setuptools import Extension, setup
setup(name="{name}", version="1.0", packages=["{name}"],
      ext_modules=[Extension("{name}._native", ["native.c"], libraries={libraries!r}, library_dirs={dirs!r})])
"""
NATIVE = """
#include <Python.h>
{declare}
static PyObject *answer(PyObject *self, PyObject *args) {{ return PyLong_FromLong({call}); }}
static PyMethodDef methods[] = {{{{"answer", answer, METH_NOARGS, ""}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods}};
PyMODINIT_FUNC PyInit__native(void) {{ return PyModule_Create(&module); }}
"""


def build_wheel(tmp: Path, name: str, *, link_private_library: bool) -> Path:
    source = tmp / name
    (source / name).mkdir(parents=True)
    (source / name / "__init__.py").write_text("from ._native import answer\n")
    libraries, dirs, declare, call = [], [], "", "42"
    if link_private_library:  # a library present when building, absent when importing
        private = tmp / "private"
        private.mkdir()
        (private / "wmx.c").write_text("int wmx_answer(void) { return 42; }\n")
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(private / "libwmx.so"), str(private / "wmx.c")], check=True
        )
        libraries, dirs, declare, call = ["wmx"], [str(private)], "int wmx_answer(void);", "wmx_answer()"
    (source / "setup.py").write_text(SETUP.format(name=name, libraries=libraries, dirs=dirs))
    (source / "native.c").write_text(NATIVE.format(declare=declare, call=call))
    out = tmp / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
    )
    return next(out.glob(f"{name}-*.whl"))


def test_a_working_wheel_passes_and_a_missing_library_is_caught(tmp_path: Path) -> None:
    sandbox = make_sandbox("auto")
    paths = _readonly_paths(sys.executable, find_uv_bin())
    good = build_wheel(tmp_path / "a", "goodpkg", link_private_library=False)
    result = smoke_test(good, tmp_path / "work-a", sandbox, sys.executable, readonly_paths=paths)
    assert result.passed and result.modules == ("goodpkg",)

    broken = build_wheel(tmp_path / "b", "brokenpkg", link_private_library=True)
    result = smoke_test(broken, tmp_path / "work-b", sandbox, sys.executable, readonly_paths=paths)
    assert not result.passed
    assert "libwmx.so: cannot open shared object file" in (result.error or "")

    named = smoke_test(
        good,
        tmp_path / "work-c",
        sandbox,
        sys.executable,
        readonly_paths=paths,
        modules=("goodpkg", "goodpkg._native"),
    )
    assert named.passed and named.modules == ("goodpkg", "goodpkg._native")
