"""Records the server refuses (a constraint, JSON nested too deep) take the failure policy
alone: the batch is bisected in the server and every other record lands."""

from __future__ import annotations

from typing import Any

import pytest

from asyncetl import ListSource, Pipeline
from asyncetl.connectors.postgres import (
    PostgresCheckpointStore,
    PostgresDeadLetterStore,
    PostgresSink,
)
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio

TABLE = (
    "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL CHECK (qty >= 0), "
    "code text UNIQUE, doc jsonb)"
)
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than PostgreSQL's stack allows


def orders() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {"id": i, "qty": i, "code": f"c{i}", "doc": None} for i in range(20)
    ]
    records[3]["qty"] = -1  # the CHECK constraint
    records[7]["code"] = "c6"  # the unique index, against a record of the same batch
    records[15]["doc"] = DEEP
    return records


async def test_only_the_refused_records_are_dead_lettered(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    pipeline = Pipeline(
        "orders",
        ListSource(orders(), chunk_size=20),
        PostgresSink(pg_database, "orders"),
        checkpoints=PostgresCheckpointStore(pg_database),
        dead_letters=PostgresDeadLetterStore(pg_database),
        sink_errors="dead_letter",
        max_batch_size=20,
    )
    stats = await pipeline.run()
    assert (stats.records_in, stats.records_out, stats.dead_lettered) == (20, 17, 3)
    assert await rows(pg_database, "SELECT id FROM orders ORDER BY id") == [
        (i,) for i in range(20) if i not in (3, 7, 15)
    ]
    letters = await rows(
        pg_database,
        "SELECT (record->>'id')::int, error FROM asyncetl_dead_letters ORDER BY 1",
    )
    assert letters == [
        (
            3,
            'table public.orders refused the record: new row for relation "orders" violates '
            'check constraint "orders_qty_check" (Failing row contains (3, -1, c3, null).); '
            "fix the record, or the table's constraint",
        ),
        (
            7,
            "table public.orders refused the record: duplicate key value violates unique "
            'constraint "orders_code_key" (Key (code)=(c6) already exists.); fix the record, '
            "or the table's constraint",
        ),
        (
            15,
            "table public.orders refused the record: stack depth limit exceeded; fix the "
            "record, or the table's constraint",
        ),
    ]
    assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [("20",)]


async def test_a_refused_record_is_returned_with_the_server_reason(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    sink = PostgresSink(pg_database, "orders", mode="append")
    await sink.open()
    try:
        rejects = await sink.write(batch(orders()[:5]))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            orders()[3],
            'table public.orders refused the record: new row for relation "orders" violates '
            'check constraint "orders_qty_check" (Failing row contains (3, -1, c3, null).); '
            "fix the record, or the table's constraint",
        )
    ]
    assert await rows(pg_database, "SELECT id FROM orders ORDER BY id") == [(0,), (1,), (2,), (4,)]
