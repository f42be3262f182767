"""A batch of rows of one shape (a RowBlock, as TableSource hands on) is checked like dicts."""

from __future__ import annotations

import pytest

from asyncetl.connectors.postgres import PostgresSink
from asyncetl.core.batch import Batch
from asyncetl.core.columnar import RowBlock
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

TABLE = "CREATE TABLE t (id bigint PRIMARY KEY, n bigint, s text)"


async def write(dsn: str, block: RowBlock, **options: str) -> list[tuple[object, str]]:
    sink = PostgresSink(dsn, "t", **options)  # type: ignore[arg-type]
    await sink.open()
    try:
        rejects = await sink.write(Batch(0, block, 0))
    finally:
        await sink.aclose()
    return [(r.record, str(r.error)) for r in rejects]


async def test_a_clean_block_loads_from_its_rows_without_making_records(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    block = RowBlock(["id", "n", "s"], [(1, 10, "a"), (2, None, "b\\c"), (3, 30, None)])
    assert await write(pg_database, block) == []
    assert block.rows() is not None  # nothing read the records
    assert await rows(pg_database, "SELECT id, n, s FROM t ORDER BY id") == [
        (1, 10, "a"),
        (2, None, "b\\c"),
        (3, 30, None),
    ]


async def test_fractions_and_nul_in_a_block_are_refused_per_record(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    block = RowBlock(["id", "n", "s"], [(1, 1.5, "a"), (2, 2, "b\x00c"), (3, 3.0, "ok")])
    assert await write(pg_database, block) == [
        (
            {"id": 1, "n": 1.5, "s": "a"},
            "column 'n' of table public.t is bigint and cannot take the value 1.5 "
            "(record id=1): it would lose its fraction; round it with a transform",
        ),
        (
            {"id": 2, "n": 2, "s": "b\x00c"},
            "column 's' of table public.t is text and cannot take the value 'b\\x00c' "
            "(record id=2): PostgreSQL text cannot hold the NUL character; strip it "
            "with a transform",
        ),
    ]
    assert await rows(pg_database, "SELECT id, n, s FROM t") == [(3, 3, "ok")]


async def test_a_null_key_in_a_block_refuses_that_record(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    block = RowBlock(["id", "n", "s"], [(1, 1, "a"), (None, 2, "b")])
    assert await write(pg_database, block) == [
        (
            {"id": None, "n": 2, "s": "b"},
            "record's key field 'id' is null; table public.t is keyed by it, and a record "
            "without its key cannot be stored",
        )
    ]
    assert await rows(pg_database, "SELECT id, n, s FROM t") == [(1, 1, "a")]


async def test_a_block_field_without_a_column_follows_the_schema_contract(
    pg_database: str,
) -> None:
    await execute(pg_database, TABLE)
    block = RowBlock(["id", "n", "extra"], [(1, 1, "x"), (2, 2, "y")])
    assert await write(pg_database, block, schema_contract="discard_value") == []
    assert await rows(pg_database, "SELECT id, n, s FROM t ORDER BY id") == [
        (1, 1, None),
        (2, 2, None),
    ]
