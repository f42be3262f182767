"""The pg_cdc example as its header says to run it: snapshot and stream, then catch up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.connectors.postgres.cdc.support import execute, random_name
from tests.connectors.postgres.helpers import rows

pytestmark = pytest.mark.anyio

REPO = Path(__file__).parents[4]
ITEMS = "SELECT id, name, qty FROM items ORDER BY id"
HISTORY = "SELECT n, note FROM history ORDER BY n"


def run_example(source: str, target: str, slot: str) -> subprocess.CompletedProcess[str]:
    """``python -m asyncetl run examples/pg_cdc.toml --stop-when-idle 1`` with its environment."""
    env = {
        **os.environ,
        "SOURCE_DSN": source,
        "TARGET_DSN": target,
        "TABLES": "items,history",
        "CDC_SLOT": slot,
        "CDC_PUBLICATION": slot,
    }
    command = ["run", "examples/pg_cdc.toml", "--stop-when-idle", "1", "--log-level", "warning"]
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


async def test_pg_cdc_example_copies_then_follows_changes(cdc_db: str, target_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int);"
        "CREATE TABLE history (n int NOT NULL, note text);"  # no key: appended
        "INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 300) g;"
        "INSERT INTO history VALUES (1, 'first'), (2, 'second')",
    )
    slot = random_name("pg_cdc")

    first = run_example(cdc_db, target_db, slot)
    assert first.returncode == 0, first.stderr
    assert "records_in     302" in first.stdout
    assert await rows(target_db, ITEMS) == await rows(cdc_db, ITEMS)
    assert await rows(target_db, HISTORY) == [(1, "first"), (2, "second")]

    await execute(
        cdc_db,
        "UPDATE items SET qty = qty * 10 WHERE id <= 5; DELETE FROM items WHERE id > 295;"
        "INSERT INTO items VALUES (1000, 'new', NULL); INSERT INTO history VALUES (3, 'third')",
    )
    second = run_example(cdc_db, target_db, slot)
    assert second.returncode == 0, second.stderr
    assert "records_in     12" in second.stdout  # 5 updates, 5 deletes, 2 inserts
    assert await rows(target_db, ITEMS) == await rows(cdc_db, ITEMS)
    assert len(await rows(target_db, ITEMS)) == 296
    assert await rows(target_db, HISTORY) == [(1, "first"), (2, "second"), (3, "third")]
