"""The PostgreSQL sink: one transaction per batch, COPY speed, every idempotency pattern.

Modes (``mode=``), each written by its own writer, chosen once when the sink is
made (the modules of :mod:`~asyncetl.connectors.postgres._writers` tell the
details):

``upsert``
    ``INSERT … ON CONFLICT (key) DO UPDATE`` from the batch bound as arrays (or
    COPYed into a temporary table), with an optional ``version_column`` guard;
    batches of new keys only are COPYed straight into the table until the first
    conflict.
``append``
    COPY straight into the table; with ``row_hash``, rows already there are skipped.
``replace_partition``
    Delete every partition (``partition`` columns) present in the batch, then insert it.
``refresh_swap``
    Append into ``<table>__asyncetl_new``, then swap it in at once: in the
    transaction of the batch that ends at position ``None`` (a complete
    ``TableSource(snapshot=true)`` scan) or when :meth:`PostgresSink.swap` is
    called. Without checkpoints in the same database, an empty last batch is not
    written, so call :meth:`~PostgresSink.swap` yourself then.
``soft_delete``
    Like ``upsert``, but a record whose ``delete_flag`` field is true sets the
    row's ``deleted_at`` to ``now()`` instead of deleting it; a live record clears it.

``row_hash`` (a hash of the row kept in ``row_hash_column``) is a concern the
writers share, not a mode: keyed modes skip rewriting unchanged rows, appending
ones skip rows already there.

The sink keeps what every mode shares: the pool, creating and checking the
table, planning records into COPY rows, the batch's transaction (with the
checkpoint when both live in one database) and its retries. A batch is retried
whole, in a fresh transaction, after a transient failure (a killed connection, a
serialization failure): the failed transaction rolled back, so it is neither
lost nor applied twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from asyncetl.connectors.postgres import _sql
from asyncetl.connectors.postgres._binary import BinaryPage, check_binary_types
from asyncetl.connectors.postgres._bisect import bisectable, is_record_error, load_bisecting
from asyncetl.connectors.postgres._check import sink_problems
from asyncetl.connectors.postgres._checkpoint import PostgresCheckpointStore
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._deadletter import PostgresDeadLetterStore, settle_on
from asyncetl.connectors.postgres._load import Loaded, TargetChanged
from asyncetl.connectors.postgres._plan import Group, Planner, is_copy_data, reject_bad_values
from asyncetl.connectors.postgres._rows import infer_columns
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres._writers import (
    RefreshSwapWriter,
    RowHash,
    SinkMode,
    WriteOptions,
    Writer,
    writer_class,
)
from asyncetl.connectors.postgres.schema import (
    Column,
    TableSchema,
    describe_source,
    describe_table,
)
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.contract import apply_contract, check_contract
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError
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

__all__ = ["PostgresSink", "SinkMode"]

Record = Mapping[str, Any]
#: Times a batch is planned again after the table's columns changed under it, before
#: one last try whose change, if any, fails the batch.
_REPLANS = 3
_log = get_logger("asyncetl.postgres")
Row = tuple[Any, ...]
T = TypeVar("T")


class PostgresSink(Sink[Mapping[str, Any]]):
    """Writes dict records to a PostgreSQL table, one transaction per batch.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param table: ``table`` or ``schema.table`` (see :meth:`TableName.parse`).
    :param mode: ``upsert``, ``append``, ``replace_partition``, ``refresh_swap`` or ``soft_delete``.
    :param key: the conflict key (default: the table's primary key).
    :param partition: the columns a ``replace_partition`` batch replaces by.
    :param version_column: never overwrite a row whose version is newer.
    :param row_hash: columns hashed into ``row_hash_column`` (``["*"]``: every
        column of the record), so unchanged rows are skipped.
    :param skip_unchanged: ``upsert`` only, and its default there (unless ``row_hash``,
        which tells unchanged rows by their hash): a row whose stored values
        equal the new ones is not rewritten (it is counted as unchanged), compared in
        the server; like ``row_hash`` without a hash column, so it works on any existing
        table. A replayed or re-read batch then writes nothing, fires no ``UPDATE``
        trigger and adds nothing to the WAL; ``False`` rewrites every row it is given.
    :param deleted_at: the ``soft_delete`` timestamp column.
    :param delete_flag: the record field that marks a delete in ``soft_delete`` mode.
    :param create: create the table when missing, from ``source_table`` at
        ``source_dsn`` when given, otherwise from the first batch's values.
    :param not_null: columns created ``NOT NULL`` when the table is created from
        a batch's values (key columns always are).
    :param columns: the columns, in order, that lines in COPY's text format fill
        (records of a ``TableSource(format="copy")``); default: the table's columns.
    :param schema_contract: what a record field the table has no column for does
        (see :mod:`asyncetl.core.contract`): ``freeze`` (default: the record is
        refused and takes the failure policy, so nothing is lost or changed
        unasked), ``evolve`` (the field becomes a new column), ``discard_value``
        or ``discard_row``.
    :param text_arrays: stage array columns as text and cast them, so that a value given as
        the array's text (``TableSource(text_arrays=True)``) keeps lower bounds other than 1.
    :param retries: retries of a batch after transient failures.
    :param retry_max_time: seconds after which no retry starts.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        *,
        name: str = "postgres",
        mode: str = "upsert",
        key: list[str] | None = None,
        partition: list[str] | None = None,
        version_column: str | None = None,
        row_hash: list[str] | None = None,
        row_hash_column: str = "_row_hash",
        skip_unchanged: bool | None = None,
        deleted_at: str = "deleted_at",
        delete_flag: str = "_deleted",
        create: bool = False,
        source_dsn: str | None = None,
        source_table: str | None = None,
        not_null: list[str] | None = None,
        columns: list[str] | None = None,
        schema_contract: str = "freeze",
        text_arrays: bool = False,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        where = f"sink {name}"
        if skip_unchanged is None:  # row_hash tells unchanged rows already, by their hash
            skip_unchanged = mode == "upsert" and not row_hash
        options = WriteOptions(
            key=tuple(key or ()),
            partition=tuple(partition or ()),
            version_column=version_column,
            row_hash=RowHash(tuple(row_hash), row_hash_column) if row_hash else None,
            deleted_at=deleted_at,
            delete_flag=delete_flag,
            skip_unchanged=skip_unchanged,
        )
        writer = writer_class(mode, options, where=where)
        self.schema_contract = check_contract(schema_contract, where)
        if self.schema_contract == "evolve" and mode == "refresh_swap":
            raise ConfigError(
                'evolve is not for mode = "refresh_swap", whose staging table is made '
                "from the target's columns",
                where=where,
                key="schema_contract",
            )
        if (source_dsn is None) != (source_table is None):
            raise ConfigError(
                "give both source_dsn and source_table, or neither", where=where, key="source_table"
            )
        self.name = name
        self.dsn = Dsn.parse(dsn)
        self.table = TableName.parse(table)
        self.mode: SinkMode = mode  # type: ignore[assignment]
        #: Writes the planned rows as ``mode`` says; chosen once, here.
        self.writer: Writer = writer(self.table, options)
        self.key = list(key) if key else None
        self.create = create
        self.not_null = [*(self.key or ()), *(not_null or ())]
        self.columns = list(columns) if columns else None
        self.text_arrays = text_arrays
        self.source = (
            (Dsn.parse(source_dsn), TableName.parse(source_table))
            if (source_dsn and source_table)
            else None
        )
        self.policy = retry_policy(retries, retry_max_time)
        self._pool: asyncpg.Pool | None = None
        self._checkpoints: PostgresCheckpointStore | None = None
        self._dead_letters: PostgresDeadLetterStore | None = None
        self._planner: Planner | None = None
        self._known: tuple[TableSchema | None, frozenset[str]] = (None, frozenset())
        #: Target rows inserted, updated or flagged since construction.
        self.rows_changed = 0
        self._binary_checked = False

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        # json values are turned into text by _group, which is cheaper than a codec. Its
        # batches leave no session state (their settings and locks end with their
        # transaction; the staging tables are kept on purpose): no reset between them.
        self._pool = await open_pool(
            self.dsn, policy=self.policy, json_values=False, reset_sessions=False
        )
        try:
            schema = await self._describe(self.table)
            if schema is None:
                await self._create_at_open()
            else:
                await self._ready(schema)
        except BaseException:
            await self.aclose()
            raise

    async def _create_at_open(self) -> None:
        if not self.create:
            raise PermanentError(
                f"table {self.table} does not exist in {self.dsn.where}; create it "
                "or set create = true on the sink",
                setting="table",
            )
        if self.source is not None:
            source = await self._source_schema()
            await self._create(list(source.columns), self.key or list(source.primary_key))

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def check(self) -> list[Problem]:
        """Whether the table exists (or ``create`` is set) and the role has the mode's rights.

        ``refresh_swap`` also needs CREATE on the schema (for its staging table) and
        ownership of the table (to rename it away).
        """
        return await sink_problems(self.dsn, self.table, self.mode, create=self.create)

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`PostgresCheckpointStore` in the same database."""
        return isinstance(store, PostgresCheckpointStore) and store.dsn.same_database(self.dsn)

    def stores_dead_letters_of(self, store: DeadLetterStore) -> bool:
        """True for a :class:`PostgresDeadLetterStore` in the same database."""
        return isinstance(store, PostgresDeadLetterStore) and store.dsn.same_database(self.dsn)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[Record] | None:
        """Save checkpoints of ``store`` in each batch's transaction, if :meth:`commits_to` it.

        Dead letters of ``dead_letters`` too, if :meth:`stores_dead_letters_of` it.
        Call it before :meth:`open`: in ``refresh_swap`` mode the staging table a
        crashed run left then matches its checkpoint and is kept.
        """
        if not isinstance(store, PostgresCheckpointStore) or not self.commits_to(store):
            return None
        self._checkpoints = store
        if isinstance(dead_letters, PostgresDeadLetterStore) and self.stores_dead_letters_of(
            dead_letters
        ):
            self._dead_letters = dead_letters
        return self._write_with_checkpoint

    @property
    def schema(self) -> TableSchema | None:
        """The table's columns and keys, once the table exists."""
        return self.writer.schema

    @property
    def target(self) -> TableName:
        """Where batches go: the staging table in ``refresh_swap`` mode, else the table."""
        return self.writer.target

    @property
    def resolved_key(self) -> list[str]:
        """The conflict key: ``key`` or the table's primary key."""
        return self.writer.key

    # -- writing -------------------------------------------------------------

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        return await self._write(batch.records, None, None, self._swaps_after(batch))

    async def _write_with_checkpoint(
        self, batch: Batch[Record], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        return await self._write(batch.records, checkpoint, settle, self._swaps_after(batch))

    def _swaps_after(self, batch: Batch[Record]) -> bool:
        return isinstance(self.writer, RefreshSwapWriter) and self.writer.swaps_after(batch)

    async def _write(
        self,
        records: Sequence[Record],
        checkpoint: Checkpoint | None,
        settle: Settle | None = None,
        swap: bool = False,
    ) -> list[Reject]:
        for _ in range(_REPLANS):
            try:
                return await self._write_planned(records, checkpoint, settle, swap)
            except TargetChanged as changed:
                # Nothing of the batch was written: planned again with the table as it is.
                await self._follow_table(str(changed))
            except PermanentError as exc:
                if not isinstance(exc.__cause__, asyncpg.UndefinedColumnError):
                    raise
                await self._follow_table(str(exc.__cause__))  # dropped or renamed since
        return await self._write_planned(records, checkpoint, settle, swap)

    async def _write_planned(
        self,
        records: Sequence[Record],
        checkpoint: Checkpoint | None,
        settle: Settle | None = None,
        swap: bool = False,
    ) -> list[Reject]:
        if is_copy_data(records):
            return await self._write_text(records, checkpoint, settle, swap)
        groups, rejects = await self.plan(records)
        if swap and self.schema is None:
            swap = False  # nothing was ever loaded: no table to swap in
        try:
            await self._commit(groups, checkpoint, swap, settle, rejects)
            return rejects
        except AsyncetlError as exc:
            if not (is_record_error(exc.__cause__) and bisectable(groups)):
                raise
            return await self._commit_bisecting(groups, checkpoint, swap, settle, rejects)
        except (TypeError, ValueError, ArithmeticError) as exc:
            bad = await self.bad_values(groups)
            if not bad:
                raise PermanentError(
                    f"cannot write to table {self.target}: {type(exc).__name__}: {exc}"
                ) from exc
        await self._commit(groups, checkpoint, swap, settle, rejects + bad)
        return rejects + bad

    async def plan(self, records: Sequence[Record]) -> tuple[list[Group], list[Reject]]:
        """Check ``records`` against the table (creating it first if asked) and group them.

        Lines in COPY's text format (``bytes``) pass through as one group, refusing none.

        :returns: the groups to :meth:`load` and the records refused, with their reasons.
        """
        if is_copy_data(records) and self._planner is not None:
            await self._check_binary(records[0])
            return self._planner.plan_copy(records), []  # type: ignore[arg-type]
        if self.schema is None:
            if not records:
                return [], []
            await self._create(infer_columns(records, self.not_null), self.key or [])
        assert self.schema is not None
        assert self._planner is not None
        if (planned := self._planner.plan_block(records)) is not None:
            return planned
        contracted = apply_contract(
            records, self._known_field, self.schema_contract, str(self.schema.table)
        )
        if contracted.new_fields:
            await self._add_columns(contracted.records, contracted.new_fields)
        groups, rejects = self._planner.plan(contracted.records)
        return groups, contracted.rejects + rejects

    def _known_field(self, name: str) -> bool:
        schema = self.schema
        assert schema is not None
        if self._known[0] is not schema:
            flag = self.writer.delete_flag
            names = frozenset([*schema.column_names, *([flag] if flag else [])])
            self._known = (schema, names)
        return name in self._known[1]

    async def _add_columns(self, records: Sequence[Record], names: Sequence[str]) -> None:
        """``evolve``: add the columns ``names``, typed from their values in ``records``."""
        carrying = [{n: r[n] for n in names if n in r} for r in records]
        columns = [c for c in infer_columns(carrying) if c.name in names]
        table = self.target

        async def body(conn: asyncpg.Connection) -> None:
            for column in columns:
                await conn.execute(_sql.add_column(table, column.name, column.type))

        await self._transact(f"adding columns to {table}", body)
        schema = await self._describe(table)
        assert schema is not None
        self._bind(schema)

    async def _follow_table(self, change: str) -> None:
        """Read the table's columns again after an ``ALTER TABLE`` changed their types, so
        that values are rounded, cut and checked as the columns now say."""
        _log.info("table changed while writing; reading its columns again", change=change)
        schema = await self._describe(self.target)
        if schema is None:
            raise PermanentError(f"table {self.target} was dropped while writing to it")
        self._bind(schema)

    def _bind(self, schema: TableSchema) -> None:
        self.writer.bind(schema)
        self._planner = Planner(schema, self.writer, text_columns=self.columns)
        self._binary_checked = False

    async def _write_text(
        self,
        lines: Sequence[Any],
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        swap: bool,
    ) -> list[Reject]:
        if self._planner is None:
            raise PermanentError(
                f"table {self.table} does not exist in {self.dsn.where} and COPY lines do "
                "not say which columns it needs: create it, or give the sink source_dsn "
                "and source_table with create = true"
            )
        await self._check_binary(lines[0])
        groups = self._planner.plan_copy(lines)
        try:
            await self._commit(groups, checkpoint, swap, settle, [])
        except PermanentError as exc:
            if not isinstance(exc.__cause__, asyncpg.BadCopyFileFormatError):
                raise
            columns = ", ".join(groups[0].columns)
            raise PermanentError(
                f"COPY lines do not fit the columns ({columns}) of table {self.target}: "
                f"{exc.__cause__}; the source must read these columns in this order, "
                "or give the sink columns = [...] in the source's order"
            ) from exc
        return []

    async def _check_binary(self, record: object) -> None:
        """Refuse binary pages unless the source's columns have the table's types (once)."""
        if isinstance(record, BinaryPage) and not self._binary_checked:
            assert self.schema is not None
            assert self._planner is not None
            source = await self._source_schema() if self.source is not None else None
            check_binary_types(source, self.schema, self._planner.text_columns)
            self._binary_checked = True

    async def load(self, conn: asyncpg.Connection, groups: Sequence[Group]) -> Loaded:
        """Load planned ``groups`` through ``conn``, inside the caller's transaction.

        :returns: target rows inserted, updated or flagged, and the records left
            unwritten because the target held them (or a later record of their
            key in the batch superseded them) when the writer compares.
        """
        changed = unchanged = 0
        for group in groups:
            if group.rows:
                written = await self.writer.load(conn, group)
                changed += written
                if self.writer.compares:
                    unchanged += len(group.rows) - written
        return Loaded(changed, unchanged)

    def count(self, loaded: Loaded) -> None:
        """Count what a committed load did."""
        self.rows_changed += loaded.changed
        self.unchanged += loaded.unchanged

    async def _commit(
        self,
        groups: list[Group],
        checkpoint: Checkpoint | None,
        swap: bool,
        settle: Settle | None,
        rejects: Sequence[Reject],
    ) -> None:
        async def body(conn: asyncpg.Connection) -> Loaded:
            loaded = await self.load(conn, groups)
            await self._close_batch(conn, settle, rejects, checkpoint, swap)
            return loaded

        self.count(await self._transact(f"writing to {self.target}", body))
        if swap:
            await self._swapper.after_swap(self._transact)

    async def _commit_bisecting(
        self,
        groups: list[Group],
        checkpoint: Checkpoint | None,
        swap: bool,
        settle: Settle | None,
        rejects: Sequence[Reject],
    ) -> list[Reject]:
        """Write the batch again, leaving out only the records the server refuses alone."""

        async def body(conn: asyncpg.Connection) -> tuple[int, list[Reject]]:
            changed, refused = 0, list[Reject]()
            for group in groups:
                if group.rows:
                    loaded, bad = await load_bisecting(
                        conn, self.writer.load, group, str(self.target)
                    )
                    changed, refused = changed + loaded, refused + bad
            every_reject = [*rejects, *refused]
            await self._close_batch(conn, settle, every_reject, checkpoint, swap)
            return changed, every_reject

        changed, every_reject = await self._transact(
            f"writing to {self.target}, record by record", body
        )
        self.rows_changed += changed
        if swap:
            await self._swapper.after_swap(self._transact)
        return every_reject

    async def _close_batch(
        self,
        conn: asyncpg.Connection,
        settle: Settle | None,
        rejects: Sequence[Reject],
        checkpoint: Checkpoint | None,
        swap: bool,
    ) -> None:
        """What a batch's transaction does after its rows, before COMMIT: settle the
        records refused (a failing policy rolls the batch and its checkpoint back),
        save the checkpoint, swap the staging table in."""
        await settle_on(conn, settle, rejects, self._dead_letters)
        if checkpoint is not None and self._checkpoints is not None:
            await self._checkpoints.save_on(conn, checkpoint)
        if swap:
            await self._swapper.swap_in(conn)

    async def bad_values(self, groups: Sequence[Group]) -> list[Reject]:
        """Reject the records holding values their column cannot take; drop them from ``groups``.

        For after a load failed with a ``TypeError``/``ValueError`` from asyncpg's encoder.
        """
        assert self.schema is not None
        return await reject_bad_values(groups, self.schema, str(self.target), self._transact)

    # -- plumbing ------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresSink used before open()")
        return self._pool

    async def _transact(self, what: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``body`` in one transaction on the pool, retried whole after transient failures."""
        return await in_transaction(self.pool, self.dsn, what, body, policy=self.policy)

    # -- schema --------------------------------------------------------------

    async def _describe(self, table: TableName) -> TableSchema | None:
        async def body(conn: asyncpg.Connection) -> TableSchema | None:
            return await describe_table(conn, table, arrays_as_text=self.text_arrays)

        return await self._transact(f"reading the catalog for {table}", body)

    async def _source_schema(self) -> TableSchema:
        assert self.source is not None
        return await describe_source(*self.source, policy=self.policy)

    async def _create(self, columns: list[Column], key: Sequence[str]) -> None:
        """Create the table from ``columns`` plus the columns the mode needs, and get ready."""
        ddl = self.writer.table_ddl(columns, key)

        async def body(conn: asyncpg.Connection) -> None:
            if self.table.schema is not None:
                await conn.execute(_sql.create_schema(self.table.schema))
            await conn.execute(ddl)

        await self._transact(f"creating table {self.table}", body)
        schema = await self._describe(self.table)
        if schema is not None:
            await self._ready(schema)

    async def _ready(self, schema: TableSchema) -> None:
        """Check the table against the mode and let the writer get ready to write to it."""
        self.writer.bind(schema)
        self.writer.check(schema, self.columns or ())
        self._planner = Planner(schema, self.writer, text_columns=self.columns)
        # With checkpoints in the same transactions, what a crashed run left (a
        # refresh_swap staging table) matches its checkpoint and is resumed.
        await self.writer.open(self._transact, resume=self._checkpoints is not None)

    # -- refresh_swap --------------------------------------------------------

    async def swap(self) -> None:
        """Publish a ``refresh_swap`` load now: rename the staging table over the target.

        Batches ending at position ``None`` (a snapshot :class:`TableSource` at the
        end of a complete scan) swap by themselves, in their own transaction.

        :raises ConfigError: when the mode is not ``refresh_swap``.
        """
        swapper = self._swapper
        await self._transact(f"swapping {self.target} in", swapper.swap_in)
        await swapper.after_swap(self._transact)

    @property
    def _swapper(self) -> RefreshSwapWriter:
        if not isinstance(self.writer, RefreshSwapWriter) or self.schema is None:
            raise ConfigError(
                "swap() is for a refresh_swap sink whose table exists", where=f"sink {self.name}"
            )
        return self.writer
