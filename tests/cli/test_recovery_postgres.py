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
import signal
import subprocess
import sys
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
from tests.cli.test_recovery import start, started
from tests.conftest import throwaway_database
from tests.connectors.postgres.helpers import rows

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


def killed_runs(spec: Path, seconds: float, seed: int) -> int:
    """Start runs and SIGKILL them at random moments, then run once to the end; the kills."""
    rng = random.Random(seed)
    kills = 0
    while kills < KILLS:
        process = start(spec, "--log-level", "info", "--log-format", "json")
        if not started(process):
            raise AssertionError(process.communicate(timeout=30))
        try:
            process.wait(timeout=rng.uniform(0.02, 0.2) * seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            kills += 1
            continue
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        # Finished first: start over, so the remaining kills land mid-run again.
        reset = start_reset(spec)
        assert reset.returncode == 0, reset.stderr
    final = start(spec, "--log-level", "warning")
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    return kills


def start_reset(spec: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "asyncetl", "checkpoint", "reset", spec.name, "--yes"]
    return subprocess.run(command, cwd=spec.parent, capture_output=True, text=True, timeout=60)


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
        kills = await anyio.to_thread.run_sync(partial(killed_runs, spec, seconds, seed))
        assert kills == KILLS
        assert await table(target) == expected_table
        assert await letters_in(letters) == expected_letters
