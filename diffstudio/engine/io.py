"""Atomic file and directory writes: write to a temporary name beside the target, then rename.

A process killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "file_sha256",
    "recover_staged",
    "staged_directory",
    "storage_problem",
]

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_DENIED = (errno.EACCES, errno.EPERM)


def storage_problem(exc: BaseException) -> str | None:
    """What went wrong writing a file, in words, when ``exc`` is a storage failure: the disk
    is full, the file system is read-only, or permission is denied (None for anything else).

    Also reads the failures libraries report without an errno: safetensors says "No space
    left on device (os error 28)" in a SafetensorError."""
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc)
    if code in _FULL or "No space left on device" in text or "os error 28" in text:
        return "the disk is full (no space left on device)"
    if code == errno.EROFS or "Read-only file system" in text or "os error 30" in text:
        return "the file system is read-only"
    if code in _DENIED or "Permission denied" in text or "os error 13" in text:
        return "permission denied"
    return None


def check_writable(folder: str | os.PathLike[str]) -> str | None:
    """Why nothing can be written in ``folder`` (or in the nearest folder above it that exists,
    when it does not exist yet), in words -- None when a file can be made there. A real probe
    (a temporary file, removed at once): ``os.access`` cannot see a full disk."""
    where = Path(folder).expanduser().absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return f"{where} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-write-check-", dir=where)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return storage_problem(exc) or f"{exc.strerror or exc}"
    return None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(temp_path)`` to produce the file, then rename it onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it is renamed to ``path`` (which must not exist).

    On an exception the temporary directory is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


#: A staging folder untouched this long belongs to a process that was killed, not to a live one.
STALE_STAGING_SECONDS = 600.0


def recover_staged(path: str | os.PathLike[str]) -> None:
    """Undo what a process killed inside :func:`staged_directory` for ``path`` left beside it.

    Killed between its two renames, ``path`` is missing and its old contents wait in a
    ``.trash-`` folder: they are put back (the new files were never complete for certain).
    A ``.trash-`` folder beside an existing ``path`` is the old copy, removed; ``.tmp-``
    folders unchanged for :data:`STALE_STAGING_SECONDS` are unfinished writes, removed."""
    target = Path(path)
    if not target.parent.is_dir():
        return
    now = time.time()
    for child in target.parent.iterdir():
        if child.name.startswith(f".trash-{target.name}-"):
            inner = child / target.name
            with contextlib.suppress(OSError):
                if not target.exists() and inner.is_dir():
                    os.replace(inner, target)
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(f".tmp-{target.name}-"):
            with contextlib.suppress(OSError):
                if now - child.stat().st_mtime > STALE_STAGING_SECONDS:
                    shutil.rmtree(child, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike[str], *, replace: bool) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` to write into; on success its files land in
    ``path``: with ``replace`` ``path`` becomes exactly the new folder (the old one is renamed
    aside, the new one renamed in, the old one deleted), otherwise the files are moved into
    ``path`` (created when missing), each replacing its namesake.

    On an exception the temporary directory is removed and ``path`` is untouched (a folder
    this call would have created is not left behind empty).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_staged(target)
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield temp
        if not target.exists():
            os.replace(temp, target)
        elif replace:
            old = Path(tempfile.mkdtemp(prefix=f".trash-{target.name}-", dir=target.parent))
            os.replace(target, old / target.name)
            try:
                os.replace(temp, target)
            except BaseException:
                os.replace(old / target.name, target)  # the old folder goes back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            for child in temp.iterdir():
                os.replace(child, target / child.name)
            temp.rmdir()
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
