"""The DuckDB sink: one transaction per batch, bulk loads through Arrow, four modes.

``append``
    Insert the batch.
``upsert``
    Delete the rows of the batch's keys, then insert the batch's last row of
    each key; change events are applied here (inserts, updates and deletes by
    key, truncates in order).
``replace_partition``
    Delete every partition (``partition`` columns) present in the batch, then insert it.
``refresh_swap``
    Append into ``<table>__asyncetl_new``, then swap it in at once: in the
    transaction of the batch that ends at position ``None`` (a complete
    snapshot scan) or when :meth:`DuckDBSink.swap` is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from functools import partial
from typing import Literal, Protocol, get_args

import anyio.from_thread
import duckdb
import pyarrow as pa

from asyncetl.connectors.duckdb import _tables
from asyncetl.connectors.duckdb._bisect import RECORD_ERRORS, refused_rows
from asyncetl.connectors.duckdb._changes import Segment, has_changes, segments
from asyncetl.connectors.duckdb._check import table_problems
from asyncetl.connectors.duckdb._connection import DuckDBConnection, same_database, transaction
from asyncetl.connectors.duckdb._sql import quote_ident
from asyncetl.connectors.duckdb._stores import (
    DuckDBCheckpointStore,
    DuckDBDeadLetterStore,
    checkpoint_row,
    letter_row,
)
from asyncetl.core.arrow import arrow_table
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.columnar import Columns, ExtraColumns, to_columns
from asyncetl.core.contract import SchemaContract, apply_contract, check_contract
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    Problem,
    Settle,
    Sink,
    TransactionalWriter,
)
from asyncetl.core.logs import get_logger
from asyncetl.core.settings_check import identifier_names

__all__ = ["DuckDBSink", "DuckDBSinkMode"]

DuckDBSinkMode = Literal["append", "upsert", "replace_partition", "refresh_swap"]
_MODES: tuple[str, ...] = get_args(DuckDBSinkMode)
#: ``extra_columns`` (before ``schema_contract``) → the contract it meant.
_RENAMED: dict[str, SchemaContract] = {
    "reject": "freeze",
    "ignore": "discard_value",
    "evolve": "evolve",
}
# The contract has run first: a field still unknown to the table is one to add.
_EVOLVE: ExtraColumns = "evolve"
_log = get_logger("asyncetl.duckdb")
_STAGING_SUFFIX = "__asyncetl_new"


class DuckDBSink(Sink[object]):
    """Loads mappings (or change events) into a DuckDB table, one transaction per batch.

    Each batch becomes one Arrow table, typed by the table's columns (or, for
    a new table or column, by the values), and is loaded with one statement per
    step: no row-by-row inserts. A record with a value its column cannot hold
    exactly, without a key, or with a column the table lacks (``schema_contract
    = "freeze"``) is refused with a reason; the rest of the batch loads. So is
    a record that breaks one of the table's constraints (NOT NULL, PRIMARY KEY
    or UNIQUE, CHECK): the batch is tried again in halves to find it, and it
    is refused with DuckDB's error. Dicts and lists are stored as JSON text.

    With a :class:`DuckDBCheckpointStore` on the same file, each batch's
    checkpoint is written in its transaction (exactly-once even in ``append``
    mode), and so are its dead letters with a :class:`DuckDBDeadLetterStore`
    on the same file.

    :param path: the database file; its directory must exist.
    :param table: the target table, one identifier (it is quoted, never parsed).
    :param mode: ``append``, ``upsert``, ``replace_partition`` or ``refresh_swap``.
    :param key: the columns ``upsert`` replaces rows by (a created table gets them
        as its PRIMARY KEY).
    :param partition: the columns a ``replace_partition`` batch replaces by.
    :param create: create the table when missing, typed from the first batch.
    :param schema_contract: what a record field the table has no column for does, as for
        the other database sinks (see :mod:`asyncetl.core.contract`): ``freeze`` (default:
        the record is refused, naming table and field), ``evolve`` (the field becomes a new
        column), ``discard_value`` (the record loads without it) or ``discard_row`` (the
        record is left out, with a warning).
    :param extra_columns: deprecated spelling of ``schema_contract``: ``reject``
        (``freeze``), ``ignore`` (``discard_value``) or ``evolve``.
    :param name: the sink's name.
    :raises ConfigError: for an unknown mode or contract, both ``schema_contract`` and
        ``extra_columns``, a bad name, or a mode without the columns it needs.
    """

    def __init__(
        self,
        path: str,
        table: str,
        *,
        mode: str = "append",
        key: list[str] | None = None,
        partition: list[str] | None = None,
        create: bool = False,
        schema_contract: str | None = None,
        extra_columns: str | None = None,
        name: str = "duckdb_sink",
    ) -> None:
        where = f"DuckDBSink {name}"
        _check_choice(where, "mode", mode, _MODES)
        contract = _contract(where, schema_contract, extra_columns)
        _check_names(where, "table", [table])
        for option, names in (("key", key), ("partition", partition)):
            if names is not None:
                _check_names(where, option, names)
        needed = {"upsert": ("key", key), "replace_partition": ("partition", partition)}
        if mode in needed and not needed[mode][1]:
            option = needed[mode][0]
            raise ConfigError(
                f'mode {mode!r} needs {option} columns, e.g. {option} = ["id"]',
                where=where,
                key=option,
            )
        self.path = str(path)
        self.table = table
        self.mode: DuckDBSinkMode = mode  # type: ignore[assignment]
        self.key = list(key or ())
        self.partition = list(partition or ())
        self.create = create
        self.schema_contract: SchemaContract = contract
        self.name = name
        self._db = DuckDBConnection(self.path)
        self._checkpoints: DuckDBCheckpointStore | None = None
        self._dead_letters: DuckDBDeadLetterStore | None = None

    @property
    def target(self) -> str:
        """Where batches go: the staging table in ``refresh_swap`` mode, else the table."""
        return self.table + _STAGING_SUFFIX if self.mode == "refresh_swap" else self.table

    async def open(self) -> None:
        """Connect and check that the table exists (or may be created).

        In ``refresh_swap`` mode a staging table a crashed run left is dropped,
        unless checkpoints travel in this sink's transactions (then it matches them).

        :raises PermanentError: when the database cannot be opened, or the table
            is missing and ``create`` is false.
        """
        await self._db.run(self._prepare, what=f"opening table {self.table!r}")

    async def aclose(self) -> None:
        await self._db.close()

    async def check(self) -> list[Problem]:
        """Whether the database can be written and the table exists (or ``create`` is set)."""
        return await table_problems(self.path, self.table, create=self.create)

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`DuckDBCheckpointStore` on the same database file."""
        return isinstance(store, DuckDBCheckpointStore) and same_database(store.path, self.path)

    def stores_dead_letters_of(self, store: DeadLetterStore) -> bool:
        """True for a :class:`DuckDBDeadLetterStore` on the same database file."""
        return isinstance(store, DuckDBDeadLetterStore) and same_database(store.path, self.path)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[object] | None:
        """Save checkpoints of ``store`` in each batch's transaction, if :meth:`commits_to` it.

        Dead letters of ``dead_letters`` too, if :meth:`stores_dead_letters_of` it.
        """
        if not isinstance(store, DuckDBCheckpointStore) or not self.commits_to(store):
            return None
        self._checkpoints = store
        if isinstance(dead_letters, DuckDBDeadLetterStore) and self.stores_dead_letters_of(
            dead_letters
        ):
            self._dead_letters = dead_letters
        return self._write_with_checkpoint

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        """Load the batch in one transaction; return the records refused.

        :raises PermanentError: when the table is missing (without ``create``), or
            DuckDB refuses the batch (a constraint, a column it cannot cast).
        """
        return await self._write(batch, None, None)

    async def _write_with_checkpoint(
        self, batch: Batch[object], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        return await self._write(batch, checkpoint, settle)

    async def swap(self) -> None:
        """Publish a ``refresh_swap`` load now: the staging table replaces the table.

        :raises ConfigError: when the mode is not ``refresh_swap``.
        """
        if self.mode != "refresh_swap":
            raise ConfigError(
                f"swap() is for mode 'refresh_swap', not {self.mode!r}", where=f"sink {self.name}"
            )

        def body(conn: duckdb.DuckDBPyConnection) -> None:
            with transaction(conn):
                self._swap(conn)

        await self._db.run(body, what=f"swapping {self.target!r} in")

    async def _write(
        self, batch: Batch[object], checkpoint: Checkpoint | None, settle: Settle | None
    ) -> list[Reject]:
        swap = self.mode == "refresh_swap" and batch.position is None
        call = partial(self._transaction, batch.records, checkpoint, settle, swap)
        return await self._db.run(call, what=f"write to table {self.table!r}")

    # -- in the worker thread ---------------------------------------------------

    def _prepare(self, conn: duckdb.DuckDBPyConnection) -> None:
        if self.mode == "refresh_swap" and self._checkpoints is None:
            _tables.drop_table(conn, self.target)
        if _tables.table_types(conn, self.table) is None and not self.create:
            raise self._missing_table()

    def _transaction(
        self,
        records: Sequence[object],
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        swap: bool,
        conn: duckdb.DuckDBPyConnection,
    ) -> list[Reject]:
        try:
            return self._commit(conn, records, checkpoint, settle, swap, [])
        except RECORD_ERRORS as exc:
            if not records:
                raise
            failure = exc
        # Some rows broke a constraint: find them, and load the rest without them.
        bad = refused_rows(len(records), partial(self._fails, conn, records))
        if not bad:
            raise failure  # no record alone: the batch fails as a whole
        kept = [record for i, record in enumerate(records) if i not in bad]
        refused = [Reject(records[i], self._refusal(bad[i])) for i in sorted(bad)]
        return self._commit(conn, kept, checkpoint, settle, swap, refused)

    def _commit(
        self,
        conn: duckdb.DuckDBPyConnection,
        records: Sequence[object],
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        swap: bool,
        refused: list[Reject],
    ) -> list[Reject]:
        with transaction(conn):
            rejects = refused + (self._load(conn, records) if records else [])
            if settle is not None:
                # Before COMMIT: a failing policy rolls the batch and its checkpoint back.
                letters = anyio.from_thread.run(_settled, settle, list(rejects))
                self._store_letters(conn, letters)
            if checkpoint is not None:
                self._save_checkpoint(conn, checkpoint)
            if swap:
                self._swap(conn)
        return rejects

    def _fails(
        self, conn: duckdb.DuckDBPyConnection, records: Sequence[object], rows: Sequence[int]
    ) -> BaseException | None:
        """Load ``records`` at ``rows`` in a transaction rolled back after; DuckDB's error."""
        conn.execute("BEGIN TRANSACTION")
        try:
            self._load(conn, [records[i] for i in rows])
        except RECORD_ERRORS as exc:
            return exc
        finally:
            with suppress(duckdb.Error):
                conn.execute("ROLLBACK")
        return None

    def _refusal(self, error: BaseException) -> PermanentError:
        return PermanentError(f"{self._where} refused the record: {error}")

    def _load(self, conn: duckdb.DuckDBPyConnection, records: Sequence[object]) -> list[Reject]:
        if has_changes(records):
            return self._apply_changes(conn, records)
        types = self._target_types(conn)
        known = list(types) if types is not None else None
        records, refused = self._contracted(records, known)
        columns = to_columns(records, target=self._where, known=known, key=self.key, extra=_EVOLVE)
        self._stage(conn, columns, types or {}, self._load_staged)
        return refused + columns.rejects

    def _contracted(
        self, records: Sequence[object], known: list[str] | None
    ) -> tuple[list[object], list[Reject]]:
        """``records`` after the schema contract, and those it refused.

        Fields of a new table (``known`` is ``None``) are all known; what is not a mapping
        is left for :func:`~asyncetl.core.columnar.to_columns` to refuse.
        """
        if known is None:
            return list(records), []
        names = frozenset(known)
        mappings = [r for r in records if isinstance(r, Mapping)]
        contracted = apply_contract(
            mappings, names.__contains__, self.schema_contract, repr(self.table)
        )
        others = [r for r in records if not isinstance(r, Mapping)]
        return [*contracted.records, *others], contracted.rejects

    def _load_staged(self, conn: duckdb.DuckDBPyConnection, names: list[str]) -> None:
        if self.mode == "upsert":
            _tables.upsert(conn, self.target, names, self.key)
        elif self.mode == "replace_partition":
            _tables.replace_partitions(conn, self.target, names, self.partition)
        else:
            _tables.append(conn, self.target, names)

    def _apply_changes(
        self, conn: duckdb.DuckDBPyConnection, records: Sequence[object]
    ) -> list[Reject]:
        if self.mode != "upsert":
            raise PermanentError(
                f"DuckDBSink {self.name} got change events in mode {self.mode!r}; change "
                "events are applied by key: set mode = 'upsert' and key"
            )
        found, rejects = segments(records, self.key, self._where)
        for segment in found:
            rejects += self._apply_segment(conn, segment)
        return rejects

    def _apply_segment(self, conn: duckdb.DuckDBPyConnection, segment: Segment) -> list[Reject]:
        rejects: list[Reject] = []
        if segment.rows:
            types = self._target_types(conn)
            known = None if types is None else [*types, *_markers(segment)]
            rows = list(segment.rows.values())
            kept, refused = self._contracted(rows, known)
            origin = dict(segment.origin)
            if self.schema_contract == "discard_value":  # the same rows, copied where cut
                origin.update(
                    (id(new), origin[id(old)]) for old, new in zip(rows, kept, strict=True)
                )
            columns = to_columns(kept, target=self._where, known=known, key=self.key, extra=_EVOLVE)
            apply = partial(_apply_rows, table=self.target, key=self.key)
            self._stage(conn, columns, types or {}, apply)
            rejects = [Reject(origin[id(r.record)], r.error) for r in [*refused, *columns.rejects]]
        if segment.truncate_after and _tables.table_types(conn, self.target) is not None:
            _tables.truncate(conn, self.target)
        return rejects

    def _stage(
        self,
        conn: duckdb.DuckDBPyConnection,
        columns: Columns,
        types: Mapping[str, pa.DataType],
        load: _Load,
    ) -> None:
        """Register the batch as Arrow, make the table fit it, and ``load`` it."""
        table = arrow_table(columns, types, self._where)
        if not table.num_rows:
            return
        if self.mode == "upsert":  # keeps each key's last row; the other loads need no order
            ordinal = pa.array(range(table.num_rows), pa.int64())
            table = table.append_column(_tables.ORDINAL, ordinal)
        conn.register(_tables.BATCH, table)
        try:
            self._fit_table(conn, columns.names, types)
            load(conn, columns.names)
        finally:
            # A failed statement aborts the transaction, and unregistering then fails too:
            # the statement's error is the one to report (a later register replaces it).
            with suppress(duckdb.TransactionException):
                conn.unregister(_tables.BATCH)

    def _fit_table(
        self, conn: duckdb.DuckDBPyConnection, names: list[str], types: Mapping[str, pa.DataType]
    ) -> None:
        if self.mode == "refresh_swap" and types and self._staging_missing(conn):
            _tables.create_like(conn, self.target, self.table)
        elif not types:
            key = self.key if self.mode == "upsert" else []
            _tables.create_table(conn, self.target, names, key)
            return
        new = [name for name in _tables.stored(names) if name not in types]
        if new:
            _tables.add_columns(conn, self.target, new)

    def _staging_missing(self, conn: duckdb.DuckDBPyConnection) -> bool:
        return _tables.table_types(conn, self.target) is None

    def _target_types(self, conn: duckdb.DuckDBPyConnection) -> dict[str, pa.DataType] | None:
        types = _tables.table_types(conn, self.target)
        if types is None and self.mode == "refresh_swap":
            types = _tables.table_types(conn, self.table)
        if types is None and not self.create:
            raise self._missing_table()
        return types

    def _swap(self, conn: duckdb.DuckDBPyConnection) -> None:
        if _tables.table_types(conn, self.target) is not None:
            _tables.swap_in(conn, self.target, self.table)

    def _store_letters(
        self, conn: duckdb.DuckDBPyConnection, letters: Sequence[DeadLetter]
    ) -> None:
        if not letters:
            return
        if self._dead_letters is None:
            raise PermanentError(
                f"DuckDBSink {self.name} was given dead letters to store but has no "
                "dead-letter table bound"
            )
        for statement in self._dead_letters.sql.create:
            conn.execute(statement)
        conn.executemany(self._dead_letters.sql.put, [letter_row(x) for x in letters])

    def _save_checkpoint(self, conn: duckdb.DuckDBPyConnection, checkpoint: Checkpoint) -> None:
        assert self._checkpoints is not None
        conn.execute(self._checkpoints.sql.create)
        conn.execute(self._checkpoints.sql.save, checkpoint_row(checkpoint))

    @property
    def _where(self) -> str:
        return f"DuckDB table {self.table!r}"

    def _missing_table(self) -> PermanentError:
        return PermanentError(
            f"DuckDB table {self.table!r} does not exist in {self.path}; create it or set "
            "create = true",
            setting="table",
        )


class _Load(Protocol):
    """Loads the registered batch's columns ``names`` into the target."""

    def __call__(self, conn: duckdb.DuckDBPyConnection, names: list[str], /) -> None: ...


def _apply_rows(
    conn: duckdb.DuckDBPyConnection, names: list[str], *, table: str, key: list[str]
) -> None:
    _tables.apply_changes(conn, table, names, key)


def _markers(segment: Segment) -> list[str]:
    names = {name for row in segment.rows.values() for name in row}
    return sorted(name for name in names if name.startswith(_tables.META))


async def _settled(settle: Settle, rejects: list[Reject]) -> Sequence[DeadLetter]:
    return await settle(rejects)


def _contract(where: str, contract: str | None, extra: str | None) -> SchemaContract:
    """The schema contract that ``schema_contract``, or the deprecated ``extra_columns``,
    names (``freeze`` when neither does).

    :raises ConfigError: for an unknown mode, or both given.
    """
    if extra is None:
        return check_contract("freeze" if contract is None else contract, where)
    if contract is not None:
        raise ConfigError(
            "give schema_contract only: extra_columns is its old name",
            where=where,
            key="extra_columns",
        )
    _check_choice(where, "extra_columns", extra, tuple(_RENAMED))
    renamed = _RENAMED[extra]
    _log.warning(
        f'{where}: extra_columns is deprecated; write schema_contract = "{renamed}" instead '
        f'of extra_columns = "{extra}"',
    )
    return renamed


def _check_choice(where: str, key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(
            f"must be one of {', '.join(map(repr, choices))}, not {value!r}", where=where, key=key
        )


def _check_names(where: str, key: str, names: Sequence[object]) -> None:
    identifier_names(names, where, key, quote=quote_ident, system="DuckDB")
