"""The pg_cdc_to_iceberg example as its header says to run it: snapshot, stream, then catch up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.connectors.iceberg.helpers import rows, summaries
from tests.connectors.postgres.cdc.support import execute, fresh_database, random_name
from tests.connectors.postgres.helpers import rows as pg_rows

pytestmark = pytest.mark.anyio

REPO = Path(__file__).parents[2]


@pytest.fixture
async def source_db(logical_pg: str) -> AsyncIterator[str]:
    async with fresh_database(logical_pg) as dsn:
        yield dsn


def run_example(source: str, warehouse: Path, slot: str) -> subprocess.CompletedProcess[str]:
    """``python -m asyncetl run examples/pg_cdc_to_iceberg.toml --stop-when-idle 1``."""
    env = {
        **os.environ,
        "SOURCE_DSN": source,
        "TABLES": "items,history",
        "WAREHOUSE": str(warehouse),
        "CDC_SLOT": slot,
        "CDC_PUBLICATION": slot,
    }
    command = ["run", "examples/pg_cdc_to_iceberg.toml", "--stop-when-idle", "1"]
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *command, "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


async def test_cdc_into_iceberg_copies_then_follows_every_change(
    source_db: str, tmp_path: Path
) -> None:
    await execute(
        source_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));"
        "CREATE TABLE history (n int NOT NULL, note text);"  # no key: appended
        "INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 300) g;"
        "INSERT INTO history VALUES (1, 'first'), (2, 'second')",
    )
    warehouse, slot = tmp_path / "warehouse", random_name("iceberg_cdc")
    items = "SELECT id, name, price FROM items ORDER BY id"

    def iceberg_items() -> list[tuple[object, ...]]:
        return [(r["id"], r["name"], r["price"]) for r in rows(warehouse, "public.items")]

    first = run_example(source_db, warehouse, slot)
    assert first.returncode == 0, first.stderr
    assert "records_in     302" in first.stdout
    assert iceberg_items() == [tuple(r) for r in await pg_rows(source_db, items)]
    assert iceberg_items()[:2] == [(1, "item 1", Decimal("1.50")), (2, "item 2", Decimal("3.00"))]
    history = rows(warehouse, "public.history", order="n")
    assert history == [{"n": 1, "note": "first"}, {"n": 2, "note": "second"}]

    await execute(
        source_db,
        "UPDATE items SET price = price * 10 WHERE id <= 5; DELETE FROM items WHERE id > 295;"
        "INSERT INTO items VALUES (1000, 'new', NULL); INSERT INTO history VALUES (3, 'third');"
        "ALTER TABLE items ADD COLUMN colour text; UPDATE items SET colour = 'red' WHERE id = 7;"
        "UPDATE items SET id = 2000 WHERE id = 10",  # a new key: the row moves
    )
    second = run_example(source_db, warehouse, slot)
    assert second.returncode == 0, second.stderr
    assert "records_in     14" in second.stdout  # 7 updates, 5 deletes, 2 inserts
    expected = await pg_rows(source_db, "SELECT id, name, price, colour FROM items ORDER BY id")
    found = [(r["id"], r["name"], r["price"], r["colour"]) for r in rows(warehouse, "public.items")]
    assert found == [tuple(r) for r in expected]
    assert len(found) == 296
    assert found[6] == (7, "item 7", Decimal("10.50"), "red")
    assert rows(warehouse, "public.history", order="n")[-1] == {"n": 3, "note": "third"}
    # The position the second run ended at is in the last snapshot of the tables it changed.
    last = summaries(warehouse, "public.items")[-1]
    assert last["asyncetl.pipeline"] == "pg_cdc_to_iceberg"
    assert last["asyncetl.tables"] == '["public.history","public.items"]'
    assert (
        summaries(warehouse, "public.history")[-1]["asyncetl.position"] == last["asyncetl.position"]
    )
