"""The apply sink's temporary tables: a group of rows staged by COPY, and the SQL that reads
each staged column back as its target column's type (see :mod:`._staging`)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import asyncpg

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._compact import Row
from asyncetl.connectors.postgres.cdc._staging import read_staged, staged_records
from asyncetl.connectors.postgres.schema import Column, TableSchema
from asyncetl.core.errors import PermanentError

__all__ = ["Stage", "column_list", "stage_rows", "target_column"]


@dataclass(frozen=True, slots=True)
class Stage:
    """A temporary table of staged rows: its quoted name (read ``AS s``), and for each
    column the SQL that reads it as its target column's type."""

    name: str
    reads: dict[str, str]

    def values(self, columns: Sequence[str]) -> str:
        return ", ".join(self.reads[c] for c in columns)


async def stage_rows(
    conn: asyncpg.Connection,
    stages: Iterator[int],
    schema: TableSchema,
    columns: Sequence[str],
    rows: Sequence[Row],
    extra: dict[str, Column] | None = None,
) -> Stage:
    """A temporary table holding ``rows`` (see :mod:`._staging`)."""
    types = [(extra or {}).get(c) or target_column(schema, c) for c in columns]
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
    return Stage(f"pg_temp.{quote_ident(name)}", reads)


def target_column(schema: TableSchema, name: str) -> Column:
    column = schema.column(name)
    if column is None:
        raise PermanentError(
            f"column {name!r} is missing from target table {schema.table}; "
            'add it to the target or set schema_contract = "evolve"'
        )
    return column


def column_list(columns: Sequence[str]) -> str:
    return ", ".join(quote_ident(c) for c in columns)
