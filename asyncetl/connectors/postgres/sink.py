"""The PostgreSQL sink: one transaction per batch, COPY speed, every idempotency pattern.

Modes (``mode=``):

``upsert``
    COPY the batch into a temporary table, then ``INSERT … SELECT … ON CONFLICT
    (key) DO UPDATE``. With ``version_column`` an older row never overwrites a
    newer one; with ``row_hash`` an unchanged row is not rewritten. Until a
    batch meets a key already in the table, batches are COPYed straight into it
    (inside a savepoint), which is what an initial load or an append-only source
    needs; from the first conflict on, every batch merges.
``append``
    COPY straight into the table. With ``row_hash`` the table has a unique
    ``_row_hash`` column and rows already there are skipped (``ON CONFLICT DO
    NOTHING``), so a replay appends nothing: the way to copy a table without a
    key. Identical rows in one batch are told apart by their occurrence number.
``replace_partition``
    Delete every partition (distinct values of ``partition`` columns) present in
    the batch, then insert the batch, in one transaction.
``refresh_swap``
    Append into a staging table ``<table>__asyncetl_new``, then rename it over
    the target in one transaction and drop the old table after that commits, so
    readers never see a half-loaded table. The swap happens in the transaction of
    the batch that ends at position ``None`` — where a ``TableSource(snapshot=true)``
    ends a complete scan — or when :meth:`PostgresSink.swap` is called. Without
    checkpoints in the same database, an empty last batch is not written, so call
    :meth:`~PostgresSink.swap` yourself then.
``soft_delete``
    Like ``upsert``, but a record whose ``delete_flag`` field is true sets the
    row's ``deleted_at`` to ``now()`` instead of deleting it; a live record clears it.

A batch is retried whole, in a fresh transaction, after a transient failure (a
killed connection, a serialization failure): the failed transaction rolled back,
so it is neither lost nor applied twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import asyncpg

from asyncetl.connectors.postgres import _load, _sql
from asyncetl.connectors.postgres._checkpoint import PostgresCheckpointStore
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._encode import find_bad_values
from asyncetl.connectors.postgres._load import TextRows
from asyncetl.connectors.postgres._plan import KEYED_MODES, Group, Planner
from asyncetl.connectors.postgres._rows import infer_columns
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.schema import (
    Column,
    TableSchema,
    describe_remote,
    describe_table,
    table_ddl,
)
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, Sink

__all__ = ["PostgresSink", "SinkMode"]

SinkMode = Literal["upsert", "append", "replace_partition", "refresh_swap", "soft_delete"]
_MODES: tuple[str, ...] = get_args(SinkMode)
_STAGING_SUFFIX = "__asyncetl_new"
_OLD_SUFFIX = "__asyncetl_old"

Record = Mapping[str, Any]
Row = tuple[Any, ...]


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
    :param deleted_at: the ``soft_delete`` timestamp column.
    :param delete_flag: the record field that marks a delete in ``soft_delete`` mode.
    :param create: create the table when missing, from ``source_table`` at
        ``source_dsn`` when given, otherwise from the first batch's values.
    :param not_null: columns created ``NOT NULL`` when the table is created from
        a batch's values (key columns always are).
    :param columns: the columns, in order, that lines in COPY's text format fill
        (records of a ``TableSource(format="copy")``); default: the table's columns.
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
        deleted_at: str = "deleted_at",
        delete_flag: str = "_deleted",
        create: bool = False,
        source_dsn: str | None = None,
        source_table: str | None = None,
        not_null: list[str] | None = None,
        columns: list[str] | None = None,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        where = f"sink {name}"
        if mode not in _MODES:
            raise ConfigError(
                f"must be one of {', '.join(_MODES)}, not {mode!r}", where=where, key="mode"
            )
        if mode == "replace_partition" and not partition:
            raise ConfigError(
                'replace_partition needs the partition columns, e.g. partition = ["day"]',
                where=where,
                key="partition",
            )
        if (source_dsn is None) != (source_table is None):
            raise ConfigError(
                "give both source_dsn and source_table, or neither", where=where, key="source_table"
            )
        self.name = name
        self.dsn = Dsn.parse(dsn)
        self.table = TableName.parse(table)
        self.mode: SinkMode = mode  # type: ignore[assignment]
        self.key = list(key) if key else None
        self.partition = list(partition or [])
        self.version_column = version_column
        self.row_hash = list(row_hash) if row_hash else None
        self.row_hash_column = row_hash_column
        self.deleted_at = deleted_at
        self.delete_flag = delete_flag
        self.create = create
        self.not_null = [*(self.key or ()), *(not_null or ())]
        self.columns = list(columns) if columns else None
        self.source = (
            (Dsn.parse(source_dsn), TableName.parse(source_table))
            if (source_dsn and source_table)
            else None
        )
        self.policy = retry_policy(retries, retry_max_time)
        self.schema: TableSchema | None = None
        self._pool: asyncpg.Pool | None = None
        self._checkpoints: PostgresCheckpointStore | None = None
        self._planner: Planner | None = None
        # Upsert batches are COPYed straight into the table until one hits an
        # existing key; from then on they go through the merge.
        self._insert_first = mode == "upsert"
        #: Target rows inserted, updated or flagged since construction.
        self.rows_changed = 0

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        # json values are turned into text by _group, which is cheaper than a codec.
        self._pool = await open_pool(self.dsn, policy=self.policy, json_values=False)
        try:
            self.schema = await self._describe(self.table)
            if self.schema is None:
                await self._create_at_open()
            if self.schema is not None:
                await self._ready()
        except BaseException:
            await self.close()
            raise

    async def _create_at_open(self) -> None:
        if not self.create:
            raise PermanentError(
                f"table {self.table} does not exist in {self.dsn.where}; create it "
                "or set create = true on the sink"
            )
        if self.source is not None:
            source = await self._source_schema()
            await self._create(list(source.columns), self.key or list(source.primary_key))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`PostgresCheckpointStore` in the same database."""
        if isinstance(store, PostgresCheckpointStore) and store.dsn.same_database(self.dsn):
            self._checkpoints = store
            return True
        return False

    @property
    def target(self) -> TableName:
        """Where batches go: the staging table in ``refresh_swap`` mode, else the table."""
        table = self.schema.table if self.schema is not None else self.table
        return table.sibling(_STAGING_SUFFIX) if self.mode == "refresh_swap" else table

    # -- writing -------------------------------------------------------------

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        return await self._write(batch.records, None, self._swaps_after(batch))

    async def write_with_checkpoint(
        self, batch: Batch[Record], checkpoint: Checkpoint
    ) -> Sequence[Reject]:
        return await self._write(batch.records, checkpoint, self._swaps_after(batch))

    def _swaps_after(self, batch: Batch[Record]) -> bool:
        # A snapshot source ends a complete scan at position None (see TableSource).
        return self.mode == "refresh_swap" and batch.position is None

    async def _write(
        self, records: Sequence[Record], checkpoint: Checkpoint | None, swap: bool = False
    ) -> list[Reject]:
        if records and isinstance(records[0], bytes | bytearray):
            return await self._write_text(records, checkpoint, swap)
        groups, rejects = await self.plan(records)
        if swap and self.schema is None:
            swap = False  # nothing was ever loaded: no table to swap in
        try:
            await self._commit(groups, checkpoint, swap)
            return rejects
        except AsyncetlError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            bad = await self.bad_values(groups)
            if not bad:
                raise PermanentError(
                    f"cannot write to table {self.target}: {type(exc).__name__}: {exc}"
                ) from exc
        await self._commit(groups, checkpoint, swap)
        return rejects + bad

    async def plan(self, records: Sequence[Record]) -> tuple[list[Group], list[Reject]]:
        """Check ``records`` against the table (creating it first if asked) and group them.

        :returns: the groups to :meth:`load` and the records refused, with their reasons.
        """
        if self.schema is None:
            if not records:
                return [], []
            await self._create(infer_columns(records, self.not_null), self.key or [])
            await self._ready()
        assert self._planner is not None
        return self._planner.plan(records)

    async def _write_text(
        self, lines: Sequence[Any], checkpoint: Checkpoint | None, swap: bool
    ) -> list[Reject]:
        if self._planner is None:
            raise PermanentError(
                f"table {self.table} does not exist in {self.dsn.where} and COPY lines do "
                "not say which columns it needs: create it, or give the sink source_dsn "
                "and source_table with create = true"
            )
        groups = self._planner.plan_text(lines)
        try:
            await self._commit(groups, checkpoint, swap)
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

    async def load(self, conn: asyncpg.Connection, groups: Sequence[Group]) -> int:
        """Load planned ``groups`` through ``conn``, inside the caller's transaction.

        :returns: target rows inserted, updated or flagged (unchanged rows not counted).
        """
        changed = 0
        for group in groups:
            if group.rows:
                changed += await self._load(conn, group)
        return changed

    async def _commit(
        self, groups: list[Group], checkpoint: Checkpoint | None, swap: bool = False
    ) -> None:
        async def body(conn: asyncpg.Connection) -> int:
            changed = await self.load(conn, groups)
            if checkpoint is not None and self._checkpoints is not None:
                await self._checkpoints.save_on(conn, checkpoint)
            if swap:
                await self._rename_staging(conn)
            return changed

        self.rows_changed += await in_transaction(
            self.pool, self.dsn, f"writing to {self.target}", body, policy=self.policy
        )
        if swap:
            await self._after_swap()

    async def _load(self, conn: asyncpg.Connection, group: Group) -> int:
        target, columns, rows = self.target, group.columns, group.rows
        if self.mode == "refresh_swap":  # after a swap, the next batch starts a new staging
            await conn.execute(self._create_staging())
        if self.mode in ("append", "refresh_swap"):
            if self.row_hash is None:
                return await _load.copy_append(conn, target, columns, rows)
            return await _load.copy_upsert(
                conn, target, columns, rows, key=[self.row_hash_column], update=[]
            )
        if self.mode == "replace_partition":
            return await _load.copy_replace(conn, target, columns, rows, partition=self.partition)
        assert self._planner is not None
        if isinstance(rows, TextRows):
            return await self._upsert(conn, columns, rows, None, dedupe=True)
        unique = self._planner.one_per_key(columns, rows)
        hashed = self.row_hash_column if self.row_hash else None
        if self.mode == "soft_delete":
            return await _load.copy_soft_delete(
                conn,
                target,
                columns[:-1],
                unique,
                key=self.resolved_key,
                deleted_at=self.deleted_at,
                flag=self.delete_flag,
                version_column=self.version_column,
                row_hash_column=hashed,
            )
        return await self._upsert(conn, columns, unique, hashed)

    async def _upsert(
        self,
        conn: asyncpg.Connection,
        columns: list[str],
        rows: Sequence[Row] | TextRows,
        row_hash_column: str | None,
        *,
        dedupe: bool = False,
    ) -> int:
        # A batch of new keys only (an initial load, an append-only source) needs no
        # merge: COPY straight into the table is about twice as fast on the server.
        # The first batch that meets an existing key rolls back to the savepoint and
        # merges, and so do all later batches of this sink.
        if self._insert_first:
            try:
                async with conn.transaction():
                    return await _load.copy_append(conn, self.target, columns, rows)
            except asyncpg.UniqueViolationError:
                self._insert_first = False
        return await _load.copy_upsert(
            conn,
            self.target,
            columns,
            rows,
            key=self.resolved_key,
            version_column=self.version_column,
            row_hash_column=row_hash_column,
            dedupe=dedupe,
        )

    async def bad_values(self, groups: Sequence[Group]) -> list[Reject]:
        """Reject the records holding values their column cannot take; drop them from ``groups``.

        For after a load failed with a ``TypeError``/``ValueError`` from asyncpg's encoder.
        """
        assert self.schema is not None
        rejects: list[Reject] = []
        for group in groups:
            rows = group.rows
            if isinstance(rows, TextRows):
                continue  # never encoded here: the server checks COPY text
            columns = [c for c in group.columns if self.schema.column(c) is not None]
            types = [self.schema.column(c).type for c in columns]  # type: ignore[union-attr]

            async def find(
                conn: asyncpg.Connection,
                rows: list[Row] = rows,
                columns: list[str] = columns,
                types: list[str] = types,
            ) -> list[Any]:
                return await find_bad_values(
                    conn, columns, types, [row[: len(columns)] for row in rows]
                )

            bad = await in_transaction(
                self.pool, self.dsn, "checking values", find, policy=self.policy
            )
            doomed = {b.row for b in bad}
            rejects += [
                Reject(group.records[b.row], PermanentError(b.message(str(self.target))))
                for b in bad
            ]
            group.rows = [row for i, row in enumerate(rows) if i not in doomed]
            group.records = [r for i, r in enumerate(group.records) if i not in doomed]
        return rejects

    # -- schema --------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresSink used before open()")
        return self._pool

    @property
    def resolved_key(self) -> list[str]:
        """The conflict key: ``key`` or the table's primary key."""
        if self.key:
            return self.key
        return list(self.schema.primary_key) if self.schema is not None else []

    async def _describe(self, table: TableName) -> TableSchema | None:
        async def body(conn: asyncpg.Connection) -> TableSchema | None:
            return await describe_table(conn, table)

        return await in_transaction(
            self.pool, self.dsn, f"reading the catalog for {table}", body, policy=self.policy
        )

    async def _source_schema(self) -> TableSchema:
        assert self.source is not None
        dsn, table = self.source
        schema = await describe_remote(dsn, table, policy=self.policy)
        if schema is None:
            raise PermanentError(
                f"source table {table} does not exist in {dsn.where}; "
                "fix source_table or create the table"
            )
        return schema

    async def _create(self, columns: list[Column], key: Sequence[str]) -> None:
        """Create the table from ``columns`` plus the columns the mode needs."""
        names = {c.name for c in columns}
        extra = []
        if self.row_hash is not None and self.row_hash_column not in names:
            extra.append(Column(self.row_hash_column, "text"))
        if self.mode == "soft_delete" and self.deleted_at not in names:
            extra.append(Column(self.deleted_at, "timestamp with time zone"))
        unique = [self.row_hash_column] if self.row_hash and self.mode not in KEYED_MODES else []
        if self.mode in KEYED_MODES and not key:
            raise PermanentError(
                f"cannot create table {self.table} for {self.mode} without a "
                "key; give the sink key = [...]"
            )
        ddl = table_ddl(
            self.table,
            [*columns, *extra],
            primary_key=key if self.mode in KEYED_MODES or not unique else (),
            unique=unique,
        )

        async def body(conn: asyncpg.Connection) -> None:
            if self.table.schema is not None:
                await conn.execute(_sql.create_schema(self.table.schema))
            await conn.execute(ddl)

        await in_transaction(
            self.pool, self.dsn, f"creating table {self.table}", body, policy=self.policy
        )
        self.schema = await self._describe(self.table)

    async def _ready(self) -> None:
        """Check the table against the mode; prepare the staging table of ``refresh_swap``."""
        assert self.schema is not None
        self._check(self.schema)
        self._planner = Planner(
            self.schema,
            mode=self.mode,
            key=self.resolved_key,
            partition=self.partition,
            version_column=self.version_column,
            row_hash=self.row_hash,
            row_hash_column=self.row_hash_column,
            delete_flag=self.delete_flag,
            text_columns=self.columns,
        )
        if self.mode == "refresh_swap":
            # With checkpoints in the same transactions, a staging table left by a
            # crashed run matches its checkpoint and is resumed; otherwise start afresh.
            await self._new_staging(keep=self._checkpoints is not None)

    def _check(self, schema: TableSchema) -> None:
        t, names = schema.table, schema.column_names

        def require(column: str, role: str) -> None:
            if column not in names:
                raise PermanentError(
                    f"{role} column {column!r} is missing from table {t} (its columns: "
                    f"{', '.join(names)}); fix the sink's {role} or add the column"
                )

        if self.mode in KEYED_MODES:
            if not self.resolved_key:
                raise PermanentError(
                    f"table {t} has no primary key; give the sink key = [...] "
                    'or use mode = "append"'
                )
            for column in self.resolved_key:
                require(column, "key")
            if not schema.has_unique_key(self.resolved_key):
                raise PermanentError(
                    f"table {t} has no unique index on exactly ({', '.join(self.resolved_key)}), "
                    "which INSERT … ON CONFLICT needs; create one or change the key"
                )
        for column in self.partition:
            require(column, "partition")
        for column in self.columns or ():
            require(column, "columns")
        if self.version_column:
            require(self.version_column, "version_column")
        if self.mode == "soft_delete":
            require(self.deleted_at, "deleted_at")
        if self.row_hash is not None:
            require(self.row_hash_column, "row_hash_column")
            if self.mode not in KEYED_MODES and not schema.has_unique_key([self.row_hash_column]):
                raise PermanentError(
                    f"table {t} needs a unique index on {self.row_hash_column!r} for "
                    f"{self.mode} with row_hash; create one or use create = true on a new table"
                )

    # -- refresh_swap --------------------------------------------------------

    async def swap(self) -> None:
        """Publish a ``refresh_swap`` load now: rename the staging table over the target.

        Batches ending at position ``None`` (a snapshot :class:`TableSource` at the
        end of a complete scan) swap by themselves, in their own transaction.

        :raises ConfigError: when the mode is not ``refresh_swap``.
        """
        if self.mode != "refresh_swap" or self.schema is None:
            raise ConfigError(
                "swap() is for a refresh_swap sink whose table exists", where=f"sink {self.name}"
            )
        await in_transaction(
            self.pool,
            self.dsn,
            f"swapping {self.target} in",
            self._rename_staging,
            policy=self.policy,
        )
        await self._after_swap()

    async def _rename_staging(self, conn: asyncpg.Connection) -> None:
        """Rename the target away and the staging table in, inside the caller's transaction."""
        assert self.schema is not None
        table, staging = self.schema.table, self.target
        old = table.sibling(_OLD_SUFFIX)
        await conn.execute(_sql.drop_table(old, if_exists=True))
        await conn.execute(_sql.rename_table(table, old.name))
        await conn.execute(_sql.rename_table(staging, table.name))

    async def _after_swap(self) -> None:
        """Drop the old table (only now that the swap committed) and stage afresh.

        Views on the table followed it to its old name, so this drop fails for
        them: recreate such views after the swap.
        """
        assert self.schema is not None
        old = self.schema.table.sibling(_OLD_SUFFIX)

        async def drop(conn: asyncpg.Connection) -> None:
            await conn.execute(_sql.drop_table(old))

        await in_transaction(self.pool, self.dsn, f"dropping {old}", drop, policy=self.policy)

    def _create_staging(self) -> str:
        assert self.schema is not None
        return _sql.create_like(self.target, self.schema.table)

    async def _new_staging(self, *, keep: bool) -> None:
        staging = self.target

        async def body(conn: asyncpg.Connection) -> None:
            if not keep:
                await conn.execute(_sql.drop_table(staging, if_exists=True))
            await conn.execute(self._create_staging())

        await in_transaction(self.pool, self.dsn, f"creating {staging}", body, policy=self.policy)
