"""The Iceberg sink: batches gathered into few, large commits, each carrying its source position."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import anyio
import anyio.to_thread
from pyiceberg.catalog.sql import SqlCatalog

from asyncetl.connectors.iceberg._catalog import CatalogSettings, mapped, split_identifier
from asyncetl.connectors.iceberg._checkpoint import IcebergCheckpointStore
from asyncetl.connectors.iceberg._gather import Gatherer, TableSettings
from asyncetl.connectors.iceberg._ledger import marks_in, resume_point, summary, undo_unfinished
from asyncetl.connectors.iceberg._table import Changes, IcebergTable, parse_partitions
from asyncetl.connectors.iceberg._types import declared_type
from asyncetl.core.batch import Batch, Position, Reject
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetterStore,
    Problem,
    Settle,
    Sink,
    TransactionalWriter,
)
from asyncetl.core.logs import get_logger
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["IcebergSink"]

IcebergRecord = Mapping[str, object] | ChangeEvent

_COMMIT_RETRY = RetryPolicy(max_tries=6, max_time=60.0, base_delay=0.2, max_delay=5.0)
_MIB = 1024 * 1024
_log = get_logger("asyncetl.iceberg")


class IcebergSink(Sink[IcebergRecord]):
    """Writes mappings and change events into Apache Iceberg tables of a SQL catalog.

    Records are gathered until ``target_file_size`` bytes of column data are
    held, or ``commit_interval`` seconds after the first of them, and then
    committed at once: a slow trickle makes one commit per interval, not one
    small file per batch. The engine acknowledges those batches only after
    their commit (see :meth:`flush_deadline`), so a crash replays them.

    Mappings go to ``table``; change events to ``table`` too when it is set,
    and otherwise each to ``<schema>.<table>`` of its source. With a ``key``
    (for change events: their own key columns by default) each key's last
    change since the previous commit is applied — the key's old row deleted,
    its new row appended, in one commit — so inserts, updates, deletes and
    replays all converge on the source's rows; without one, rows are appended.

    A missing table is created on its first commit, with the ``columns``
    declared and then those the records bring (typed by their SQL types, or
    by their values), and partitioned by ``partition_by``. Columns that
    records bring later are added to the table (``evolve_schema``).

    With an :class:`IcebergCheckpointStore` on the same catalog, every commit
    writes the source position into the summary of the snapshots it adds:
    data and position are committed together, and resuming reads the position
    back. A crash before the commit leaves data files no snapshot refers to,
    which no reader sees.

    :param warehouse: the warehouse directory, created when missing.
    :param table: ``namespace.table`` for every record; needed for mappings.
    :param key: columns to upsert by.
    :param catalog: the catalog's name.
    :param catalog_uri: the catalog database, ``sqlite:///path`` or
        ``postgresql://user@host/database``; ``catalog.db`` in the warehouse by default.
    :param columns: column name → Iceberg type (``long``, ``string``, ``decimal(12, 2)``,
        ``timestamptz``…) for tables the sink creates.
    :param partition_by: partition fields for tables the sink creates: a column,
        ``year|month|day|hour(column)``, ``bucket(N, column)`` or ``truncate(W, column)``.
    :param evolve_schema: add new columns to existing tables (otherwise a record
        with one is refused).
    :param target_file_size: bytes of column data to gather before a commit.
    :param commit_interval: seconds records may wait for their commit.
    :param name: the sink's name.
    :raises ConfigError: for a bad table name, type, partition field or size.
    """

    def __init__(
        self,
        warehouse: str,
        *,
        table: str | None = None,
        key: list[str] | None = None,
        catalog: str = "asyncetl",
        catalog_uri: str | None = None,
        columns: dict[str, str] | None = None,
        partition_by: list[str] | None = None,
        evolve_schema: bool = True,
        target_file_size: int = 64 * _MIB,
        commit_interval: float = 10.0,
        name: str = "iceberg_sink",
    ) -> None:
        where = f"IcebergSink {name}"
        self.catalog = CatalogSettings(str(warehouse), catalog_uri, catalog)
        self.catalog.check(where)
        if target_file_size < 1:
            raise ConfigError(
                f"must be a positive number of bytes, not {target_file_size}",
                where=where,
                key="target_file_size",
            )
        if not commit_interval >= 0:
            raise ConfigError(
                f"must be a number of seconds, at least 0, not {commit_interval}",
                where=where,
                key="commit_interval",
            )
        self.settings = TableSettings(
            table=split_identifier(where, "table", table) if table is not None else None,
            key=tuple(key or ()),
            declared={c: declared_type(where, c, t) for c, t in (columns or {}).items()},
            partitions=parse_partitions(where, partition_by or ()),
            evolve=evolve_schema,
        )
        self.target_file_size = target_file_size
        self.commit_interval = commit_interval
        self.name = name
        self._catalog: SqlCatalog | None = None
        self._gatherer = Gatherer(self.settings, self._open_catalog)
        self._deadline: float | None = None
        self._transactional = False
        self._checkpoint: Checkpoint | None = None
        self._last: tuple[Position, int] | None = None  # position and number of the last commit

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the catalog (creating the warehouse and catalog tables when missing).

        :raises PermanentError: when the catalog database cannot be opened.
        """
        await anyio.to_thread.run_sync(self._open_catalog)

    async def aclose(self) -> None:
        catalog, self._catalog = self._catalog, None
        self._gatherer = Gatherer(self.settings, self._open_catalog)
        self._deadline = None
        if catalog is not None:
            await anyio.to_thread.run_sync(catalog.engine.dispose)

    async def check(self) -> list[Problem]:
        """Whether the warehouse can be made and the catalog database answers; creates nothing."""
        return await anyio.to_thread.run_sync(self.catalog.problems)

    def _open_catalog(self) -> SqlCatalog:
        if self._catalog is None:
            self._catalog = self.catalog.open()
        return self._catalog

    # -- exactly-once ----------------------------------------------------------

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for an :class:`IcebergCheckpointStore` on the same catalog."""
        return isinstance(store, IcebergCheckpointStore) and (
            store.catalog.database_uri,
            store.catalog.name,
        ) == (self.catalog.database_uri, self.catalog.name)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[IcebergRecord] | None:
        """Commit checkpoints of ``store`` in the snapshot summaries, if :meth:`commits_to` it."""
        if not self.commits_to(store):
            return None
        self._transactional = True
        return self._write_with_checkpoint

    # -- writing ---------------------------------------------------------------

    async def write(self, batch: Batch[IcebergRecord]) -> Sequence[Reject]:
        """Gather the batch (committing when enough is held); return the records refused.

        :raises PermanentError: when a table cannot be read, created or committed.
        """
        return await self._gather(batch, None, None)

    async def _write_with_checkpoint(
        self, batch: Batch[IcebergRecord], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        return await self._gather(batch, checkpoint, settle)

    async def _gather(
        self, batch: Batch[IcebergRecord], checkpoint: Checkpoint | None, settle: Settle | None
    ) -> list[Reject]:
        add = partial(self._gatherer.add, batch.records)
        rejects = await anyio.to_thread.run_sync(add) if batch.records else []
        if settle is not None:
            letters = await settle(rejects)
            if letters:
                raise PermanentError(f"{self.name} was given dead letters to store but keeps none")
        self._checkpoint = checkpoint or self._checkpoint
        if self._deadline is None:
            self._deadline = anyio.current_time() + self.commit_interval
        # Also past the deadline: while batches keep coming the engine never waits for one.
        if self._gatherer.nbytes >= self.target_file_size or anyio.current_time() >= self._deadline:
            await self.flush()
        return rejects

    def flush_deadline(self) -> float | None:
        """When the gathered batches are committed at the latest; ``None`` when none are held."""
        return self._deadline

    async def flush(self) -> None:
        """Commit everything gathered, each table in one commit, the position with it.

        :raises PermanentError: when a table cannot be created or committed.
        :raises TransientError: when a commit kept failing through every retry.
        """
        if self._deadline is None:
            return
        taken = await anyio.to_thread.run_sync(self._gatherer.take)
        if taken:
            done: set[str] = set()
            await retry_call(
                lambda: anyio.to_thread.run_sync(self._commit_all, taken, done),
                policy=_COMMIT_RETRY,
                what=f"commit to Iceberg catalog {self.catalog.name!r}",
            )
        self._deadline = None

    def _commit_all(self, taken: list[tuple[IcebergTable, Changes]], done: set[str]) -> None:
        """Commit each table not yet ``done``; blocks, in a worker thread."""
        properties = self._properties([table.name for table, _ in taken])
        for table, changes in taken:
            if table.name in done:
                continue  # committed before a later table's commit failed and was retried
            try:
                table.commit(changes, properties)
            except (PermanentError, TransientError):
                raise
            except Exception as exc:
                raise mapped(exc, f"commit to Iceberg table {table.name!r}") from exc
            done.add(table.name)
        if properties:
            assert self._checkpoint is not None
            assert self._last is not None
            self._last = (self._checkpoint.position, self._last[1] + 1)
        _log.debug("committed", tables=sorted(done), position=self._checkpoint_position())

    def _properties(self, tables: list[str]) -> dict[str, str]:
        checkpoint = self._checkpoint
        if not self._transactional or checkpoint is None or not tables:
            return {}
        if self._last is None:
            catalog = self._open_catalog()
            marks = marks_in(catalog, checkpoint.pipeline, checkpoint.source)
            # A commit a crash cut short is undone where it landed: the replay brings it again.
            undone = undo_unfinished(catalog, checkpoint.pipeline, checkpoint.source, marks)
            if undone:
                _log.info("rolled back a commit cut short", tables=undone)
            self._last = resume_point(marks)
        previous, number = self._last
        return summary(
            checkpoint.pipeline,
            checkpoint.source,
            number + 1,
            checkpoint.position,
            previous,
            tables,
        )

    def _checkpoint_position(self) -> Position:
        return None if self._checkpoint is None else self._checkpoint.position
