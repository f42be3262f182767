"""The apply sink's staged rows: a group of rows as array parameters (or, for a large
group, a temporary table filled by COPY), and the SQL that reads each staged column back as
its target column's type (see :mod:`._staging`)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._compact import Row
from asyncetl.connectors.postgres.cdc._staging import read_staged, staged_columns
from asyncetl.connectors.postgres.schema import Column, TableSchema
from asyncetl.core.errors import PermanentError

__all__ = ["Stage", "column_list", "stage_rows", "target_column"]

#: Characters of text and bytes (all columns' together) up to which a group travels as
#: array parameters; a larger one is COPYed into a temporary table, row by row, since one
#: parameter holds at most 1 GB and the whole group would sit in memory twice.
_ARRAY_CHARS: Final = 16 << 20
#: What a value of another type counts for, against that limit.
_VALUE_CHARS: Final = 16
#: Staged types whose values are ``str`` or ``bytes`` (see :func:`._staging.staged_columns`).
_SIZED: Final = frozenset({"text", "character varying", "character", "bytea"})


@dataclass(frozen=True, slots=True)
class Stage:
    """Staged rows, read ``AS s``: the relation that holds them (a temporary table's
    quoted name, or a subquery over array parameters), for each column the SQL that reads
    it as its target column's type, and the statement's arguments."""

    name: str
    reads: dict[str, str]
    args: tuple[object, ...] = ()

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
    """``rows`` staged for one statement (see :mod:`._staging`): as one array parameter per
    column, unnested, so a group needs no table created, filled and dropped, and the
    statement's text (so its plan) repeats from batch to batch; a large group in a
    temporary table."""
    types = [(extra or {}).get(c) or target_column(schema, c) for c in columns]
    staged, lazy = staged_columns([t.type for t in types], columns, rows)
    reads = {
        c: read_staged(f"s.{quote_ident(c)}", st, t.type)
        for c, st, t in zip(columns, staged, types, strict=True)
    }
    values = [list(column) for column in lazy]
    if _chars(staged, values, len(rows)) > _ARRAY_CHARS:
        return Stage(await _copy_stage(conn, stages, columns, staged, values), reads)
    sent = _non_null(values)
    for index in set(range(len(columns))).difference(sent):
        reads[columns[index]] = f"NULL::{types[index].type}"
    arrays = ", ".join(f"${n}::{staged[i]}[]" for n, i in enumerate(sent, 1))
    names = column_list([columns[i] for i in sent])
    relation = f"(SELECT * FROM unnest({arrays}) AS u({names}))"  # noqa: S608 - quoted
    return Stage(relation, reads, tuple(values[i] for i in sent))


def _non_null(values: list[list[object]]) -> list[int]:
    """The indexes of the columns to send: those holding a value in some row.

    A column that is NULL in every row (a nullable column the batch leaves empty)
    is read as a typed NULL instead: an array of NULLs costs the driver a check per
    element all the same. One column is sent whatever it holds, for the row count.
    """
    # The first value settles most columns: counting compares every value with None.
    sent = [
        i
        for i, column in enumerate(values)
        if column and (column[0] is not None or column.count(None) != len(column))
    ]
    return sent if sent or not values else [0]


async def _copy_stage(
    conn: asyncpg.Connection,
    stages: Iterator[int],
    columns: Sequence[str],
    staged: list[str],
    values: list[list[object]],
) -> str:
    """A temporary table holding the staged ``values`` (columns of rows), by COPY."""
    # The name carries the column types: asyncpg caches a COPY target's column
    # types by statement text, so a same-named table with other types would be
    # encoded with stale ones.
    name = f"_asyncetl_apply_{next(stages)}_{zlib.crc32(chr(0).join(staged).encode()):x}"
    definitions = ", ".join(f"{quote_ident(c)} {t}" for c, t in zip(columns, staged, strict=True))
    await conn.execute(f"CREATE TEMPORARY TABLE {quote_ident(name)} ({definitions}) ON COMMIT DROP")
    await conn.copy_records_to_table(
        name, records=zip(*values, strict=True), columns=list(columns), schema_name="pg_temp"
    )
    return f"pg_temp.{quote_ident(name)}"


def _chars(staged: list[str], values: list[list[object]], rows: int) -> int:
    """About how large the staged ``values`` are, in characters (see ``_ARRAY_CHARS``)."""
    total = 0
    for staged_type, column in zip(staged, values, strict=True):
        if staged_type.partition("(")[0] in _SIZED:  # str or bytes values, or None
            total += sum(map(len, filter(None, column)))  # type: ignore[arg-type]
        else:
            total += rows * _VALUE_CHARS
    return total


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
