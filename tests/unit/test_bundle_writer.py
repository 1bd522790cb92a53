"""Writing a bundle directory: wheels fetched and checked, requirements with hashes pip accepts,
install.sh, the README, and the .tar.gz."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from wheelmill.bundle.errors import BundleError
from wheelmill.bundle.resolve import WheelLink
from wheelmill.bundle.writer import BundledWheel, Contents, fetch, make_archive, write_bundle
from wheelmill.testing import CoreMetadata, StandInUpstream, make_wheel


def bundled(directory: Path, name: str, version: str, dependencies: tuple[str, ...] = ()) -> BundledWheel:
    wheel = make_wheel(CoreMetadata(name, version, dependencies=dependencies), "py3-none-any")
    (directory / wheel.filename).write_bytes(wheel.content)
    sha256 = hashlib.sha256(wheel.content).hexdigest()
    return BundledWheel(name, version, wheel.filename, sha256, len(wheel.content))


@pytest.fixture
def contents(tmp_path: Path) -> Contents:
    wheels = (bundled(tmp_path, "beta", "2.0"), bundled(tmp_path, "alpha", "1.0", ("beta>=2",)))
    return Contents("cp311-cp311-linux_armv7l", ("alpha", "beta>=2"), wheels, (("gamma", "0.3"),))


def pip_accepts(directory: Path) -> subprocess.CompletedProcess[str]:
    """What install.sh runs, as a dry run: resolves from the directory and checks every hash."""
    argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index"]
    argv += ["--find-links", str(directory), "-r", str(directory / "requirements.txt")]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(argv, capture_output=True, text=True, env=env)


def test_requirements_pin_every_wheel_with_its_hash(tmp_path: Path, contents: Contents) -> None:
    write_bundle(tmp_path, contents)

    alpha, beta = sorted(contents.wheels, key=lambda w: w.name)
    assert (tmp_path / "requirements.txt").read_text().splitlines()[1:] == [
        "alpha==1.0 \\",
        f"    --hash=sha256:{alpha.sha256}",
        "beta==2.0 \\",
        f"    --hash=sha256:{beta.sha256}",
    ]
    checked = pip_accepts(tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "Would install alpha-1.0 beta-2.0" in checked.stdout


def test_pip_refuses_a_wheel_that_changed_after_writing(tmp_path: Path, contents: Contents) -> None:
    write_bundle(tmp_path, contents)
    beta = tmp_path / next(w.filename for w in contents.wheels if w.name == "beta")
    beta.write_bytes(beta.read_bytes() + b"\0")

    checked = pip_accepts(tmp_path)

    assert checked.returncode != 0
    assert "DO NOT MATCH THE HASHES" in checked.stderr


def test_install_sh_runs_pip_offline_from_its_own_directory(tmp_path: Path, contents: Contents) -> None:
    write_bundle(tmp_path, contents)

    script = tmp_path / "install.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert 'cd "$(dirname "$0")"' in text
    assert '-m pip install --no-index --find-links . -r requirements.txt "$@"' in text


def test_readme_lists_contents_what_was_left_out_and_the_size(tmp_path: Path, contents: Contents) -> None:
    write_bundle(tmp_path, contents)

    readme = (tmp_path / "README.txt").read_text()
    rows = [line.split() for line in readme.splitlines()]
    assert "Target:      cp311-cp311-linux_armv7l" in readme
    assert "Requested:   alpha, beta>=2" in readme
    assert f"({contents.total_size} bytes) in 2 wheels" in readme
    for wheel in contents.wheels:
        assert [wheel.name, wheel.version, wheel.filename, str(wheel.size), "B"] in rows
    assert readme.endswith("Left out, already installed on the target:\n  gamma 0.3\n")


def test_readme_says_when_nothing_was_left_out(tmp_path: Path) -> None:
    contents = Contents("cp311-cp311-linux_x86_64", ("beta",), (bundled(tmp_path, "beta", "2.0"),), ())
    write_bundle(tmp_path, contents)
    readme = (tmp_path / "README.txt").read_text()
    assert "in 1 wheel\n" in readme
    assert readme.endswith("Left out, already installed on the target:\n  (nothing)\n")


def test_a_missing_wheel_is_refused(tmp_path: Path, contents: Contents) -> None:
    (tmp_path / contents.wheels[0].filename).unlink()
    with pytest.raises(BundleError, match=r"beta-2\.0-py3-none-any\.whl is not in"):
        write_bundle(tmp_path, contents)


def test_archive_has_one_top_directory_and_keeps_install_sh_executable(
    tmp_path: Path, contents: Contents
) -> None:
    write_bundle(tmp_path, contents)
    archive = tmp_path.parent / "wheelmill-bundle-0123456789ab.tar.gz"

    make_archive(tmp_path, archive)

    with tarfile.open(archive) as tar:
        members = {member.name: member for member in tar.getmembers()}
    expected = {path.name for path in tmp_path.iterdir()}
    assert set(members) == {f"wheelmill-bundle-0123456789ab/{name}" for name in expected}
    assert members["wheelmill-bundle-0123456789ab/install.sh"].mode & 0o111


def test_fetch_checks_the_hash_the_index_gave(tmp_path: Path) -> None:
    with StandInUpstream() as index:
        index.add_release("alpha", "1.0", kind=None)
        file = index.add_wheel("alpha", "1.0")
        url = index.url + file.path

        path = fetch(WheelLink(file.filename, url, file.sha256, file.size), tmp_path)
        assert path.read_bytes() == file.content

        with pytest.raises(BundleError, match=f"the index said {'0' * 64!r}"):
            fetch(WheelLink(file.filename, url, "0" * 64, file.size), tmp_path / "..")
        with pytest.raises(BundleError, match="is not a wheel file name"):
            fetch(WheelLink("../../escape.whl", url, file.sha256, file.size), tmp_path)
