"""The file a source reads, held open: reads that may wait for the disk, and reads that never do.

A read that may wait for the disk runs in a worker thread. Where the platform
can read without waiting (Linux's ``RWF_NOWAIT``), a block that the page cache
holds whole is read on the event loop instead: a copy from memory, without a
round trip through the thread. On a busy machine that round trip cost more than
the read: every block made the event loop sleep until the thread had run, and
the thread sleep until the loop had.

A read in the thread first reopens the path if it names another file by then,
so that a step that may wait sees the file as a path opened afresh would; the
reads that never wait keep to the file as last opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from io import FileIO

from asyncetl.core.errors import PermanentError

__all__ = ["OpenFile"]

#: ``preadv`` flag: return at once rather than wait for data the page cache lacks.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class OpenFile:
    """A file opened for reading by byte offset (open it in a worker thread).

    :raises PermanentError: when the file is missing or unreadable.
    """

    __slots__ = ("_block", "_file", "_nowait", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        with _read_errors(path):
            self._file = _open(path)
        self._nowait = _NOWAIT is not None
        self._block: bytearray | None = None

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``, fewer only at the end of the file (worker thread).

        :raises PermanentError: when the file is missing, unreadable, or shorter than ``offset``.
        """
        with _read_errors(self.path):
            return self._read(offset, size)

    def read_cached(self, offset: int, size: int) -> bytearray | None:
        """``size`` bytes at ``offset`` if the page cache holds them all, without waiting.

        :returns: a buffer this object reuses (copy what is kept), or ``None``
            when any of the bytes would come from the disk, lie past the end of
            the file, or the platform cannot read without waiting: then
            :meth:`read` them.
        """
        if not self._nowait:
            return None
        block = self._block
        if block is None or len(block) != size:
            block = self._block = bytearray(size)
        try:
            got = os.preadv(self._file.fileno(), (block,), offset, _NOWAIT or 0)
        except BlockingIOError:
            return None
        except OSError:
            # The file system cannot read without waiting (or the read fails, which the
            # thread then says in its own words): every read goes through the thread.
            self._nowait = False
            return None
        return block if got == size else None

    def close(self) -> None:
        self._file.close()

    def _read(self, offset: int, size: int) -> bytes:
        self._reopen_if_replaced()
        file = self._file
        length = os.fstat(file.fileno()).st_size
        if length < offset:
            raise PermanentError(
                f"{self.path} is {length} bytes long, shorter than the position {offset} "
                "already read; it was truncated or replaced, so restore it or delete "
                "the checkpoint to start over"
            )
        file.seek(offset)
        data = file.read(size)
        # A raw read may return less than asked before the end: only an empty read is
        # the end, and a short block taken for the end would end the source early.
        while data and len(data) < size:
            more = file.read(size - len(data))
            if not more:
                break
            data += more
        return data

    def _reopen_if_replaced(self) -> None:
        held, named = os.fstat(self._file.fileno()), os.stat(self.path)
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            file, self._file = self._file, _open(self.path)
            file.close()


def _open(path: str) -> FileIO:
    return FileIO(path, "rb")


@contextmanager
def _read_errors(path: str) -> Iterator[None]:
    """The one place file reads map ``OSError``."""
    try:
        yield
    except FileNotFoundError as exc:
        raise PermanentError(f"file {path} does not exist; check the path", setting="path") from exc
    except OSError as exc:
        raise PermanentError(f"cannot read {path}: {exc.strerror or exc}") from exc
