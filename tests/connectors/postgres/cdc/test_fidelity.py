"""Source and target agree row for row (``row(t.*)::text``): keyless tables, TOAST, types."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import anyio
import asyncpg
import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from tests.connectors.postgres.cdc.support import (
    cdc_db,
    execute,
    random_name,
    streaming,
    target_db,
    wait_for,
)

__all__ = ["cdc_db", "target_db"]

pytestmark = pytest.mark.anyio


async def table_text(dsn: str, table: str) -> list[str]:
    """Every row of ``table`` as ``row(t.*)::text``, sorted, in one session's settings."""
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC", "DateStyle": "ISO"})
    try:
        rows = await conn.fetch(f"SELECT row(t.*)::text FROM {table} AS t ORDER BY 1")
    except asyncpg.UndefinedTableError:
        return ["<missing>"]
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def same(source: str, target: str, tables: Sequence[str]) -> bool:
    for table in tables:
        if await table_text(source, table) != await table_text(target, table):
            return False
    return True


async def replicate(
    source_dsn: str,
    target_dsn: str,
    tables: Sequence[str],
    statements: Sequence[Any],
    *,
    seconds: float = 20.0,
) -> Pipeline:
    """Snapshot ``tables`` into ``target_dsn`` through an ApplySink, run ``statements``
    (SQL or async callables) while streaming, and stop once every table matches."""
    source = CdcSource(
        source_dsn,
        slot=random_name("slot"),
        publication=random_name("pub"),
        tables=list(tables),
        status_interval=0.2,
    )
    sink = ApplySink(target_dsn, create=True)
    pipeline = Pipeline(
        "fidelity",
        source,
        sink,
        checkpoints=PostgresCheckpointStore(target_dsn),
        max_batch_size=500,
        max_batch_age=0.05,
    )

    async def drive() -> None:
        try:
            await wait_for(lambda: streaming(source_dsn, source.slot), seconds=seconds)
            for statement in statements:
                if isinstance(statement, str):
                    await execute(source_dsn, statement)
                else:
                    await statement()
            try:
                await wait_for(lambda: same(source_dsn, target_dsn, tables), seconds=seconds)
            except TimeoutError:
                for table in tables:  # what differs, in the failure's report
                    print(table, await table_text(source_dsn, table))
                    print(table, await table_text(target_dsn, table))
                raise
        finally:
            pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await pipeline.run()
    return pipeline


def _pgbench(dsn: str, *args: str) -> None:
    subprocess.run(["pgbench", *args, dsn], check=True, capture_output=True, timeout=300)


async def test_pgbench_with_a_keyless_history_table(cdc_db: str, target_db: str) -> None:
    await anyio.to_thread.run_sync(_pgbench, cdc_db, "-i", "-s", "1", "-q")
    await execute(cdc_db, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
    tables = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]

    async def bench() -> None:
        await anyio.to_thread.run_sync(_pgbench, cdc_db, "-n", "-c", "4", "-t", "200")

    # The history table is empty in the snapshot: the target is created from streamed
    # changes, whose old-row identity covers every column (and ``filler`` is NULL).
    statements = ["INSERT INTO pgbench_history VALUES (1, 1, 1, 5, now(), NULL)", bench]
    await replicate(cdc_db, target_db, tables, statements, seconds=120)
    for table in tables:
        assert await table_text(cdc_db, table) == await table_text(target_db, table)
    assert len(await table_text(target_db, "pgbench_history")) == 801


async def test_keyless_full_identity_updates_and_deletes_match_null_safely(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE k (a int, b text, p point, x xml);"
        "ALTER TABLE k REPLICA IDENTITY FULL;"
        "INSERT INTO k VALUES (1, NULL, '(1,2)', '<a>1</a>'), (1, NULL, '(1,2)', '<a>1</a>'),"
        " (2, 'two', NULL, NULL)",
    )
    await replicate(
        cdc_db,
        target_db,
        ["k"],
        [
            "INSERT INTO k VALUES (3, NULL, NULL, NULL), (3, NULL, NULL, NULL)",
            "DELETE FROM k WHERE ctid = (SELECT min(ctid) FROM k WHERE a = 1)",
            "UPDATE k SET b = 'three' WHERE ctid = (SELECT min(ctid) FROM k WHERE a = 3)",
            "UPDATE k SET a = 20 WHERE a = 2",
        ],
    )
    assert await table_text(target_db, "k") == [
        '(1,,"(1,2)",<a>1</a>)',
        "(20,two,,)",
        "(3,,,)",
        "(3,three,,)",
    ]


RANDOM_TEXT = "(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 400) g)"


@pytest.mark.parametrize(
    ("identity", "key"),
    [("DEFAULT", "PRIMARY KEY"), ("FULL", "PRIMARY KEY"), ("FULL", "")],
    ids=["default", "full", "full-keyless"],
)
async def test_unchanged_toast_values_are_kept(
    cdc_db: str, target_db: str, identity: str, key: str
) -> None:
    await execute(
        cdc_db,
        f"CREATE TABLE t (id int {key}, n int, big text, also text);"
        f"ALTER TABLE t REPLICA IDENTITY {identity};"
        f"INSERT INTO t SELECT g, 0, {RANDOM_TEXT}, repeat('x', 10000) FROM generate_series(1, 6) g",
    )
    await replicate(
        cdc_db,
        target_db,
        ["t"],
        [
            # rows first seen in the stream through an update that leaves both unchanged
            "UPDATE t SET n = 1 WHERE id <= 2",
            "UPDATE t SET n = n + 1 WHERE id <= 2",  # twice in one batch, too
            f"UPDATE t SET big = {RANDOM_TEXT} WHERE id = 3",  # only ``also`` unchanged
            "BEGIN; UPDATE t SET n = 5 WHERE id = 4; UPDATE t SET n = 6 WHERE id = 4; COMMIT",
            "DELETE FROM t WHERE id = 5",
        ],
    )
    rows = await table_text(target_db, "t")
    assert len(rows) == 5
    assert min(len(r) for r in rows) > 20000
