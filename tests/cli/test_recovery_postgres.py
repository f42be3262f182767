"""Crash recovery with dead letters in PostgreSQL: kill -9 at random moments, all exactly once.

JSON lines (some not JSON) → a validating transform (some records invalid) →
a PostgreSQL upsert, with checkpoints and dead letters in the target database
(one transaction per batch), or dead letters in another database (stored
idempotently, by key). A run that ends before it is killed has its checkpoint
reset and goes again, so every test kills twenty times; after a
final run, the table and the dead letters (pipeline, stage, record, position)
equal one clean run's.

As in the SQLite test, dead-letter positions do not depend on where a run resumed
(see :mod:`tests.cli.recovery_letters`).
"""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest

from tests.cli.recovery_letters import (
    LINE,
    SPEC_HEAD,
    Letter,
    clean_run,
    dead_lettered,
    line,
    write_spec,
)
from tests.conftest import throwaway_database
from tests.connectors.postgres.helpers import rows
from tests.killing import kill_anywhere

pytestmark = pytest.mark.anyio

RECORDS = 4_000
BATCH = 100
KILLS = 20

SPEC = (
    SPEC_HEAD
    + """
[sink]
type = "postgres"
dsn = "{target}"
table = "items"
mode = "upsert"
key = ["id"]
columns = ["id", "v"]
create = true

[checkpoints]
type = "postgres"
dsn = "{target}"

[dead_letters]
type = "postgres"
dsn = "{letters}"
"""
)


def letters_spec(directory: Path, source: Path, target: str, letters: str) -> Path:
    text = SPEC.format(
        input=source, batch=BATCH, block=LINE * BATCH, target=target, letters=letters
    )
    return write_spec(directory, text)


async def table(dsn: str) -> list[tuple[object, ...]]:
    return await rows(dsn, "SELECT id, v FROM items ORDER BY id")


async def letters_in(dsn: str) -> list[Letter]:
    found = await rows(
        dsn,
        "SELECT pipeline, stage, record::text, position::text FROM asyncetl_dead_letters "
        "ORDER BY id",
    )
    return [(p, s, json.loads(r), json.loads(pos)) for p, s, r, pos in found]


@pytest.mark.parametrize(
    "letters_apart",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["one-database", "letters-apart"],
)
async def test_kill_9_leaves_every_row_and_dead_letter_exactly_once(
    tmp_path: Path, letters_apart: bool
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_bytes(b"".join(line(i) for i in range(RECORDS)))
    async with (
        throwaway_database() as clean,
        throwaway_database() as target,
        throwaway_database() as apart,
    ):
        letters = apart if letters_apart else target
        spec = letters_spec(tmp_path / "clean", source, clean, clean)
        seconds = await anyio.to_thread.run_sync(clean_run, spec)
        expected_table, expected_letters = await table(clean), await letters_in(clean)
        bad_json, invalid = dead_lettered(RECORDS)
        assert len(expected_letters) == bad_json + invalid
        assert len(expected_table) == RECORDS - bad_json - invalid

        spec = letters_spec(tmp_path / "run", source, target, letters)
        seed = 11 if letters_apart else 7
        kill = partial(kill_anywhere, spec, random.Random(seed), kills=KILLS, longest=0.2 * seconds)
        await anyio.to_thread.run_sync(kill)
        assert await table(target) == expected_table
        assert await letters_in(letters) == expected_letters
