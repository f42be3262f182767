"""Durable file writes: replacing a file atomically, and making a new name durable.

Every function here blocks; callers run them through ``anyio.to_thread.run_sync``
and map ``OSError`` to their own error, naming what the file is for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def write_atomically(path: str | os.PathLike[str], content: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` by ``content``: a crash leaves the old file or the new one, never a mix.

    ``content`` may be an iterable of pieces, written as they come, so that a
    rewrite of a large file need not hold it in memory.

    Writes a temporary file beside ``path`` (a new, private one per call, so
    concurrent writers never share it), fsyncs it, renames it over ``path`` and
    fsyncs the directory.

    :raises OSError: when the file cannot be written or renamed; the temporary
        file is removed then.
    """
    import tempfile  # here: only the runs that rewrite files pay for importing it

    target = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as temp:
            if isinstance(content, bytes):
                temp.write(content)
            else:
                temp.writelines(content)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the names in ``directory`` (a file just created or renamed) survive a power cut.

    :raises OSError: when the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
