"""The pg_copy example run as the comment at its top says: its summary counts what it wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.conftest import throwaway_database
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
SPEC = "examples/pg_copy.toml"
#: A keyed table, compared in the server, and a keyless one, compared by row hash.
TABLES = "items,notes"


@pytest.fixture
async def databases() -> AsyncIterator[tuple[str, str]]:
    async with throwaway_database() as source, throwaway_database() as target:
        await execute(
            source,
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT n, 'item ' || n FROM generate_series(1, 100) n;"
            "CREATE TABLE notes (body text);"
            "INSERT INTO notes SELECT 'note ' || n FROM generate_series(1, 10) n",
        )
        yield source, target


async def pg_copy(source: str, target: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "SOURCE_DSN": source, "TARGET_DSN": target, "TABLES": TABLES}
    return await anyio.run_process(
        [sys.executable, "-m", "asyncetl", "run", SPEC], cwd=REPO, env=env, check=False
    )


def summary(records_out: int, unchanged: int) -> str:
    return (
        r"pipeline pg_copy finished in \d+\.\d\d s\n"
        rf"  records_in     110\n  records_out    {records_out}\n  unchanged      {unchanged}\n"
        r"  dead_lettered  0\n"
        r"  position       none \(committed: the next run starts from the beginning\)\n"
    )


async def test_the_summary_counts_rows_written_and_rows_unchanged(
    databases: tuple[str, str],
) -> None:
    source, target = databases
    first = await pg_copy(source, target)
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(summary(110, 0), first.stdout.decode()), first.stdout

    again = await pg_copy(source, target)
    assert again.returncode == 0, again.stderr
    assert re.fullmatch(summary(0, 110), again.stdout.decode()), again.stdout

    await execute(
        source,
        "UPDATE items SET name = 'changed' WHERE id IN (5, 50, 95);"
        "UPDATE notes SET body = 'new note' WHERE body = 'note 1'",
    )
    changed = await pg_copy(source, target)
    assert changed.returncode == 0, changed.stderr
    # The changed note is a new row of the keyless table: the old one stays.
    assert re.fullmatch(summary(4, 106), changed.stdout.decode()), changed.stdout
    assert await rows(target, "SELECT id FROM items WHERE name = 'changed' ORDER BY id") == [
        (5,),
        (50,),
        (95,),
    ]
    assert await rows(target, "SELECT count(*) FROM notes") == [(11,)]
