"""ApplySink: change events applied to PostgreSQL tables, in commit order, exactly once.

Per batch, in one transaction:

1. events already applied are dropped: the sink keeps, in ``state_table``, the
   commit LSN and in-transaction sequence of the last change it applied and
   writes it in the batch's own transaction, so a replayed change is skipped;
2. each table's events are compacted to the last change per primary key
   (:mod:`~asyncetl.connectors.postgres.cdc._compact`);
3. a truncate truncates; inserts/updates are ``INSERT … ON CONFLICT DO
   UPDATE`` from temporary tables filled by COPY; deletes by a one-column key
   are ``DELETE … WHERE key = ANY($1)`` with the keys as one array, other
   deletes ``DELETE … USING`` such a table (or set ``soft_delete_column``).
   Columns whose value is an unchanged TOAST value are left alone.

Values are staged in the form asyncpg encodes fastest (see
:mod:`~asyncetl.connectors.postgres.cdc._staging`), else as text, and
cast to the target's column types in SQL, so every type PostgreSQL can cast
from text works, custom ones included.

Tables without a primary key in the target get inserts appended; their updates
and deletes need the old row (``REPLICA IDENTITY FULL`` on the source) and
remove one row whose every column matches it NULL-safely (two identical rows
are two rows: a delete removes one of them).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

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
from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres.cdc._compact import Row, compact, upsert_groups
from asyncetl.connectors.postgres.cdc._staging import (
    array_values,
    read_staged,
    staged_records,
)
from asyncetl.connectors.postgres.cdc._values import pg_text
from asyncetl.connectors.postgres.schema import Column, TableSchema, describe_table, table_ddl
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.changes import UNCHANGED, ChangeEvent
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

__all__ = ["ApplySink"]

Marker = tuple[int, int]


class ApplySink(Sink[ChangeEvent]):
    """Applies :class:`~asyncetl.core.changes.ChangeEvent` records to PostgreSQL tables.

    :param dsn: ``postgresql://`` DSN of the target database.
    :param tables: source table → target table (``schema.table``); a table not
        named here is applied to the table of the same name.
    :param evolve: add columns that appear in the source to the target; otherwise
        a new column is an error naming table and column.
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
        evolve: bool = False,
        soft_delete_column: str | None = None,
        create: bool = False,
        name: str = "apply",
        state_table: str = "asyncetl_cdc_applied",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.dsn = Dsn.parse(dsn)
        self.name = name
        self.evolve = evolve
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
        self.applied: Marker | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await open_pool(self.dsn, policy=self.policy, max_size=1)
        try:
            self.applied = await self._run("reading the last applied change", self._load_marker)
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
        events, latest = _unapplied(records, marker)
        groups = _by_table(events)
        if not groups and checkpoint is None:
            return
        fresh: dict[TableName, TableSchema] = {}

        async def body(conn: asyncpg.Connection) -> None:
            fresh.clear()
            stages = itertools.count()
            for (schema, table), table_events in groups.items():
                target = self.mapping.get((schema, table)) or TableName(schema, table)
                described = await self._schema(conn, target, table_events, fresh)
                await self._apply_table(conn, described, table_events, stages)
            if latest is not None and latest != marker:
                await self._save_marker(conn, latest)
            if settle is not None and await settle(()):
                # This sink refuses no change and stores no dead letters itself.
                raise PermanentError("ApplySink cannot store dead letters in its transactions")
            if checkpoint is not None and self._store is not None:
                await self._store.save_on(conn, checkpoint)

        await self._run(f"applying {len(events)} changes", body)
        self.applied = latest
        self._schemas.update(fresh)

    async def _apply_table(
        self,
        conn: asyncpg.Connection,
        schema: TableSchema,
        events: list[ChangeEvent],
        stages: Iterator[int],
    ) -> None:
        key = schema.primary_key
        if not key:
            await self._apply_keyless(conn, schema, events, stages)
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
            stage = await _stage(conn, stages, schema, columns, rows)
            await conn.execute(self._upsert_sql(schema, stage, columns))

    async def _delete(
        self, conn: asyncpg.Connection, schema: TableSchema, rows: list[Row], stages: Iterator[int]
    ) -> None:
        key = schema.primary_key
        column = _column(schema, key[0])
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
        stage = await _stage(conn, stages, schema, key, rows)
        await conn.execute(self._delete_sql(schema, stage))

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
            extra = {o: _column(schema, k) for o, k in zip(old_names, key, strict=True)}
            stage = await _stage(conn, stages, schema, [*columns, *old_names], staged, extra)
            unchanged = [
                c.name for c in schema.columns if c.name not in columns and c.name in group[0]
            ]
            await conn.execute(self._moved_sql(schema, stage, columns, unchanged, old_names))

    async def _apply_keyless(
        self,
        conn: asyncpg.Connection,
        schema: TableSchema,
        events: list[ChangeEvent],
        stages: Iterator[int],
    ) -> None:
        pending: list[Row] = []
        for event in events:
            if event.op in ("c", "r"):
                pending.append(event.after or {})
                continue
            await self._append(conn, schema, pending, stages)
            pending = []
            if event.op == "t":
                await conn.execute(f"TRUNCATE {schema.table.sql}")
                continue
            await self._delete_one(conn, schema, event)
            if event.op == "u" and event.after is not None:
                before = event.before or {}
                pending.append(
                    {k: before.get(k) if v is UNCHANGED else v for k, v in event.after.items()}
                )
        await self._append(conn, schema, pending, stages)

    async def _append(
        self,
        conn: asyncpg.Connection,
        schema: TableSchema,
        rows: list[Row],
        stages: Iterator[int],
    ) -> None:
        for columns, group in upsert_groups(rows):
            stage = await _stage(conn, stages, schema, columns, group)
            await conn.execute(
                f"INSERT INTO {schema.table.sql} ({_names(columns)}) "  # noqa: S608
                f"SELECT {stage.values(columns)} FROM {stage.name} AS s"
            )

    async def _delete_one(
        self, conn: asyncpg.Connection, schema: TableSchema, event: ChangeEvent
    ) -> None:
        before = event.before
        columns = [
            c for c in schema.columns if before is None or before.get(c.name) is not UNCHANGED
        ]
        if before is None or any(c.name not in before for c in columns):
            raise PermanentError(
                f"table {schema.table} has no primary key and the source sent no old row for an "
                f"{'update' if event.op == 'u' else 'delete'} of {event.qualified_table}; set "
                f"REPLICA IDENTITY FULL on source table {event.qualified_table} or give the "
                "target a primary key"
            )
        # Every column, NULL-safely, compared as its type's text: json, xml and the geometric
        # types have no equality operator, and the old row's value is cast through the
        # column's type so both sides print the same way. One row only (by ctid): two
        # identical rows are two rows.
        match = " AND ".join(
            f"{quote_ident(c.name)}::text IS NOT DISTINCT FROM ${i}::text::{c.type}::text"
            for i, c in enumerate(columns, 1)
        )
        await conn.execute(
            f"DELETE FROM {schema.table.sql} WHERE ctid = (SELECT ctid FROM {schema.table.sql} "  # noqa: S608
            f"WHERE {match} LIMIT 1)",
            *(pg_text(before[c.name]) for c in columns),
        )

    # -- SQL -----------------------------------------------------------------------------------

    def _upsert_sql(self, schema: TableSchema, stage: _Stage, columns: Sequence[str]) -> str:
        key = schema.primary_key
        sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns if c not in key]
        names = list(columns)
        if self.soft_delete_column is not None and self.soft_delete_column not in columns:
            sets.append(f"{quote_ident(self.soft_delete_column)} = NULL")
        action = "UPDATE SET " + ", ".join(sets) if sets else "NOTHING"
        return (
            f"INSERT INTO {schema.table.sql} AS t ({_names(names)}) "  # noqa: S608
            f"SELECT {stage.values(columns)} FROM {stage.name} AS s "
            f"ON CONFLICT ({_names(key)}) DO {action}"
        )

    def _moved_sql(
        self,
        schema: TableSchema,
        stage: _Stage,
        columns: Sequence[str],
        unchanged: Sequence[str],
        old_names: Sequence[str],
    ) -> str:
        key = schema.primary_key
        match = " AND ".join(
            f"o.{quote_ident(k)} = {stage.reads[old]}"
            for k, old in zip(key, old_names, strict=True)
        )
        values = [stage.reads[c] for c in columns] + [f"o.{quote_ident(c)}" for c in unchanged]
        names = [*columns, *unchanged]
        sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in names if c not in key]
        if self.soft_delete_column is not None and self.soft_delete_column not in names:
            sets.append(f"{quote_ident(self.soft_delete_column)} = NULL")
        action = "UPDATE SET " + ", ".join(sets) if sets else "NOTHING"
        return (
            f"INSERT INTO {schema.table.sql} AS t ({_names(names)}) "  # noqa: S608
            f"SELECT {', '.join(values)} FROM {stage.name} AS s LEFT JOIN {schema.table.sql} AS o "
            f"ON {match} ON CONFLICT ({_names(key)}) DO {action}"
        )

    def _delete_sql(self, schema: TableSchema, stage: _Stage) -> str:
        key = schema.primary_key
        match = " AND ".join(f"t.{quote_ident(k)} = {stage.reads[k]}" for k in key)
        if self.soft_delete_column is not None:
            column = quote_ident(self.soft_delete_column)
            return (
                f"UPDATE {schema.table.sql} AS t SET {column} = now() FROM {stage.name} AS s "  # noqa: S608
                f"WHERE {match} AND t.{column} IS NULL"
            )
        return f"DELETE FROM {schema.table.sql} AS t USING {stage.name} AS s WHERE {match}"  # noqa: S608

    # -- target tables -------------------------------------------------------------------------

    async def _schema(
        self,
        conn: asyncpg.Connection,
        target: TableName,
        events: list[ChangeEvent],
        fresh: dict[TableName, TableSchema],
    ) -> TableSchema:
        schema = fresh.get(target) or self._schemas.get(target)
        if schema is None:
            schema = await describe_table(conn, target)
            if schema is None:
                schema = await self._create(conn, target, events)
        source = _source_columns(events)
        missing = [name for name in source if schema.column(name) is None]
        if missing:
            if not self.evolve:
                raise PermanentError(
                    f"column {missing[0]!r} of source table {events[0].qualified_table} is missing "
                    f"from target table {schema.table}; add it to the target or set evolve = true"
                )
            for name in missing:
                await conn.execute(
                    f"ALTER TABLE {schema.table.sql} ADD COLUMN IF NOT EXISTS "
                    f"{quote_ident(name)} {source[name]}"
                )
            schema = await describe_table(conn, schema.table) or schema
        fresh[target] = schema
        return schema

    async def _create(
        self, conn: asyncpg.Connection, target: TableName, events: list[ChangeEvent]
    ) -> TableSchema:
        if not self.create:
            raise PermanentError(
                f"target table {target} does not exist on {self.dsn.where}; "
                "create it or set create = true"
            )
        source = _source_columns(events)
        columns = [Column(name, sql_type) for name, sql_type in source.items()]
        if self.soft_delete_column is not None and self.soft_delete_column not in source:
            columns.append(Column(self.soft_delete_column, "timestamp with time zone"))
        key = next((e.key_columns for e in events if e.key_columns), ())
        await conn.execute(table_ddl(target, columns, primary_key=key))
        created = await describe_table(conn, target)
        assert created is not None
        return created

    # -- applied marker ------------------------------------------------------------------------

    async def _load_marker(self, conn: asyncpg.Connection) -> Marker | None:
        table = self.state_table.sql
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(self.state_table))
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (sink text PRIMARY KEY, lsn pg_lsn NOT NULL, "
            "seq integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        )
        row = await conn.fetchrow(
            f"SELECT lsn, seq FROM {table} WHERE sink = $1",  # noqa: S608
            self.name,
        )
        return (int(row[0]), int(row[1])) if row is not None else None

    async def _save_marker(self, conn: asyncpg.Connection, marker: Marker) -> None:
        await conn.execute(
            f"INSERT INTO {self.state_table.sql} (sink, lsn, seq, updated_at) "  # noqa: S608
            "VALUES ($1, $2, $3, now()) ON CONFLICT (sink) DO UPDATE SET "
            "lsn = EXCLUDED.lsn, seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at",
            self.name,
            marker[0],
            marker[1],
        )

    async def _run(self, what: str, body: Any) -> Any:
        if self._pool is None:
            raise RuntimeError("ApplySink used before open()")
        return await in_transaction(self._pool, self.dsn, what, body, policy=self.policy)


# -- helpers -------------------------------------------------------------------------------


def _source_key(name: TableName) -> tuple[str, str]:
    return (name.schema or "public", name.name)


_LSN = attrgetter("lsn")
_POSITION = attrgetter("lsn", "seq")
_TABLE = attrgetter("schema", "table")
_COLUMNS = attrgetter("columns")


def _unapplied(
    records: Sequence[ChangeEvent], marker: Marker | None
) -> tuple[list[ChangeEvent], Marker | None]:
    """The events after ``marker`` (snapshot rows have no LSN: all of them), and the last one's
    position (``marker`` when none has one)."""
    lsns = list(map(_LSN, records))
    if None not in lsns:  # streamed changes only: compare whole LSNs first
        if not lsns:
            return [], marker
        if marker is None or min(lsns) > marker[0]:
            return list(records), max(map(_POSITION, records))
    events = [e for e in records if e.lsn is None or marker is None or (e.lsn, e.seq) > marker]
    latest = max(((e.lsn, e.seq) for e in events if e.lsn is not None), default=marker)
    return events, latest


def _by_table(events: Sequence[ChangeEvent]) -> dict[tuple[str, str], list[ChangeEvent]]:
    tables = set(map(_TABLE, events))
    if len(tables) == 1:  # the usual batch
        return {tables.pop(): list(events)}
    groups: dict[tuple[str, str], list[ChangeEvent]] = {}
    for event in events:
        groups.setdefault((event.schema, event.table), []).append(event)
    return groups


def _source_columns(events: Sequence[ChangeEvent]) -> dict[str, str]:
    """Column → SQL type of every column the events carry, in table order."""
    mappings = list(map(_COLUMNS, events))
    if None not in mappings:  # a CDC source's events share a few column mappings
        columns: dict[str, str] = {}
        for mapping in dict(zip(map(id, mappings), mappings, strict=True)).values():
            for name, sql_type in mapping.items():
                columns.setdefault(name, sql_type)
        return columns
    seen: set[int] = set()
    columns = {}
    for event in events:
        if event.columns is not None:
            if id(event.columns) not in seen:
                seen.add(id(event.columns))
                for name, sql_type in event.columns.items():
                    columns.setdefault(name, sql_type)
        elif event.after is not None:
            for name in event.after:
                columns.setdefault(name, "text")
    return columns


@dataclass(frozen=True, slots=True)
class _Stage:
    """A temporary table of staged rows: its quoted name (read ``AS s``), and for each
    column the SQL that reads it as its target column's type."""

    name: str
    reads: dict[str, str]

    def values(self, columns: Sequence[str]) -> str:
        return ", ".join(self.reads[c] for c in columns)


async def _stage(
    conn: asyncpg.Connection,
    stages: Iterator[int],
    schema: TableSchema,
    columns: Sequence[str],
    rows: Sequence[Row],
    extra: dict[str, Column] | None = None,
) -> _Stage:
    """A temporary table holding ``rows`` (see :mod:`._staging`)."""
    types = [(extra or {}).get(c) or _column(schema, c) for c in columns]
    staged, records = staged_records([t.type for t in types], columns, rows)
    # The name carries the column types: asyncpg caches a COPY target's column
    # types by statement text, so a same-named table with other types would be
    # encoded with stale ones.
    name = f"_asyncetl_apply_{next(stages)}_{zlib.crc32(chr(0).join(staged).encode()):x}"
    definitions = ", ".join(f"{quote_ident(c)} {t}" for c, t in zip(columns, staged, strict=True))
    await conn.execute(f"CREATE TEMPORARY TABLE {quote_ident(name)} ({definitions}) ON COMMIT DROP")
    await conn.copy_records_to_table(
        name, records=records, columns=list(columns), schema_name="pg_temp"
    )
    reads = {
        c: read_staged(f"s.{quote_ident(c)}", st, t.type)
        for c, st, t in zip(columns, staged, types, strict=True)
    }
    return _Stage(f"pg_temp.{quote_ident(name)}", reads)


def _column(schema: TableSchema, name: str) -> Column:
    column = schema.column(name)
    if column is None:
        raise PermanentError(
            f"column {name!r} is missing from target table {schema.table}; "
            "add it to the target or set evolve = true"
        )
    return column


def _names(columns: Sequence[str]) -> str:
    return ", ".join(quote_ident(c) for c in columns)
