"""DuckDBSink: a record that breaks a constraint is refused alone, and swaps keep constraints."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from structlog.testing import capture_logs

from asyncetl import DeadLetter, ListSource, MemoryDeadLetterStore, Pipeline
from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBSink
from asyncetl.connectors.duckdb._bisect import refused_rows
from tests.connectors.duckdb.helpers import query, reasons, write

pytestmark = pytest.mark.anyio

TABLE = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku VARCHAR NOT NULL, "
    "qty INTEGER CHECK (qty > 0))"
)


def made(path: Path, sql: str = TABLE) -> None:
    conn = duckdb.connect(str(path))
    try:
        conn.execute(sql)
    finally:
        conn.close()


def order(i: int, sku: str | None = "s", qty: int = 1) -> dict[str, object]:
    return {"id": i, "sku": f"{sku}{i}" if sku else None, "qty": qty}


async def test_only_the_records_breaking_a_constraint_are_refused_and_the_rest_land(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.duckdb"
    made(db)
    batch = [order(1), order(2, sku=None), order(3), order(4, qty=0), order(1), order(5)]
    async with DuckDBSink(str(db), "orders") as sink:
        refused = await write(sink, batch)
    where = "DuckDB table 'orders' refused the record: Constraint Error: "
    assert reasons(refused) == [
        (order(2, sku=None), "PermanentError", where + "NOT NULL constraint failed: orders.sku"),
        (
            order(4, qty=0),
            "PermanentError",
            where + 'CHECK constraint failed on table "orders" with expression CHECK((qty > 0))',
        ),
        (
            order(1),
            "PermanentError",
            where + 'PRIMARY KEY or UNIQUE constraint violation: duplicate key "1"',
        ),
    ]
    assert query(db, "SELECT id, sku, qty FROM orders ORDER BY id") == [
        (1, "s1", 1),
        (3, "s3", 1),
        (5, "s5", 1),
    ]


async def test_a_key_already_in_the_table_refuses_its_record_in_the_dead_letters(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.duckdb"
    made(db)
    async with DuckDBSink(str(db), "orders") as sink:
        assert await write(sink, [order(1)]) == []
    letters = MemoryDeadLetterStore()
    run = Pipeline(
        "orders",
        ListSource([order(i) for i in range(6)], name="orders"),
        DuckDBSink(str(db), "orders"),
        checkpoints=DuckDBCheckpointStore(str(db)),
        dead_letters=letters,
        sink_errors="dead_letter",
    )
    with capture_logs():
        stats = await run.run()
    assert stats.records_out == 5
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(6)]
    stored: list[DeadLetter] = letters.letters
    assert [
        (letter.record, letter.stage, letter.error) for letter in stored
    ] == [  # the table's row 1
        (
            order(1),
            "duckdb_sink",
            "DuckDB table 'orders' refused the record: Constraint Error: "
            'Duplicate key "id: 1" violates primary key constraint.',
        )
    ]
    assert await DuckDBCheckpointStore(str(db)).load("orders", "orders") == 6


async def test_refresh_swap_keeps_the_tables_primary_key_and_constraints(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    made(db)
    before = query(db, "SELECT sql FROM duckdb_tables() WHERE table_name = 'orders'")
    async with DuckDBSink(str(db), "orders", mode="refresh_swap") as sink:
        refused = await write(sink, [order(7), order(7), order(8, sku=None)], position={"p": 1})
        assert [r.record for r in refused] == [order(7), order(8, sku=None)]
        assert await write(sink, [order(9)], position=None) == []
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(7,), (9,)]
    assert query(db, "SELECT sql FROM duckdb_tables() WHERE table_name = 'orders'") == before
    assert query(
        db,
        "SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'orders' ORDER BY constraint_type, constraint_column_names",
    ) == [
        ("CHECK", ["qty"]),
        ("NOT NULL", ["id"]),
        ("NOT NULL", ["sku"]),
        ("PRIMARY KEY", ["id"]),
    ]


def test_bisection_keeps_the_first_of_two_rows_that_only_clash_together() -> None:
    tries: list[list[int]] = []

    def fails(rows: list[int]) -> BaseException | None:
        tries.append(list(rows))
        clash = 2 in rows and 5 in rows
        return ValueError(f"row {max(rows)}") if clash or 6 in rows else None

    refused = refused_rows(8, fails)  # type: ignore[arg-type]
    assert {row: str(error) for row, error in refused.items()} == {5: "row 5", 6: "row 6"}
    assert tries[0] == list(range(8))
    assert tries[-1] == [0, 1, 2, 3, 4, 7]
