"""No record skipped, doubled or leaked: refused records, dead letters and checkpoints in one database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from asyncetl import DeadLetter, ListSource, Pipeline, StageError
from asyncetl.connectors.postgres import (
    PostgresCheckpointStore,
    PostgresDeadLetterStore,
    PostgresSink,
)
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

#: Orders 0…29; order 14 has a field that is no column of the table.
ORDERS: list[dict[str, Any]] = [
    {"id": i, "qty": i % 5} if i != 14 else {"id": 14, "qty": 1, "note": "gift"} for i in range(30)
]


def orders_pipeline(
    dsn: str, records: list[dict[str, Any]], *, sink_errors: str = "fail", letters: bool = False
) -> Pipeline:
    return Pipeline(
        "orders",
        ListSource(records, chunk_size=10),
        PostgresSink(dsn, "orders", mode="upsert"),
        checkpoints=PostgresCheckpointStore(dsn),
        dead_letters=PostgresDeadLetterStore(dsn) if letters else None,
        sink_errors=sink_errors,  # type: ignore[arg-type]
        max_batch_size=10,
    )


async def letters_in(dsn: str) -> list[tuple[Any, ...]]:
    return await rows(
        dsn,
        "SELECT pipeline, stage, record::text, position::text FROM asyncetl_dead_letters "
        "ORDER BY id",
    )


async def test_a_record_the_sink_refuses_fails_the_run_and_is_not_skipped_on_rerun(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY, qty int)")
    for _ in range(2):  # the rerun meets the same record, and fails the same way
        with pytest.raises(StageError) as caught:
            await orders_pipeline(pg_database, ORDERS).run()
        assert caught.value.stage == "postgres"
        assert caught.value.position == 20
        assert "field 'note' is not a column of table public.orders" in str(caught.value)
        assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [
            ("10",)
        ]
        assert await rows(pg_database, "SELECT id FROM orders ORDER BY id") == [
            (i,) for i in range(10)
        ]

    stats = await orders_pipeline(
        pg_database, ORDERS, sink_errors="dead_letter", letters=True
    ).run()
    assert (stats.records_in, stats.records_out, stats.dead_lettered) == (20, 19, 1)
    assert await letters_in(pg_database) == [
        ("orders", "postgres", '{"id":14,"qty":1,"note":"gift"}', "20")
    ]


async def test_dead_letters_are_written_in_the_batch_transaction_and_once_across_a_reset(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY, qty int)")
    records = [*ORDERS, {"id": None, "qty": 3}]
    await orders_pipeline(pg_database, records, sink_errors="dead_letter", letters=True).run()
    expected = [
        ("orders", "postgres", '{"id":14,"qty":1,"note":"gift"}', "20"),
        ("orders", "postgres", '{"id":null,"qty":3}', "31"),
    ]
    assert await letters_in(pg_database) == expected
    assert await rows(pg_database, "SELECT error FROM asyncetl_dead_letters WHERE id = 2") == [
        (
            "record's key field 'id' is null; table public.orders is keyed by it, and a record "
            "without its key cannot be stored",
        )
    ]
    await execute(pg_database, "DELETE FROM asyncetl_checkpoints")  # `checkpoint reset`
    stats = await orders_pipeline(
        pg_database, records, sink_errors="dead_letter", letters=True
    ).run()
    assert stats.records_in == 31
    assert await letters_in(pg_database) == expected


async def test_a_dead_letter_that_fails_to_store_rolls_its_batch_back(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY, qty int)")
    store = PostgresDeadLetterStore(pg_database)
    await store.open()
    await store.aclose()
    await execute(
        pg_database,
        "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$; "
        "CREATE TRIGGER disk_full BEFORE INSERT ON asyncetl_dead_letters "
        "FOR EACH ROW EXECUTE FUNCTION full_disk()",
    )
    with pytest.raises(StageError, match="disk full"):
        await orders_pipeline(pg_database, ORDERS, sink_errors="dead_letter", letters=True).run()
    assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [("10",)]
    assert await rows(pg_database, "SELECT count(*) FROM orders") == [(10,)]


async def test_a_dead_letter_table_of_an_older_version_gets_keys_and_keeps_its_rows(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE asyncetl_dead_letters (id bigserial PRIMARY KEY, pipeline text NOT NULL, "
        "stage text NOT NULL, error text NOT NULL, error_type text NOT NULL, record json, "
        "position json, time timestamptz NOT NULL); "
        "INSERT INTO asyncetl_dead_letters (pipeline, stage, error, error_type, record, "
        "position, time) VALUES ('p', 's', 'bad', 'ValueError', '{\"a\":1}', '7', now())",
    )
    now = datetime(2024, 5, 2, tzinfo=UTC)
    letter = DeadLetter("p", "s", "worse", "ValueError", {"a": 2}, 8, now, key="k1")
    async with PostgresDeadLetterStore(pg_database) as store:
        await store.put([letter, letter])
        await store.put([letter])
        stored = await store.list("p")
    assert [(d.id, d.record, d.position) for d in stored] == [
        ("1", {"a": 1}, 7),
        ("2", {"a": 2}, 8),
    ]
    assert await rows(pg_database, "SELECT key FROM asyncetl_dead_letters ORDER BY id") == [
        (None,),
        ("k1",),
    ]
