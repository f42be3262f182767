"""A table altered while a sink writes to it: later batches follow its columns as they are.

Each test writes a batch, alters the table from another connection, and writes the
next batch through the same sink (its pooled connection keeps its session, and the
staging tables made in it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from asyncetl import Batch, Pipeline, Reject
from asyncetl.connectors.postgres import PostgresSink
from asyncetl.core.memory import ListSource, MemoryDeadLetterStore
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio

TEXT = "SELECT id, format('%s', v) FROM t ORDER BY id"


async def write_alter_write(
    dsn: str,
    first: list[dict[str, Any]],
    alter: str,
    second: list[dict[str, Any]],
    **options: Any,
) -> PostgresSink:
    sink = PostgresSink(dsn, "t", **options)
    await sink.open()
    try:
        await sink.write(batch(first))
        await execute(dsn, alter)
        await sink.write(batch(second, 1))
    finally:
        await sink.aclose()
    return sink


@pytest.mark.parametrize("mode", ["upsert", "append"])
async def test_a_widened_numeric_scale_is_kept_in_the_next_batch(
    mode: str, pg_database: str
) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, v numeric(10,2), w interval)")
    await write_alter_write(
        pg_database,
        [{"id": 1, "v": Decimal("1.25"), "w": None}],
        "ALTER TABLE t ALTER COLUMN v TYPE numeric(12,4)",
        [{"id": 2, "v": Decimal("1.2345"), "w": None}],
        mode=mode,
    )
    assert await rows(pg_database, TEXT) == [(1, "1.2500"), (2, "1.2345")]


async def test_an_upsert_after_a_narrowed_scale_rounds_as_the_column_now_does(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, v numeric(12,4)); INSERT INTO t VALUES (1, 0)",
    )
    await write_alter_write(
        pg_database,
        [{"id": 1, "v": Decimal("1.2345")}, {"id": 2, "v": Decimal("2.5")}],
        "ALTER TABLE t ALTER COLUMN v TYPE numeric(10,1)",
        [{"id": 1, "v": Decimal("1.2345")}, {"id": 2, "v": Decimal("2.25")}],
    )
    assert await rows(pg_database, TEXT) == [(1, "1.2"), (2, "2.3")]


async def test_a_widened_varchar_takes_longer_values_in_the_next_batch(pg_database: str) -> None:
    # Row 1 is there already: the first batch merges through a staging table too.
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(5)); INSERT INTO t VALUES (1, '')",
    )
    sink = await write_alter_write(
        pg_database,
        [{"id": 1, "v": "abcde"}],
        "ALTER TABLE t ALTER COLUMN v TYPE varchar(10)",
        [{"id": 1, "v": "abcdefghij"}, {"id": 2, "v": "xyz"}],
    )
    assert await rows(pg_database, TEXT) == [(1, "abcdefghij"), (2, "xyz")]
    assert sink.rows_changed == 3


class DroppingAfterFirstBatch(PostgresSink):
    """Drops column ``v`` of its table, from another connection, after its first batch."""

    dropped = False

    async def write(self, batch: Batch[Mapping[str, Any]]) -> Sequence[Reject]:
        rejects = await super().write(batch)
        if not self.dropped:
            self.dropped = True
            await execute(self.dsn.url, "ALTER TABLE t DROP COLUMN v")
        return rejects


async def test_a_column_dropped_under_the_sink_refuses_the_records_that_hold_it(
    pg_database: str,
) -> None:
    """The next batch is planned against the table as it is: its field has no column,
    and the schema contract (freeze) refuses those records, by name."""
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, v numeric(10,2), n text)")
    source = ListSource(
        [{"id": 1, "v": Decimal("1.50"), "n": "a"}, {"id": 2, "v": Decimal("2.50"), "n": "b"}]
    )
    letters = MemoryDeadLetterStore()
    sink = DroppingAfterFirstBatch(pg_database, "t")
    pipeline = Pipeline(
        "p", source, sink, dead_letters=letters, sink_errors="dead_letter", max_batch_size=1
    )
    await pipeline.run()
    assert await rows(pg_database, "SELECT id, n FROM t ORDER BY id") == [(1, "a")]
    assert [(letter.record, letter.error) for letter in letters.letters] == [
        (
            {"id": 2, "v": "2.50", "n": "b"},
            "field 'v' is not a column of table public.t; add the column, or set "
            'schema_contract = "evolve" (or "discard_value", "discard_row")',
        )
    ]
