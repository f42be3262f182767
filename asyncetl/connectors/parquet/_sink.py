"""The Parquet sink: files gathered across batches, renamed into place, then the manifest.

Rows go into one open file per hive partition, under a hidden temporary name,
for as long as ``roll_interval`` seconds after the first of them (so a trickle
of small batches does not make small files), until a file reaches
``max_file_rows`` or ``max_file_bytes``, or until the input ends. Then the
commit: every file is closed and flushed to disk, renamed to its final name
(readers never see a half-written file), and the manifest is replaced, listing
the new files and (when checkpoints travel with this sink) the position of
the last batch they hold. The engine acknowledges the batches only after that
commit (see :meth:`ParquetSink.flush_deadline`), so a crash replays them.

Final names derive from the source position of the commit's first batch
(``part-<hash of position>-<n>.parquet``). Files under that pattern that the
manifest does not list were renamed by a run that died before its commit;
:meth:`ParquetSink.open` deletes them, with any hidden leftovers, and the
replay writes their rows again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import quote

import anyio.to_thread
import orjson
import pyarrow as pa

from asyncetl.connectors.parquet._manifest import Manifest, ParquetCheckpointStore
from asyncetl.connectors.parquet._rolling import Roller
from asyncetl.connectors.parquet._storage import hidden, open_storage
from asyncetl.connectors.parquet._types import declared_types
from asyncetl.core.arrow import arrow_table
from asyncetl.core.batch import Batch, Position, Reject
from asyncetl.core.columnar import ExtraColumns, to_columns
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetterStore,
    Problem,
    Settle,
    Sink,
    TransactionalWriter,
)

__all__ = ["Compression", "ParquetSink"]

Compression = Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"]
_COMPRESSIONS: tuple[str, ...] = get_args(Compression)
_EXTRA: tuple[str, ...] = get_args(ExtraColumns)
_DATA_FILE = re.compile(r"part-[0-9a-f]{20}-\d{5}\.parquet")
#: Hive's name for the partition of NULL values.
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


class ParquetSink(Sink[Mapping[str, object]]):
    """Writes mappings as Parquet files in a directory, hive-partitioned by record fields.

    Column types come from ``schema`` where declared, else from the values
    (dicts and lists become JSON text); a value its column cannot hold exactly
    refuses its record, naming column and value. Partition columns become
    directories (``day=2024-01-01/``), not file columns, as hive readers expect.

    Batches are gathered into open files and committed together every
    ``roll_interval`` seconds, when a file reaches ``max_file_rows`` or
    ``max_file_bytes`` (its partition goes on in a new file), and when the
    input ends; ``roll_interval=0`` commits every batch on its own. With a
    :class:`ParquetCheckpointStore` on the same directory, the position of
    the last batch a commit holds is written in the manifest update that adds
    its files: exactly-once results.

    :param path: the directory, created when missing: a local path, or a URL of any
        ``pyarrow.fs`` filesystem (``s3://bucket/prefix``, ``gs://…``, ``file://…``).
    :param partition: record fields that make the partition directories, in order.
    :param schema: column name → Arrow type name (``int64``, ``string``,
        ``timestamp[us, tz=UTC]``, ``decimal128(12, 2)``…) for declared columns.
    :param extra_columns: with a ``schema``, what a record field outside it
        does: ``reject`` the record, ``ignore`` the field, or ``evolve``: keep it
        with a type from its values.
    :param compression: ``zstd`` (default), ``snappy``, ``gzip``, ``brotli``, ``lz4`` or ``none``.
    :param max_file_rows: rows at most in one file.
    :param max_file_bytes: about this many bytes (of Arrow memory) at most in one
        file: the target size that files of a steady stream reach.
    :param roll_interval: seconds at most between a batch's write and the commit that
        makes its files visible (and moves the checkpoint past it).
    :param name: the sink's name.
    :raises ConfigError: for an unknown compression or ``extra_columns``, a bad type
        name in ``schema``, or limits below one.
    """

    def __init__(
        self,
        path: str,
        *,
        partition: list[str] | None = None,
        schema: dict[str, str] | None = None,
        extra_columns: str = "reject",
        compression: str = "zstd",
        max_file_rows: int = 1_000_000,
        max_file_bytes: int = 256 * 1024 * 1024,
        roll_interval: float = 10.0,
        name: str = "parquet_sink",
    ) -> None:
        where = f"ParquetSink {name}"
        _check_choice(where, "compression", compression, _COMPRESSIONS)
        _check_choice(where, "extra_columns", extra_columns, _EXTRA)
        for key, limit in (("max_file_rows", max_file_rows), ("max_file_bytes", max_file_bytes)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(
                    f"must be a whole number above 0, not {limit!r}", where=where, key=key
                )
        if isinstance(roll_interval, bool) or not (
            isinstance(roll_interval, int | float) and roll_interval >= 0
        ):
            raise ConfigError(
                f"must be a number of seconds, at least 0, not {roll_interval!r}",
                where=where,
                key="roll_interval",
            )
        self.path = str(path)
        self.storage = open_storage(self.path)
        self.partition = list(partition or ())
        self.types = declared_types(schema or {}, where)
        self.extra_columns: ExtraColumns = extra_columns  # type: ignore[assignment]
        self.compression = compression
        self.max_file_rows = max_file_rows
        self.max_file_bytes = max_file_bytes
        self.roll_interval = float(roll_interval)
        self.name = name
        self._manifest = Manifest()
        self._commits_checkpoints = False
        #: File stem → the next file number, for commits starting at one position.
        self._numbers: dict[str, int] = {}
        self._roller = Roller(self.storage, compression, max_file_rows, max_file_bytes)
        self._deadline: float | None = None
        self._checkpoint: Checkpoint | None = None
        self._stem = ""

    async def open(self) -> None:
        """Create the directory, read the manifest and delete files no commit listed.

        :raises PermanentError: when the directory cannot be created or read.
        :raises CheckpointError: when the manifest is unreadable.
        """
        self._manifest = await anyio.to_thread.run_sync(self._recover)
        self._numbers = {}  # a new run: file numbers start again, as a replay's must

    async def aclose(self) -> None:
        """Close the files not yet committed; the next :meth:`open` deletes them."""
        self._deadline, self._checkpoint = None, None
        await anyio.to_thread.run_sync(self._roller.discard)

    async def check(self) -> list[Problem]:
        """Whether the directory exists and is writable, or could be created (local paths)."""
        if "://" in self.path:
            return []  # an object store tells only by writing
        return await anyio.to_thread.run_sync(_directory_problems, Path(self.path))

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`ParquetCheckpointStore` on the same directory."""
        return isinstance(store, ParquetCheckpointStore) and _same(store.path, self.path)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[Mapping[str, object]] | None:
        """Commit checkpoints of ``store`` in the manifest with each batch's files."""
        if not self.commits_to(store):
            return None
        self._commits_checkpoints = True
        return self._write_with_checkpoint

    async def write(self, batch: Batch[Mapping[str, object]]) -> Sequence[Reject]:
        """Add the batch to the open files (committing when due); return the records refused.

        :raises PermanentError: when a file or the manifest cannot be written.
        """
        return await self._write(batch, None, None)

    async def _write_with_checkpoint(
        self,
        batch: Batch[Mapping[str, object]],
        checkpoint: Checkpoint,
        settle: Settle | None = None,
    ) -> Sequence[Reject]:
        return await self._write(batch, checkpoint, settle)

    async def _write(
        self,
        batch: Batch[Mapping[str, object]],
        checkpoint: Checkpoint | None,
        settle: Settle | None,
    ) -> list[Reject]:
        rejects = await anyio.to_thread.run_sync(partial(self._hold, batch.records, batch.position))
        if settle is not None:
            # Before any file is renamed into place: a failing policy leaves nothing visible.
            await settle(rejects)
        self._checkpoint = checkpoint or self._checkpoint
        if self._deadline is None and (self._roller.holding or self._checkpoint is not None):
            self._deadline = anyio.current_time() + self.roll_interval
        # Also past the deadline: while batches keep coming the engine never waits for one.
        if self._deadline is not None and (
            self._roller.full or anyio.current_time() >= self._deadline
        ):
            await self.flush()
        return rejects

    def flush_deadline(self) -> float | None:
        """When the gathered batches are committed at the latest; ``None`` when none are held."""
        return self._deadline

    async def flush(self) -> None:
        """Close the open files, move them into place and commit them in the manifest.

        :raises PermanentError: when a file or the manifest cannot be written.
        """
        if self._deadline is None:
            return
        await anyio.to_thread.run_sync(self._commit_held)
        self._deadline = None

    # -- in a worker thread -------------------------------------------------------

    def _recover(self) -> Manifest:
        try:
            self.storage.make_dir("")
            manifest = Manifest.read(self.storage, self.path)
            committed = set(manifest.files)
            for relative in self.storage.files():
                name = relative.rpartition("/")[2]
                leftover = name.startswith(".part-") and name.endswith(".tmp")
                if leftover or (_DATA_FILE.fullmatch(name) and relative not in committed):
                    self.storage.delete(relative)
        except OSError as exc:
            raise self._failed("open", exc) from exc
        return manifest

    def _hold(self, records: Sequence[object], position: Position) -> list[Reject]:
        """Add the batch's rows to the open files; return the records refused."""
        if not records:
            return []
        known = list(self.types) if self.types else None
        columns = to_columns(records, target=self._where, known=known, extra=self.extra_columns)
        table = arrow_table(columns, self.types, self._where)
        if not table.num_rows:
            return columns.rejects
        parts = self._partitions(table, columns.values)
        if not all(self._roller.fits(directory, rows) for directory, rows in parts):
            # The batch would pass a file's limit: commit what is held first, so
            # files end near their limit and no batch's rows straddle two commits.
            self._commit_held()
        if not self._roller.holding:
            # A commit's files are named by its first batch's position; a commit
            # starting at the same position as an earlier one of this run numbers on.
            stem = "part-" + _digest(position)
            self._roller.begin(stem, self._numbers.get(stem, 0))
            self._stem = stem
        try:
            for directory, rows in parts:
                self._roller.add(directory, rows)
        except OSError as exc:
            raise self._failed("write", exc) from exc
        self._numbers[self._stem] = self._roller.next_number
        return columns.rejects

    def _commit_held(self) -> None:
        try:
            files = self._roller.finish()
        except OSError as exc:
            raise self._failed("write", exc) from exc
        self._commit(files, self._checkpoint)

    def _partitions(
        self, table: pa.Table, values: Mapping[str, list[object]]
    ) -> list[tuple[str, pa.Table]]:
        if not self.partition:
            return [("", table)]
        groups: dict[tuple[object, ...], list[int]] = {}
        empty = [None] * table.num_rows
        keys = zip(*(values.get(name, empty) for name in self.partition), strict=True)
        for row, key in enumerate(keys):
            groups.setdefault(key, []).append(row)
        data = table.drop_columns([c for c in self.partition if c in table.column_names])
        return [
            (
                "/".join(_segment(n, v) for n, v in zip(self.partition, key, strict=True)),
                data.take(rows),
            )
            for key, rows in groups.items()
        ]

    def _commit(self, files: list[str], checkpoint: Checkpoint | None) -> None:
        """Move the batch's complete files into place, then commit them in the manifest."""
        if not files and (checkpoint is None or not self._commits_checkpoints):
            return
        try:
            for file in files:
                self.storage.move(hidden(file), file)
            self.storage.sync(file.rpartition("/")[0] for file in files)
            listed = set(self._manifest.files)
            self._manifest.files += [f for f in files if f not in listed]
            if checkpoint is not None and self._commits_checkpoints:
                self._manifest.commit(checkpoint)
            self._manifest.write(self.storage)
        except OSError as exc:
            raise self._failed("commit", exc) from exc

    @property
    def _where(self) -> str:
        return f"the Parquet files of {self.path}"

    def _failed(self, what: str, exc: OSError) -> PermanentError:
        return PermanentError(
            f"ParquetSink {self.name} could not {what} in {self.path}: {exc}; check that the "
            "directory is writable and the disk has room"
        )


def _digest(position: Position) -> str:
    """20 hex digits naming ``position``: the same position always names the same files."""
    text = orjson.dumps(position, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:20]


def _segment(name: str, value: object) -> str:
    text = NULL_PARTITION if value is None else str(value)
    return f"{quote(name, safe='')}={quote(text, safe='')}"


def _same(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _directory_problems(directory: Path) -> list[Problem]:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [Problem("path", f"{existing} is not a directory, so {directory} cannot be made")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Problem("path", f"directory {existing} is not writable")]
    return []


def _check_choice(where: str, key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(
            f"must be one of {', '.join(map(repr, choices))}, not {value!r}", where=where, key=key
        )
