"""Changes to target tables without a primary key: inserts are appended; updates and deletes
remove one row whose every column matches the old row NULL-safely (two identical rows are two
rows: a delete removes one of them), which needs ``REPLICA IDENTITY FULL`` on the source."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._apply_stage import column_list, stage_rows
from asyncetl.connectors.postgres.cdc._compact import Row, upsert_groups
from asyncetl.connectors.postgres.cdc._values import pg_text
from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from asyncetl.core.errors import PermanentError

__all__ = ["apply_keyless"]


async def apply_keyless(
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
        await _append(conn, schema, pending, stages)
        pending = []
        if event.op == "t":
            await conn.execute(f"TRUNCATE {schema.table.sql}")
            continue
        await _delete_one(conn, schema, event)
        if event.op == "u" and event.after is not None:
            before = event.before or {}
            pending.append(
                {k: before.get(k) if v is UNCHANGED else v for k, v in event.after.items()}
            )
    await _append(conn, schema, pending, stages)


async def _append(
    conn: asyncpg.Connection,
    schema: TableSchema,
    rows: list[Row],
    stages: Iterator[int],
) -> None:
    for columns, group in upsert_groups(rows):
        stage = await stage_rows(conn, stages, schema, columns, group)
        await conn.execute(
            f"INSERT INTO {schema.table.sql} ({column_list(columns)}) "  # noqa: S608
            f"SELECT {stage.values(columns)} FROM {stage.name} AS s",
            *stage.args,
        )


async def _delete_one(conn: asyncpg.Connection, schema: TableSchema, event: ChangeEvent) -> None:
    before = event.before
    columns = [c for c in schema.columns if before is None or before.get(c.name) is not UNCHANGED]
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
