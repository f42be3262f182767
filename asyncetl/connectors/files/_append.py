"""Durable appends and atomic rewrites: the one place file writes map ``OSError``.

Every function here blocks; callers run them through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from asyncetl.core import durable
from asyncetl.core.errors import PermanentError
from asyncetl.core.logs import get_logger

__all__ = ["append", "open_for_append", "read_all", "write_atomically"]

_log = get_logger("asyncetl.files")


def open_for_append(path: str) -> int:
    """A file descriptor appending to ``path``, created (and its directory synced) if missing.

    :raises PermanentError: when the file cannot be opened for writing.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        existed = os.path.exists(path)
        fd = os.open(path, flags, 0o644)
        if not existed:
            durable.fsync_directory(Path(path).parent)
    except OSError as exc:
        raise PermanentError(
            f"cannot open {path} for appending: {exc.strerror or exc}; check that its "
            "directory exists and is writable"
        ) from exc
    return fd


def append(fd: int, path: str, payload: bytes | bytearray, *, fsync: bool) -> None:
    """Append ``payload`` (whole lines) to ``fd``, then fsync it when asked.

    A file that does not end in a newline has a torn last line, left by a crash
    in the middle of an earlier append (or by another writer): it gets a newline
    first, so that the torn line stays a separate, visibly broken line instead of
    corrupting the first new one.

    :raises PermanentError: when the write or the fsync fails.
    """
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _log.warning(
                "file ends in an incomplete line; starting a new line", path=path, offset=size
            )
            payload = b"\n" + payload
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        raise PermanentError(f"cannot append to {path}: {exc.strerror or exc}") from exc


def read_all(path: str) -> bytes:
    """The whole file; empty when it does not exist.

    :raises PermanentError: when it exists but cannot be read.
    """
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise PermanentError(f"cannot read {path}: {exc.strerror or exc}") from exc


def write_atomically(path: str, content: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` by ``content``: a crash leaves the old file or the new one, never a mix.

    :raises PermanentError: when the temporary file cannot be written or renamed.
    """
    try:
        durable.write_atomically(path, content)
    except OSError as exc:
        raise PermanentError(f"cannot rewrite {path}: {exc.strerror or exc}") from exc
