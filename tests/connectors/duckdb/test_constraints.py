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


async def test_refresh_swap_keeps_the_tables_indexes_and_refuses_a_unique_index_clash(
    tmp_path: Path,
) -> None:
    db = tmp_path / "i.duckdb"
    made(db)
    made(db, "CREATE INDEX orders_sku ON orders (sku)")
    made(db, 'CREATE UNIQUE INDEX "Orders qty" ON orders ((qty * 10), sku)')
    indexes = (
        "SELECT index_name, table_name, sql, is_unique FROM duckdb_indexes() ORDER BY index_name"
    )
    before = query(db, indexes)
    assert [row[:2] for row in before] == [("Orders qty", "orders"), ("orders_sku", "orders")]
    async with DuckDBSink(str(db), "orders", mode="refresh_swap") as sink:
        refused = await write(sink, [order(1), order(2)], position={"p": 1})
        assert refused == []
        # The staging table holds the unique index under a name of its own, enforced as rows land.
        assert [row[:2] for row in query(db, indexes)] == [
            ("Orders qty", "orders"),
            ("Orders qty__asyncetl_new", "orders__asyncetl_new"),
            ("orders_sku", "orders"),
        ]
        clash = {"id": 3, "sku": "s1", "qty": 1}  # the same (qty * 10, sku) as order 1
        refused = await write(sink, [clash, order(4)], seq=1, position={"p": 2})
        assert reasons(refused) == [
            (
                clash,
                "PermanentError",
                "DuckDB table 'orders' refused the record: Constraint Error: "
                'Duplicate key "(qty * 10): 10, sku: s1" violates unique constraint.',
            )
        ]
        assert await write(sink, [order(5)], seq=2, position=None) == []
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(1,), (2,), (4,), (5,)]
    assert query(db, indexes) == before
    assert query(
        db,
        "SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'orders' AND constraint_type = 'PRIMARY KEY'",
    ) == [("PRIMARY KEY", ["id"])]
    with pytest.raises(duckdb.ConstraintException, match="violates unique constraint"):
        made(db, "INSERT INTO orders VALUES (6, 's1', 1)")  # the swapped-in index holds


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
