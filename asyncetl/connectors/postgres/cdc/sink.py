"""ApplySink: change events applied to PostgreSQL tables, in commit order, exactly once.

Per batch, in one transaction:

1. events already applied are dropped: the sink keeps, in ``state_table``, the
   commit LSN and in-transaction sequence of the last change it applied and
   writes it in the batch's own transaction, so a replayed change is skipped;
2. each table's events are compacted to the last change per primary key
   (:mod:`~asyncetl.connectors.postgres.cdc._compact`);
3. a truncate truncates; inserts/updates are ``INSERT … ON CONFLICT DO
   UPDATE`` from the rows staged as one array parameter per column
   (``unnest($1::integer[], $2::text[], …)``; a group too large for
   parameters is COPYed into a temporary table instead); deletes by a
   one-column key are ``DELETE … WHERE key = ANY($1)`` with the keys as one
   array, other deletes ``DELETE … USING`` such staged rows (or set
   ``soft_delete_column``). Columns whose value is an unchanged TOAST value
   are left alone.

Values are staged in the form asyncpg encodes fastest (see
:mod:`~asyncetl.connectors.postgres.cdc._staging`), else as text, and
cast to the target's column types in SQL, so every type PostgreSQL can cast
from text works, custom ones included.

Tables without a primary key in the target get inserts appended; their updates
and deletes need the old row (``REPLICA IDENTITY FULL`` on the source) and
remove one row whose every column matches it NULL-safely (two identical rows
are two rows: a delete removes one of them).

The parts live beside this module: :mod:`._applied` (the applied marker),
:mod:`._apply_stage` (staged tables), :mod:`._apply_sql` (the statements) and
:mod:`._keyless` (tables without a primary key).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, cast

import asyncpg

from asyncetl.connectors.postgres._check import Needs, checking, table_problems
from asyncetl.connectors.postgres._checkpoint import PostgresCheckpointStore
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._sql import TableName, add_column, quote_ident
from asyncetl.connectors.postgres.cdc._applied import (
    Marker,
    by_table,
    latest_types,
    load_marker,
    save_marker,
    source_columns,
    unapplied,
)
from asyncetl.connectors.postgres.cdc._apply_sql import delete_sql, moved_sql, upsert_sql
from asyncetl.connectors.postgres.cdc._apply_stage import stage_rows, target_column
from asyncetl.connectors.postgres.cdc._backfill import backfill
from asyncetl.connectors.postgres.cdc._compact import Row, compact, upsert_groups
from asyncetl.connectors.postgres.cdc._defaults import (
    SourceDefault,
    add_filled_column,
    drop_fill_defaults,
    read_defaults,
)
from asyncetl.connectors.postgres.cdc._evolution import discard, evolution
from asyncetl.connectors.postgres.cdc._keyless import apply_keyless
from asyncetl.connectors.postgres.cdc._pages import (
    RowsMet,
    SnapshotPage,
    apply_pages,
    check_types,
    page_columns,
    split_pages,
)
from asyncetl.connectors.postgres.cdc._staging import array_values
from asyncetl.connectors.postgres.schema import Column, TableSchema, describe_table, table_ddl
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from asyncetl.core.contract import check_contract
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
from asyncetl.core.logs import get_logger

__all__ = ["ApplySink"]

_log = get_logger("asyncetl.cdc")


class ApplySink(Sink[ChangeEvent]):
    """Applies :class:`~asyncetl.core.changes.ChangeEvent` records to PostgreSQL tables.

    :param dsn: ``postgresql://`` DSN of the target database.
    :param tables: source table → target table (``schema.table``); a table not
        named here is applied to the table of the same name.
    :param schema_contract: what a source column the target lacks, or a source column
        widened by ``ALTER COLUMN … TYPE``, does (see :mod:`._evolution`): ``freeze``
        (default: the stream stops naming table and column, so nothing is applied
        half), ``evolve`` (the target gets the column, or the wider type),
        ``discard_value`` or ``discard_row``.
    :param source_dsn: the source database, if the sink may read its catalog: a column the
        target gets under ``evolve`` then holds, in rows that existed before, the value the
        source's rows got from the column's default (see :mod:`._defaults`), or, for a
        volatile one in a keyed table, the value the source row of the same key holds
        (see :mod:`._backfill`).
    :param soft_delete_column: a ``timestamptz`` column set to ``now()`` by deletes
        (and cleared by upserts) instead of deleting rows.
    :param create: create missing target tables from the source's columns and key.
    :param name: the sink's name; also its row in ``state_table``.
    :param state_table: where the last applied change is kept (created when missing).
    :param retries: retries of a batch whose transaction failed transiently.
    :param retry_max_time: seconds after which no retry starts.
    """

    def __init__(
        self,
        dsn: str,
        *,
        tables: dict[str, str] | None = None,
        schema_contract: str = "freeze",
        source_dsn: str | None = None,
        soft_delete_column: str | None = None,
        create: bool = False,
        name: str = "apply",
        state_table: str = "asyncetl_cdc_applied",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.dsn = Dsn.parse(dsn)
        self.source_dsn = Dsn.parse(source_dsn) if source_dsn is not None else None
        self.name = name
        self.schema_contract = check_contract(schema_contract, f"sink {name}")
        self.create = create
        self.soft_delete_column = soft_delete_column
        if soft_delete_column is not None:
            quote_ident(soft_delete_column)
        self.state_table = TableName.parse(state_table)
        self.mapping = {
            _source_key(TableName.parse(k)): TableName.parse(v) for k, v in (tables or {}).items()
        }
        if any(not isinstance(v, str) for v in (tables or {}).values()):
            raise ConfigError(
                "tables must map source table names to target table names", key="tables"
            )
        self.policy = retry_policy(retries, retry_max_time)
        self._pool: asyncpg.Pool | None = None
        self._store: PostgresCheckpointStore | None = None
        self._schemas: dict[TableName, TableSchema] = {}
        #: Per target: binary snapshot pages still go straight in (no row met yet).
        self._copy_first: dict[TableName, bool] = {}
        self.applied: Marker | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        # Its batches leave no session state: no reset between them (one round trip each).
        self._pool = await open_pool(self.dsn, policy=self.policy, max_size=1, reset_sessions=False)
        try:
            self.applied = await self._run(
                "reading the last applied change",
                lambda conn: load_marker(conn, self.state_table, self.name),
            )
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def check(self) -> list[Problem]:
        """Whether the role may keep ``state_table`` and change the mapped target tables
        (or create them); tables the mapping does not name are known only once changes come."""
        problems: list[Problem] = []
        async with checking(self.dsn, problems) as conn:
            if conn is not None:
                problems += await self._problems(conn)
        return problems

    async def _problems(self, conn: asyncpg.Connection) -> list[Problem]:
        state = Needs(("SELECT", "INSERT", "UPDATE"), create=True)
        problems = await table_problems(conn, self.dsn, self.state_table, state, "state_table")
        rights = ("INSERT", "UPDATE") if self.soft_delete_column else ("INSERT", "UPDATE", "DELETE")
        for target in self.mapping.values():
            needs = Needs(rights, create=self.create)
            problems += await table_problems(conn, self.dsn, target, needs, "tables")
        return problems

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a PostgreSQL checkpoint store in the target database (exactly-once)."""
        return isinstance(store, PostgresCheckpointStore) and store.dsn.same_database(self.dsn)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[ChangeEvent] | None:
        """Save checkpoints of ``store`` in each batch's transaction, if :meth:`commits_to` it."""
        if not isinstance(store, PostgresCheckpointStore) or not self.commits_to(store):
            return None
        self._store = store
        return self._write_with_checkpoint

    async def write(self, batch: Batch[ChangeEvent]) -> Sequence[Reject]:
        await self._apply(batch.records, None, None)
        return ()

    async def _write_with_checkpoint(
        self, batch: Batch[ChangeEvent], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        await self._apply(batch.records, checkpoint, settle)
        return ()

    # -- one batch -----------------------------------------------------------------------------

    async def _apply(
        self, records: Sequence[ChangeEvent], checkpoint: Checkpoint | None, settle: Settle | None
    ) -> None:
        marker = self.applied
        pages, rest = split_pages(records)
        events, latest = unapplied(cast("list[ChangeEvent]", rest), marker)
        groups = by_table(events)
        if not groups and not pages and checkpoint is None:
            return
        fresh: dict[TableName, TableSchema] = {}

        async def body(conn: asyncpg.Connection) -> None:
            fresh.clear()
            stages = itertools.count()
            await self._apply_pages(conn, pages, stages, fresh)
            for (schema, table), table_events in groups.items():
                target = self.mapping.get((schema, table)) or TableName(schema, table)
                described, table_events, filled, copied = await self._schema(
                    conn, target, table_events, fresh
                )
                await self._apply_table(conn, described, table_events, stages)
                await drop_fill_defaults(conn, described.table, filled)
                if copied and self.source_dsn is not None:
                    # After the table's changes: a row the batch inserted before the column
                    # came is in the target now. In this transaction: a crash before the
                    # commit adds the column again on the rerun, and copies again; copied
                    # in a later one, a crash in between would leave the NULLs for good.
                    source = TableName(schema, table)
                    for name in await backfill(conn, self.source_dsn, source, described, copied):
                        _gone_column(described.table, source, name)
            if latest is not None and latest != marker:
                await save_marker(conn, self.state_table, self.name, latest)
            if settle is not None and await settle(()):
                # This sink refuses no change and stores no dead letters itself.
                raise PermanentError("ApplySink cannot store dead letters in its transactions")
            if checkpoint is not None and self._store is not None:
                # Pages of an unfinished snapshot, with their checkpoint: a server crash that
                # loses this commit loses both (the snapshot resumes before them), and the
                # slot is confirmed no further than where the snapshot started. The batch
                # that ends the snapshot commits as usual and flushes these with it: no
                # wait for the disk per page.
                flush = not (pages and not events and _mid_snapshot(checkpoint))
                await self._store.save_on(conn, checkpoint, flush=flush)

        while True:
            try:
                await self._run(f"applying {len(events)} changes", body)
                break
            except RowsMet:  # rolled back: write the batch again, merging into that table
                pass
        self.applied = latest
        self._schemas.update(fresh)

    async def _apply_pages(
        self,
        conn: asyncpg.Connection,
        pages: list[SnapshotPage],
        stages: Iterator[int],
        fresh: dict[TableName, TableSchema],
    ) -> None:
        """Write binary snapshot pages, each table's in one COPY (see :mod:`._pages`)."""
        tables: dict[tuple[str, str], list[SnapshotPage]] = {}
        for page in pages:
            tables.setdefault((page.schema, page.table), []).append(page)
        for source, table_pages in tables.items():
            target = self.mapping.get(source) or TableName(*source)
            schema = fresh.get(target) or self._schemas.get(target)
            if schema is None:
                schema = await describe_table(conn, target)
                if schema is None:
                    first = table_pages[0]
                    schema = await self._create_table(conn, target, page_columns(first), first.key)
                check_types(table_pages[0], schema)
            fresh[target] = schema
            try:
                self._copy_first[target] = await apply_pages(
                    conn,
                    schema,
                    table_pages,
                    stages,
                    copy_first=self._copy_first.get(target, True),
                    soft_delete=self.soft_delete_column,
                )
            except RowsMet:
                self._copy_first[target] = False
                raise

    async def _apply_table(
        self,
        conn: asyncpg.Connection,
        schema: TableSchema,
        events: list[ChangeEvent],
        stages: Iterator[int],
    ) -> None:
        key = schema.primary_key
        if not key:
            await apply_keyless(conn, schema, events, stages)
            return
        compacted = compact(events, key, str(schema.table))
        if compacted.truncate:
            await conn.execute(f"TRUNCATE {schema.table.sql}")
        upserts = compacted.upserts
        moved = compacted.moved
        if moved:  # before the deletes: they read the rows at the old keys
            moving = {
                k: r
                for k, r in compacted.upserted.items()
                if k in moved and UNCHANGED in r.values()
            }
            await self._apply_moved(
                conn, schema, [(r, moved[k]) for k, r in moving.items()], stages
            )
            upserts = [r for k, r in compacted.upserted.items() if k not in moving]
        deletes = compacted.deletes
        if deletes:
            await self._delete(conn, schema, deletes, stages)
        for columns, rows in upsert_groups(upserts):
            stage = await stage_rows(conn, stages, schema, columns, rows)
            sql = upsert_sql(schema, stage, columns, self.soft_delete_column)
            await conn.execute(sql, *stage.args)

    async def _delete(
        self, conn: asyncpg.Connection, schema: TableSchema, rows: list[Row], stages: Iterator[int]
    ) -> None:
        key = schema.primary_key
        column = target_column(schema, key[0])
        if len(key) == 1 and self.soft_delete_column is None and not column.type.endswith("]"):
            # The keys as one array parameter: no staging table to create and fill, and
            # the same statement text every batch, so the server keeps one plan (index
            # lookups) instead of planning a join against a new table each time.
            element, values = array_values(column.type, [row[key[0]] for row in rows])
            cast = "" if element == column.type else f"::{column.type}[]"
            await conn.execute(
                f"DELETE FROM {schema.table.sql} "  # noqa: S608
                f"WHERE {quote_ident(key[0])} = ANY($1::{element}[]{cast})",
                values,
            )
            return
        stage = await stage_rows(conn, stages, schema, key, rows)
        await conn.execute(delete_sql(schema, stage, self.soft_delete_column), *stage.args)

    async def _apply_moved(
        self,
        conn: asyncpg.Connection,
        schema: TableSchema,
        rows: list[tuple[Row, Row]],
        stages: Iterator[int],
    ) -> None:
        """Upsert rows that moved to a new key, copying their unchanged TOAST values from the
        target's row at the old key (which the deletes remove afterwards)."""
        key = schema.primary_key
        old_names = [f"_asyncetl_old_{i}" for i in range(len(key))]
        for columns, group in upsert_groups([row for row, _ in rows]):
            olds = {id(row): old for row, old in rows}
            # The old key's values travel in the same staged row, under other names.
            staged = [
                {**row, **dict(zip(old_names, (olds[id(row)][k] for k in key), strict=True))}
                for row in group
            ]
            extra = {o: target_column(schema, k) for o, k in zip(old_names, key, strict=True)}
            stage = await stage_rows(conn, stages, schema, [*columns, *old_names], staged, extra)
            unchanged = [
                c.name for c in schema.columns if c.name not in columns and c.name in group[0]
            ]
            await conn.execute(
                moved_sql(schema, stage, columns, unchanged, old_names, self.soft_delete_column),
                *stage.args,
            )

    # -- target tables -------------------------------------------------------------------------

    async def _schema(
        self,
        conn: asyncpg.Connection,
        target: TableName,
        events: list[ChangeEvent],
        fresh: dict[TableName, TableSchema],
    ) -> tuple[TableSchema, list[ChangeEvent], list[str], list[str]]:
        """The target's schema, evolved as the schema contract says, the events to apply,
        the added columns whose default holds the value of older rows until they are applied,
        and those whose older rows' values are to be copied from the source."""
        schema = fresh.get(target) or self._schemas.get(target)
        remembered = schema is not None and target not in fresh
        if schema is None:
            schema = await describe_table(conn, target)
            if schema is None:
                schema = await self._create(conn, target, events)
        source_table = events[0].qualified_table
        source, types = source_columns(events), latest_types(events)
        try:
            change = evolution(schema, source, self.schema_contract, source_table, types)
        except PermanentError:
            if not remembered:
                raise
            # Read at an earlier batch: the target may have been altered since, as the
            # refusal asks (a column widened or added ahead of the source's own ALTER).
            schema = await describe_table(conn, target) or schema
            change = evolution(schema, source, self.schema_contract, source_table, types)
        filled, copied = await self._add(
            conn, schema.table, change.add, source_table, keyed=bool(schema.primary_key)
        )
        for name, sql_type in change.widen.items():
            await self._widen(conn, schema, name, sql_type, source_table)
        if change.add or change.widen:
            schema = await describe_table(conn, schema.table) or schema
        fresh[target] = schema
        events = discard(events, change.discard, self.schema_contract, str(schema.table))
        return schema, events, filled, copied

    async def _add(
        self,
        conn: asyncpg.Connection,
        table: TableName,
        add: dict[str, str],
        source: str,
        *,
        keyed: bool,
    ) -> tuple[list[str], list[str]]:
        """Add columns ``add`` to ``table``, existing rows holding what the source's older
        rows hold: the columns filled from the catalog (see :mod:`._defaults`), and those
        whose values a keyed table copies from the source's rows (see :mod:`._backfill`)."""
        if not add:
            return [], []
        if self.source_dsn is None:
            _log.warning(
                "columns added; rows already in the target hold NULL in them, whatever "
                "default the source gave its rows: give the sink source_dsn to copy it",
                table=str(table),
                source_table=source,
                fields=sorted(add),
            )
            defaults = {}
        else:
            defaults = await read_defaults(self.source_dsn, TableName.parse(source), list(add))
        filled, copied = [], []
        for index, (name, sql_type) in enumerate(add.items()):
            default = defaults.get(name)
            if self.source_dsn is not None and default is None:
                _gone_column(table, TableName.parse(source), name)
            if default is not None and default.existing is not None:
                await add_filled_column(conn, table, name, sql_type, default.existing, index)
                filled.append(name)
                continue
            await conn.execute(add_column(table, name, sql_type))
            if default is not None and default.unknown:
                if keyed:
                    copied.append(name)
                else:  # no key to find a row's value by
                    _unknown_default(table, source, default)
        return filled, copied

    async def _widen(
        self, conn: asyncpg.Connection, schema: TableSchema, name: str, sql_type: str, source: str
    ) -> None:
        column = quote_ident(name)
        try:
            async with conn.transaction():  # a savepoint: the error below names the change
                await conn.execute(
                    f"ALTER TABLE {schema.table.sql} ALTER COLUMN {column} TYPE {sql_type} "
                    f"USING {column}::{sql_type}"
                )
        except asyncpg.PostgresError as exc:
            if isinstance(exc, asyncpg.PostgresConnectionError):
                raise
            raise PermanentError(
                f"cannot change column {name!r} of target table {schema.table} to {sql_type} "
                f"as source table {source} did: {exc}; alter the target column yourself"
            ) from exc

    async def _create(
        self, conn: asyncpg.Connection, target: TableName, events: list[ChangeEvent]
    ) -> TableSchema:
        if not self.create:
            raise PermanentError(
                f"target table {target} does not exist on {self.dsn.where}; "
                "create it or set create = true"
            )
        source = source_columns(events)
        if self.schema_contract == "evolve" and events[0].columns is not None:
            # The first event's columns: those later ones add (the source added them in
            # between) are added by the evolution, whose default fills the rows before them.
            source = dict(events[0].columns)
        columns = [Column(name, sql_type) for name, sql_type in source.items()]
        key = next((e.key_columns for e in events if e.key_columns), ())
        return await self._create_table(conn, target, columns, key)

    async def _create_table(
        self, conn: asyncpg.Connection, target: TableName, columns: list[Column], key: Sequence[str]
    ) -> TableSchema:
        if not self.create:
            raise PermanentError(
                f"target table {target} does not exist on {self.dsn.where}; "
                "create it or set create = true"
            )
        if self.soft_delete_column is not None and all(
            c.name != self.soft_delete_column for c in columns
        ):
            columns = [*columns, Column(self.soft_delete_column, "timestamp with time zone")]
        await conn.execute(table_ddl(target, columns, primary_key=key))
        created = await describe_table(conn, target)
        assert created is not None
        return created

    # -- applied marker ------------------------------------------------------------------------

    async def _run(self, what: str, body: Any) -> Any:
        if self._pool is None:
            raise RuntimeError("ApplySink used before open()")
        return await in_transaction(self._pool, self.dsn, what, body, policy=self.policy)


# -- helpers -------------------------------------------------------------------------------


def _mid_snapshot(checkpoint: Checkpoint | None) -> bool:
    """Whether ``checkpoint`` is a CdcSource position inside its snapshot."""
    position = checkpoint.position if checkpoint is not None else None
    return isinstance(position, dict) and bool(position.get("snapshot"))


def _unknown_default(table: TableName, source: str, default: SourceDefault) -> None:
    why = (
        "is volatile, so each row got its own value"
        if default.volatile
        else "was set after the column was added, or the table was rewritten since"
    )
    _log.warning(
        f"column {default.name!r} of source table {source} has default "
        f"{default.expression}, which {why}: rows of target table {table} that no change "
        "has reached since hold NULL in it; copy the values from the source to keep them",
        table=str(table),
        source_table=source,
        column=default.name,
    )


def _gone_column(table: TableName, source: TableName, name: str) -> None:
    _log.warning(
        f"column {name!r} of source table {source} is gone from the source (dropped or "
        "renamed since it was added), so what its older rows held is unknown: rows of target "
        f"table {table} that no change reached hold NULL in it",
        table=str(table),
        source_table=str(source),
        column=name,
    )


def _source_key(name: TableName) -> tuple[str, str]:
    return (name.schema or "public", name.name)
