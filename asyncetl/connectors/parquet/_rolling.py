"""Parquet files kept open across batches, one per partition directory, rolled by rows or bytes.

A file gathers the rows of many batches (each a row group), so a trickle of
small batches still makes few, large files. A file closes when it reaches
``max_file_rows`` or ``max_file_bytes`` (the next rows of its partition start
a new one), or when a batch brings columns it cannot hold. Closed files stay
under their hidden names: only the sink's commit moves them into place, so a
crash leaves nothing a reader sees. Everything here blocks: worker threads only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from asyncetl.connectors.parquet._storage import Storage, hidden

__all__ = ["Roller"]


@dataclass(slots=True)
class _OpenFile:
    relative: str  # the final name; the file is written under hidden(relative)
    writer: pq.ParquetWriter
    schema: pa.Schema
    rows: int = 0
    nbytes: int = 0


class Roller:
    """The files of one commit: open ones per partition directory, and those closed since."""

    def __init__(self, storage: Storage, compression: str, max_rows: int, max_bytes: int) -> None:
        self.storage = storage
        self.compression = compression
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        #: Whether a file reached its limit since the last :meth:`finish`: time to commit.
        self.full = False
        self._open: dict[str, _OpenFile] = {}
        self._closed: list[str] = []
        self._stem = ""
        self._next = 0

    @property
    def holding(self) -> bool:
        """Whether any file was started since the last :meth:`finish`."""
        return bool(self._open or self._closed)

    def begin(self, stem: str, first: int) -> None:
        """Name the files of this commit ``<stem>-<n>.parquet``, counting from ``first``."""
        self._stem, self._next = stem, first

    @property
    def next_number(self) -> int:
        """The number the next file of this commit would take."""
        return self._next

    def fits(self, directory: str, table: pa.Table) -> bool:
        """Whether the directory's open file can take all of ``table`` within the limits.

        A question only. A directory with no open file fits anything: a new file
        takes a table larger than the limits in several files.
        """
        file = self._open.get(directory)
        if file is None or not table.num_rows:
            return True
        count: int = table.num_rows
        per_row = max(1, int(table.nbytes) // count)
        return (
            file.rows + count <= self.max_rows and file.nbytes + count * per_row <= self.max_bytes
        )

    def add(self, directory: str, table: pa.Table) -> None:
        """Append ``table``'s rows to the directory's open file, rolling at the limits."""
        while table.num_rows:
            file = self._open.get(directory) or self._start(directory, table.schema)
            fitted = _fitted(table, file.schema)
            if fitted is None:  # columns the open file cannot hold: it is complete
                self._close(directory)
                continue
            per_row = max(1, fitted.nbytes // fitted.num_rows)
            room = min(self.max_rows - file.rows, (self.max_bytes - file.nbytes) // per_row)
            if room < 1 and file.rows:
                self._close(directory)
                self.full = True
                continue
            part = fitted.slice(0, max(1, room))
            file.writer.write_table(part)
            file.rows += part.num_rows
            file.nbytes += part.num_rows * per_row
            table = table.slice(part.num_rows)
            if file.rows >= self.max_rows or file.nbytes + per_row > self.max_bytes:
                self._close(directory)
                self.full = True

    def finish(self) -> list[str]:
        """Close every open file (flushed to disk); return the final names of the commit's files."""
        for directory in list(self._open):
            self._close(directory)
        closed, self._closed, self.full = self._closed, [], False
        return closed

    def discard(self) -> None:
        """Close the open files without committing them; the next open deletes them."""
        for file in self._open.values():
            file.writer.close()
        self._open, self._closed, self.full = {}, [], False

    def _start(self, directory: str, schema: pa.Schema) -> _OpenFile:
        name = f"{self._stem}-{self._next:05d}.parquet"
        self._next += 1
        relative = f"{directory}/{name}" if directory else name
        if directory:
            self.storage.make_dir(directory)
        writer = self.storage.open_writer(hidden(relative), schema, self.compression)
        file = self._open[directory] = _OpenFile(relative, writer, schema)
        return file

    def _close(self, directory: str) -> None:
        file = self._open.pop(directory)
        file.writer.close()
        self.storage.sync_file(hidden(file.relative))
        self._closed.append(file.relative)


def _fitted(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` with ``schema``'s columns and types, or ``None`` when they do not fit exactly."""
    if table.schema.equals(schema):
        return table
    if sorted(table.column_names) != sorted(schema.names):
        return None
    try:
        return table.select(schema.names).cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
