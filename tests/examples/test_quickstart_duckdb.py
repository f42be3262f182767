"""The DuckDB quickstart: the same orders and dead letters as the SQLite one, in a DuckDB file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb

from examples.make_orders import GOOD_ORDERS, generate
from tests.examples.helpers import loaded_orders, run_example

SPEC = "examples/quickstart_duckdb.toml"


def quickstart(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_example(SPEC, *args, env={"QUICKSTART_DUCKDB": str(database)})


def select(database: Path, sql: str) -> list[tuple[object, ...]]:
    conn = duckdb.connect(str(database), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_orders_land_in_duckdb_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "quickstart.duckdb"
    first = quickstart(database, "run", "--log-level", "error")
    assert first.returncode == 0, first.stderr
    assert (
        "  records_in     10012\n  records_out    10000\n  unchanged      0\n  dead_lettered  12\n"
        in (first.stdout)
    )

    good = loaded_orders(generate())
    columns = "order_id, customer, sku, quantity, unit_price, total, country, ordered_at"
    rows = select(database, f"SELECT {columns} FROM orders ORDER BY order_id")
    assert len(rows) == GOOD_ORDERS
    assert rows == [tuple(row.values()) for row in good]
    assert select(database, "SELECT count(*) FROM asyncetl_dead_letters") == [(12,)]

    second = quickstart(database, "run", "--log-level", "error")
    assert second.returncode == 0, second.stderr
    assert "  records_in     0\n" in second.stdout
    assert select(database, f"SELECT {columns} FROM orders ORDER BY order_id") == rows
    assert select(database, "SELECT count(*) FROM asyncetl_dead_letters") == [(12,)]
