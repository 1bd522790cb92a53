"""Atomic file writes for the output directory.

A web server may read any file at any moment, so each write goes to a temporary file in the same
directory and is renamed over the target: readers see the old bytes or the new ones, never half.
Unchanged content is not rewritten, which keeps mtimes (and so ETags and Last-Modified) stable
and lets a full publish skip most of the disk.

A directory that does not exist yet is written whole under a dot name and renamed into place
(`write_directory_atomic`): readers see none of it or all of it, and its files need no temporary
names of their own, which saves a full publish into an empty output directory a third of its
file system calls.

No fsync: a page lost in a crash is rewritten by the next publish (the pending marks that name it
are cleared only after the write), and syncing 175,000 project pages would dominate a full publish.
"""

import contextlib
import errno
import filecmp
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

FILE_MODE = 0o644
TEMP_PREFIX = "."  # temporary files are dotfiles, which the servers refuse to serve


def _temp_file(path: str) -> tuple[int, str]:
    """Open a temporary file beside `path`, so the final rename stays on one filesystem.

    Its name holds this process's and thread's ids, so no other writer can be using it and no
    random name (mkstemp) is needed; directories are made only when the open finds them missing.
    Paths are plain strings here: with pathlib's overhead, a full publish's million files take
    seconds more.
    """
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f"{TEMP_PREFIX}{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, FILE_MODE)
    except FileNotFoundError:
        _make_directories(directory)
        fd = os.open(temp, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # whatever the umask: the web server (often another user) reads it
    return fd, temp


def _make_directories(directory: str) -> None:
    """``os.makedirs`` without its stat of every parent first: mkdir, and climb only on ENOENT."""
    try:
        os.mkdir(directory)
    except FileNotFoundError:
        parent = os.path.dirname(directory)
        if parent in ("", directory):  # a relative path's first part, or "/": nothing above to make
            raise
        _make_directories(parent)
        _make_directories(directory)
    except FileExistsError:  # made meanwhile by another writer: as good
        pass


def _same_bytes(path: str, data: bytes) -> bool:
    """Whether `path` already holds exactly `data` (the size check avoids most reads)."""
    try:
        if os.stat(path).st_size != len(data):
            return False
        with open(path, "rb") as existing:
            return existing.read() == data
    except FileNotFoundError:
        return False


def write_bytes_atomic(path: str | Path, data: bytes) -> bool:
    """Write `data` to `path` by write-then-rename; return False when it was already there."""
    target = os.fspath(path)
    if _same_bytes(target, data):
        return False
    fd, temp = _temp_file(target)
    try:
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; the loop is for the rare short one
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return True


def _write_new(path: str, data: bytes) -> None:
    """Create `path`, which must not exist, holding `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _stage(directory: str, files: Mapping[str, bytes]) -> str:
    """A dot-named sibling of `directory` holding `files`; the caller renames or removes it."""
    parent, name = os.path.split(directory)
    stage = os.path.join(parent, f"{TEMP_PREFIX}{name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        os.mkdir(stage)
    except FileNotFoundError:
        _make_directories(parent)
        os.mkdir(stage)
    except FileExistsError:  # left by a writer of this pid and thread that crashed
        shutil.rmtree(stage)
        os.mkdir(stage)
    try:
        made = {""}  # the stage is new: each subdirectory is made once, without asking first
        for relative, data in files.items():
            subdirectory = os.path.dirname(relative)
            if subdirectory not in made:
                os.makedirs(os.path.join(stage, subdirectory), exist_ok=True)
                made.add(subdirectory)
            _write_new(os.path.join(stage, relative), data)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def write_directory_atomic(path: str | Path, files: Mapping[str, bytes]) -> int:
    """Write `files` (paths relative to `path`) into the directory `path`; return how many changed.

    A new directory is staged and renamed into place; in an existing one each file is written by
    write-then-rename, and unchanged files are left alone.
    """
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        stage = _stage(directory, files)
        try:
            os.rename(stage, directory)  # replaces nothing, or an empty directory
            return len(files)
        except OSError as exc:
            shutil.rmtree(stage, ignore_errors=True)
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Another writer made the directory meanwhile: write into it file by file.
    return sum(write_bytes_atomic(os.path.join(directory, name), data) for name, data in files.items())


def write_text_atomic(path: Path, text: str) -> bool:
    """Write UTF-8 `text` to `path` atomically; return False when unchanged."""
    return write_bytes_atomic(path, text.encode())


def write_chunks_atomic(path: Path, chunks: Iterable[bytes]) -> bool:
    """Stream `chunks` to `path` atomically without holding them all in memory.

    Used for big files (the root index, wheels); return False when the result was unchanged.
    """
    target = os.fspath(path)
    fd, temp = _temp_file(target)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        if os.path.exists(target) and filecmp.cmp(temp, target, shallow=False):
            os.unlink(temp)
            return False
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return True


def remove_tree_atomic(path: Path) -> None:
    """Remove a directory so that readers see all of it or none of it.

    The rename is atomic; the slow delete then runs on a name no URL reaches.
    """
    if not path.exists():
        return
    graveyard = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".rm"))
    os.replace(path, graveyard / path.name)
    shutil.rmtree(graveyard)
