"""Where a Parquet directory lives: the local filesystem, or any ``pyarrow.fs`` filesystem by URL.

Both kinds write a file (through a ``ParquetWriter`` that may stay open across
batches) under a hidden name and then move it to its final name,
so a reader never sees a partial file. On the local filesystem each file and
each directory is flushed to disk (``fsync``) before the commit that names
it, and a move is an atomic rename; an object store (``s3://…``) makes an
object visible whole when its upload completes, so a move there is a copy that
appears at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["Storage", "hidden", "open_storage"]


class Storage(Protocol):
    """A directory's files, by paths relative to it (``a=1/part-….parquet``)."""

    def make_dir(self, relative: str) -> None: ...
    def files(self) -> list[str]: ...
    def delete(self, relative: str) -> None: ...
    def open_writer(
        self, relative: str, schema: pa.Schema, compression: str
    ) -> pq.ParquetWriter: ...
    def sync_file(self, relative: str) -> None: ...
    def move(self, source: str, target: str) -> None: ...
    def sync(self, directories: Iterable[str]) -> None: ...
    def read(self, relative: str) -> bytes | None: ...
    def replace(self, relative: str, content: bytes) -> None: ...


def open_storage(path: str) -> Storage:
    """The local directory ``path``, or the filesystem its URL names.

    A URL pyarrow knows (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``,
    ``file://``) gets a ``pyarrow.fs`` filesystem; any other scheme is
    handed to fsspec, when it is installed (``memory://``, ``sftp://``, …).

    :raises OSError: when neither can make a filesystem of the URL.
    """
    if "://" not in path:
        return LocalStorage(Path(path))
    try:
        filesystem, root = pafs.FileSystem.from_uri(path)
    except pa.ArrowInvalid as exc:
        if "Unrecognized filesystem type" not in str(exc):
            raise
        filesystem, root = _fsspec(path, exc)
    return ArrowStorage(filesystem, root.rstrip("/"))


def _fsspec(url: str, refusal: Exception) -> tuple[pafs.FileSystem, str]:
    """The fsspec filesystem of ``url``, seen through pyarrow; pyarrow's refusal without one."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise refusal from None
    try:
        filesystem, root = url_to_fs(url)
    except ValueError as exc:  # fsspec knows no such protocol either
        raise OSError(f"neither pyarrow nor fsspec has a filesystem for {url!r}: {exc}") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), str(root)


def hidden(relative: str) -> str:
    """Where ``relative`` is written before it is complete: a name readers skip."""
    directory, _, name = relative.rpartition("/")
    return f"{directory}/.{name}.tmp" if directory else f".{name}.tmp"


class LocalStorage:
    """A local directory: atomic renames, and ``fsync`` before each commit."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def make_dir(self, relative: str) -> None:
        (self.root / relative).mkdir(parents=True, exist_ok=True)

    def files(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()]

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink()

    def open_writer(self, relative: str, schema: pa.Schema, compression: str) -> pq.ParquetWriter:
        return pq.ParquetWriter(self.root / relative, schema, compression=compression)

    def sync_file(self, relative: str) -> None:
        with (self.root / relative).open("rb+") as file:
            os.fsync(file.fileno())

    def move(self, source: str, target: str) -> None:
        os.replace(self.root / source, self.root / target)

    def sync(self, directories: Iterable[str]) -> None:
        for directory in set(directories):
            descriptor = os.open(self.root / directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def read(self, relative: str) -> bytes | None:
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError:
            return None

    def replace(self, relative: str, content: bytes) -> None:
        temporary = self.root / hidden(relative)
        with temporary.open("wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        self.move(hidden(relative), relative)
        self.sync([str(Path(relative).parent)])


class ArrowStorage:
    """A directory of any ``pyarrow.fs`` filesystem (S3, GCS, HDFS, or ``file://``)."""

    def __init__(self, filesystem: pafs.FileSystem, root: str) -> None:
        self.filesystem = filesystem
        self.root = root

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def make_dir(self, relative: str) -> None:
        self.filesystem.create_dir(self._path(relative), recursive=True)

    def files(self) -> list[str]:
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        infos = self.filesystem.get_file_info(selector)
        prefix = self.root + "/"
        return [i.path.removeprefix(prefix) for i in infos if i.type == pafs.FileType.File]

    def delete(self, relative: str) -> None:
        self.filesystem.delete_file(self._path(relative))

    def open_writer(self, relative: str, schema: pa.Schema, compression: str) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            self._path(relative), schema, compression=compression, filesystem=self.filesystem
        )

    def sync_file(self, relative: str) -> None:
        """Nothing to do: a closed upload is complete and durable."""

    def move(self, source: str, target: str) -> None:
        self.filesystem.move(self._path(source), self._path(target))

    def sync(self, directories: Iterable[str]) -> None:
        """Nothing to do: a completed upload is durable."""

    def read(self, relative: str) -> bytes | None:
        if self.filesystem.get_file_info(self._path(relative)).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(self._path(relative)) as stream:
            content: bytes = stream.read()
        return content

    def replace(self, relative: str, content: bytes) -> None:
        with self.filesystem.open_output_stream(self._path(hidden(relative))) as stream:
            stream.write(content)
        self.move(hidden(relative), relative)
