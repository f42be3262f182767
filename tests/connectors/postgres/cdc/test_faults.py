"""Crash recovery: the consumer is SIGKILLed while snapshotting and while streaming, and restarted.

Each run is a real process (CdcSource → ApplySink, checkpoints in the target).
After the last, clean run the target must equal the source row by row.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import anyio
import pytest

from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    random_name,
    streaming,
    wait_for,
)

pytestmark = pytest.mark.anyio

CONSUMER = """
import sys, anyio, logging, structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from asyncetl import Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore

source_dsn, target_dsn, slot, publication, idle, chunk, contract = sys.argv[1:]
pipeline = Pipeline(
    "faults",
    CdcSource(source_dsn, slot=slot, publication=publication, tables=["items"],
              status_interval=0.5),
    ApplySink(target_dsn, create=True, schema_contract=contract),
    checkpoints=PostgresCheckpointStore(target_dsn),
    max_batch_size=int(chunk), max_batch_age=0.05,
    stop_when_idle=float(idle) if idle != "none" else None,
)
anyio.run(pipeline.run)
"""


def start_consumer(
    source: str,
    target: str,
    slot: str,
    publication: str,
    *,
    idle: str = "none",
    chunk: int = 300,
    contract: str = "freeze",
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    arguments = [source, target, slot, publication, idle, str(chunk), contract]
    return subprocess.Popen(
        [sys.executable, "-c", CONSUMER, *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def kill_after(process: subprocess.Popen[bytes], seconds: float) -> None:
    await anyio.sleep(seconds)
    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    process.send_signal(signal.SIGKILL)
    await anyio.to_thread.run_sync(process.wait)
    if process.stderr is not None:
        process.stderr.close()


async def finish(
    source: str, target: str, slot: str, publication: str, contract: str = "freeze"
) -> None:
    """A last clean run that stops once caught up."""
    process = start_consumer(source, target, slot, publication, idle="1.5", contract=contract)
    try:
        code = await anyio.to_thread.run_sync(lambda: process.wait(60))
    finally:
        if process.poll() is None:
            process.kill()
    stderr = b""
    if process.stderr is not None:
        stderr = process.stderr.read()
        process.stderr.close()
    assert code == 0, stderr.decode()


async def write_randomly(dsn: str, rng: random.Random, seconds: float, first_id: int) -> None:
    """Random inserts, updates and deletes in transactions of 1 to 50 changes."""
    next_id = first_id
    deadline = anyio.current_time() + seconds
    while anyio.current_time() < deadline:
        statements = []
        for _ in range(rng.randint(1, 50)):
            kind = rng.random()
            if kind < 0.4:
                statements.append(f"INSERT INTO items VALUES ({next_id}, 'new {next_id}', 0)")
                next_id += 1
            elif kind < 0.8:
                target = rng.randrange(1, next_id)
                statements.append(f"UPDATE items SET n = n + 1, name = 'upd' WHERE id = {target}")
            else:
                statements.append(f"DELETE FROM items WHERE id = {rng.randrange(1, next_id)}")
        await execute(dsn, "BEGIN; " + "; ".join(statements) + "; COMMIT")
        await anyio.sleep(rng.uniform(0, 0.02))


async def assert_same(source: str, target: str) -> None:
    expected = await fetch(source, "SELECT id, name, n FROM items ORDER BY id")
    actual = await fetch(target, "SELECT id, name, n FROM items ORDER BY id")
    missing = {tuple(r) for r in expected} - {tuple(r) for r in actual}
    extra = {tuple(r) for r in actual} - {tuple(r) for r in expected}
    assert (sorted(missing)[:10], sorted(extra)[:10]) == ([], [])
    assert [tuple(r) for r in actual] == [tuple(r) for r in expected]


async def _slot_exists(dsn: str, slot: str) -> bool:
    rows = await fetch(dsn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", slot)
    return bool(rows)


async def test_sigkill_during_the_snapshot_and_the_stream(cdc_db: str, target_db: str) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    await execute(
        cdc_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, n int);"
        "INSERT INTO items SELECT g, 'row ' || g, 0 FROM generate_series(1, 60000) g",
    )
    slot, publication = random_name("slot"), random_name("pub")
    kills = 0
    async with anyio.create_task_group() as tg:
        # Killed twice while snapshotting (60k rows in chunks of 300 take a few seconds)…
        for _ in range(2):
            process = start_consumer(cdc_db, target_db, slot, publication)
            await wait_for(lambda: _slot_exists(cdc_db, slot))
            await kill_after(process, rng.uniform(0.3, 1.2))
            kills += 1
            if kills == 1:
                tg.start_soon(write_randomly, cdc_db, rng, 5.0, 60001)
        # …then at random moments while streaming, with writes going on.
        for _ in range(3):
            process = start_consumer(cdc_db, target_db, slot, publication, chunk=50)
            await kill_after(process, rng.uniform(0.5, 1.5))
    await finish(cdc_db, target_db, slot, publication)
    await assert_same(cdc_db, target_db)
    positions = await fetch(target_db, "SELECT position::text FROM asyncetl_checkpoints")
    assert [p[0].split(":")[0] for p in positions] == ['{"lsn"'], f"seed {seed}"


async def test_sigkill_between_a_schema_change_and_its_rows(cdc_db: str, target_db: str) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    await execute(
        cdc_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, n int);"
        "INSERT INTO items SELECT g, 'row ' || g, g FROM generate_series(1, 2000) g",
    )
    slot, publication = random_name("slot"), random_name("pub")
    changes = [
        # a column added, then rows that fill it while the consumer is dead or restarting
        "ALTER TABLE items ADD COLUMN extra text",
        "INSERT INTO items SELECT g, 'new', g, 'x' || g FROM generate_series(2001, 4000) g;"
        "UPDATE items SET extra = 'upd' WHERE id % 3 = 0",
        # a column widened, then values only the wider type holds
        "ALTER TABLE items ALTER COLUMN n TYPE bigint",
        "UPDATE items SET n = n + 5000000000 WHERE id % 7 = 0",
    ]
    for change in changes:
        process = start_consumer(cdc_db, target_db, slot, publication, chunk=100, contract="evolve")
        await wait_for(lambda: streaming(cdc_db, slot))
        await execute(cdc_db, change)
        await kill_after(process, rng.uniform(0.0, 0.4))
    await finish(cdc_db, target_db, slot, publication, contract="evolve")
    query = "SELECT row(t.*)::text FROM items AS t ORDER BY id"
    expected = [r[0] for r in await fetch(cdc_db, query)]
    assert [r[0] for r in await fetch(target_db, query)] == expected, f"seed {seed}"
    columns = (
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum"
    )
    assert [tuple(r) for r in await fetch(target_db, columns)] == [
        ("id", "integer"),
        ("name", "text"),
        ("n", "bigint"),
        ("extra", "text"),
    ]
