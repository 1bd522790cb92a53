"""A remedy reaches setup.py-only sdists: they are unpacked and given a [build-system] table."""

from __future__ import annotations

import io
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from wheelmill.builder.legacy import BadSdist, source_for_build

SETUP_PY = 'import numpy\nfrom setuptools import setup\nsetup(name="demo", version="1.0")\n'


def make_tar(path: Path, files: dict[str, str], top: str = "demo-1.0") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_without_extras_is_built_as_it_is(tmp_path: Path) -> None:
    sdist = make_tar(tmp_path / "demo-1.0.tar.gz", {"setup.py": SETUP_PY})

    assert source_for_build(sdist, [], tmp_path / "tree") == sdist
    assert not (tmp_path / "tree").exists()


def test_an_sdist_that_declares_a_build_system_keeps_it(tmp_path: Path) -> None:
    pyproject = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
    sdist = make_tar(tmp_path / "demo-1.0.tar.gz", {"setup.py": SETUP_PY, "pyproject.toml": pyproject})

    assert source_for_build(sdist, ["numpy"], tmp_path / "tree") == sdist


@pytest.mark.parametrize("pyproject", [None, "[tool.black]\nline-length = 100\n"])
def test_a_setup_py_sdist_gets_the_legacy_table_with_the_extras(
    tmp_path: Path, pyproject: str | None
) -> None:
    files = {"setup.py": SETUP_PY} | ({"pyproject.toml": pyproject} if pyproject else {})
    sdist = make_tar(tmp_path / "demo-1.0.tar.gz", files)

    tree = source_for_build(sdist, ["numpy>=2", 'evil"]\n[x]'], tmp_path / "tree")

    assert tree == tmp_path / "tree" / "demo-1.0"
    assert (tree / "setup.py").read_text() == SETUP_PY
    declared = tomllib.loads((tree / "pyproject.toml").read_text())
    assert declared["build-system"] == {
        "requires": ["setuptools>=40.8.0", "numpy>=2", 'evil"]\n[x]'],
        "build-backend": "setuptools.build_meta:__legacy__",
    }
    if pyproject:
        assert declared["tool"]["black"] == {"line-length": 100}


def test_zip_members_outside_the_sdist_are_refused(tmp_path: Path) -> None:
    sdist = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(sdist, "w") as archive:
        archive.writestr("demo-1.0/setup.py", SETUP_PY)
        archive.writestr("demo-1.0/../../escaped.txt", "x")

    with pytest.raises(BadSdist, match="outside"):
        source_for_build(sdist, ["numpy"], tmp_path / "scratch" / "tree")
    assert not (tmp_path / "scratch" / "escaped.txt").exists()


def test_zip_sdists_are_unpacked_too(tmp_path: Path) -> None:
    sdist = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(sdist, "w") as archive:
        archive.writestr("demo-1.0/setup.py", SETUP_PY)

    tree = source_for_build(sdist, ["numpy"], tmp_path / "tree")

    assert tomllib.loads((tree / "pyproject.toml").read_text())["build-system"]["requires"][-1] == "numpy"


def test_members_outside_the_sdist_are_refused_and_nothing_escapes(tmp_path: Path) -> None:
    sdist = make_tar(tmp_path / "demo-1.0.tar.gz", {"setup.py": SETUP_PY, "../../escaped.txt": "x"})

    with pytest.raises(BadSdist, match="outside"):
        source_for_build(sdist, ["numpy"], tmp_path / "scratch" / "tree")
    assert not (tmp_path / "scratch" / "escaped.txt").exists()


def test_a_broken_archive_is_a_clear_error(tmp_path: Path) -> None:
    sdist = tmp_path / "demo-1.0.tar.gz"
    sdist.write_bytes(b"not a tarball")

    with pytest.raises(BadSdist, match="cannot read the archive"):
        source_for_build(sdist, ["numpy"], tmp_path / "tree")
