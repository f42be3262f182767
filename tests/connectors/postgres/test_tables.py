"""The pg_copy example on pgbench's tables: create, copy, re-run writes nothing, changes only."""

from __future__ import annotations

import asyncio
import gc
import shutil
from contextlib import aclosing
from itertools import cycle
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg
import pytest
import structlog.testing

from asyncetl import Batch, ConfigError, JsonValue
from asyncetl.connectors.postgres import PostgresSink, TablesSink, TablesSource
from asyncetl.connectors.postgres._connect import Dsn, close_pool, open_pool, retry_policy
from asyncetl.spec import build_pipeline
from tests.connectors.postgres.helpers import connect, execute, rows

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parents[3] / "examples" / "pg_copy.toml"
TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]


async def versions(dsn: str) -> dict[str, dict[str, str]]:
    """Each target row's xmin, by table and row: a rewritten row gets a new one."""
    result = {}
    async with connect(dsn) as conn:
        for table in TABLES:
            found = await conn.fetch(f"SELECT t::text AS row, xmin::text AS x FROM {table} t")
            result[table] = {r["row"]: r["x"] for r in found}
    return result


async def run_copy(monkeypatch: pytest.MonkeyPatch, source: str, target: str) -> dict[str, int]:
    monkeypatch.setenv("SOURCE_DSN", source)
    monkeypatch.setenv("TARGET_DSN", target)
    monkeypatch.setenv("TABLES", ",".join(TABLES))
    pipeline = build_pipeline(EXAMPLE)
    assert isinstance(pipeline.source, TablesSource)
    assert isinstance(pipeline.sink, TablesSink)
    with structlog.testing.capture_logs() as logs:
        await pipeline.run()
    return {e["table"]: e["rows_changed"] for e in logs if e["event"] == "table written"}


@pytest.fixture
async def pgbench(pg_database: str) -> str:
    if shutil.which("pgbench") is None:
        pytest.skip("pgbench is not installed")
    await anyio.run_process(["pgbench", "-i", "-s", "1", "-q", pg_database])
    # pgbench -i leaves pgbench_history empty; a few transactions fill it.
    await anyio.run_process(["pgbench", "-t", "30", "-c", "1", "-n", pg_database])
    # An identical copy of a history row, and fewer accounts to keep the test quick.
    await execute(
        pg_database,
        "INSERT INTO pgbench_history SELECT * FROM pgbench_history LIMIT 1;"
        "DELETE FROM pgbench_accounts WHERE aid > 20000",
    )
    return pg_database


async def test_pg_copy_of_pgbench_tables(
    pgbench: str, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = pgbench
    target = pg_database + "_target"
    await execute(pg_database, f'CREATE DATABASE "{target.rsplit("/", 1)[1]}"')
    try:
        first = await run_copy(monkeypatch, source, target)
        assert first == {
            "pgbench_accounts": 20000,
            "pgbench_branches": 1,
            "pgbench_tellers": 10,
            "pgbench_history": 31,
        }
        for table in TABLES:
            assert await rows(target, f"SELECT count(*) FROM {table}") == await rows(
                source, f"SELECT count(*) FROM {table}"
            )
        assert await rows(target, "SELECT sum(abalance)::bigint FROM pgbench_accounts") == (
            await rows(source, "SELECT sum(abalance)::bigint FROM pgbench_accounts")
        )

        before = await versions(target)
        assert await run_copy(monkeypatch, source, target) == dict.fromkeys(first, 0)
        assert await versions(target) == before

        await execute(
            source,
            "UPDATE pgbench_accounts SET abalance = abalance + 7 "
            "WHERE aid IN (3, 7777); UPDATE pgbench_tellers SET tbalance = 1 "
            "WHERE tid = 4; INSERT INTO pgbench_history VALUES (1, 1, 1, 5, now(), NULL)",
        )
        changed = await run_copy(monkeypatch, source, target)
        assert changed == {
            "pgbench_accounts": 2,
            "pgbench_branches": 0,
            "pgbench_tellers": 1,
            "pgbench_history": 1,
        }
        after = await versions(target)
        assert {t: len(set(after[t].items()) - set(before[t].items())) for t in TABLES} == changed
        assert await rows(
            target, "SELECT aid, abalance FROM pgbench_accounts WHERE aid IN (3, 7777) ORDER BY aid"
        ) == await rows(
            source, "SELECT aid, abalance FROM pgbench_accounts WHERE aid IN (3, 7777) ORDER BY aid"
        )
        assert await rows(target, "SELECT count(*) FROM pgbench_history") == [(32,)]
        assert await rows(target, "SELECT position::text FROM asyncetl_checkpoints") == [("null",)]
    finally:
        await execute(
            pg_database, f'DROP DATABASE IF EXISTS "{target.rsplit("/", 1)[1]}" WITH (FORCE)'
        )


# pg_terminate_backend makes the backend send its FATAL error, then close the socket. A
# query started between the two met asyncpg's "cannot switch to state 15; another
# operation (2) is in progress", which stopped the run; these pauses after the kill
# land queries before, between and after the two.
PAUSES = (0.0, 0.0005, 0.001, 0.002, 0.004)


async def terminate_others(admin: asyncpg.Connection, dsn: str) -> int:
    """Terminate the idle backends of ``dsn``'s database (pooled connections); returns how many.

    Only idle ones: a backend still starting up is a pool's new connection.
    """
    database = dsn.rsplit("/", 1)[1]
    return len(
        await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND state = 'idle' AND pid <> pg_backend_pid()",
            database,
        )
    )


async def test_tables_source_reconnects_and_resumes_after_its_backend_is_terminated(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE items (id int PRIMARY KEY, name text);"
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g",
    )
    source = TablesSource(pg_database, "items", chunk_size=10, retries=3)
    await source.open()
    ids: list[int] = []
    positions = []
    kills = 0
    pauses = cycle(PAUSES)
    try:
        async with (
            connect(pg_database) as admin,
            aclosing(source.read(None, max_chunk=10)) as chunks,  # type: ignore[type-var]
        ):
            async for chunk in chunks:
                ids += [row.values["id"] for row in chunk.records]  # type: ignore[call-overload,index]
                positions.append(chunk.position)
                kills += await terminate_others(admin, pg_database)
                await anyio.sleep(next(pauses))
    finally:
        await source.aclose()
    assert ids == list(range(1, 201))
    assert positions == [
        {"items": {"table": "items", "order": ["id"], "after": [str(n)]}}
        for n in range(10, 201, 10)
    ] + [
        {"items": "done"},
        None,
    ]
    assert kills >= 20  # every page after the first ran on a new connection


async def test_postgres_sink_reconnects_after_its_idle_backend_is_terminated(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE log (n int PRIMARY KEY)")
    sink = PostgresSink(pg_database, "log", retries=3)
    await sink.open()
    pauses = cycle(PAUSES)
    try:
        async with connect(pg_database) as admin:
            for n in range(20):
                await sink.write(Batch(n, [{"n": n}], n))
                assert await terminate_others(admin, pg_database) >= 1
                await anyio.sleep(next(pauses))
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT n FROM log ORDER BY n") == [(n,) for n in range(20)]


def test_a_position_for_another_set_of_tables_is_refused() -> None:
    source = TablesSource("postgresql://u:secret@127.0.0.1/db", "a, b", name="copy")
    at_a: JsonValue = {"table": "a", "order": ["id"], "after": ["3"]}
    source.check_position({"a": "done", "b": {"table": "b", "order": ["id"], "after": ["1"]}})
    source.check_position({"a": at_a})  # b was added: it is read from the start
    with pytest.raises(ConfigError) as caught:
        source.check_position({"a": "done", "c": at_a})
    assert str(caught.value) == (
        "TablesSource 'copy': position: cannot resume from the committed position "
        '{"a":"done","c":{"table":"a","order":["id"],"after":["3"]}}: it was written for '
        'tables ["a","c"], not for tables ["a","b"]; restore tables, or to read these from the '
        "start, reset the checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )
    with pytest.raises(ConfigError) as inner:
        source.check_position({"b": at_a})
    assert str(inner.value).startswith(
        "TableSource 'b': position: cannot resume from the committed position "
        '{"table":"a","order":["id"],"after":["3"]}: it was written for table "a", not for '
        'table "b";'
    )


def test_tables_source_refuses_an_unknown_format() -> None:
    with pytest.raises(ConfigError) as caught:
        TablesSource("postgresql://u@h/d", "a, b", format="csv")
    assert (
        str(caught.value)
        == "source tables: format: must be one of records, copy, binary, not 'csv'"
    )


async def test_copy_format_reads_keyed_tables_as_copy_lines_and_keyless_ones_as_records(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE k (id integer PRIMARY KEY, a text, g integer GENERATED ALWAYS AS (id) STORED);"
        "INSERT INTO k (id, a) VALUES (1, 'x\ty'), (2, NULL);"
        "CREATE TABLE n (body text); INSERT INTO n VALUES ('z')",
    )
    source = TablesSource(pg_database, "k, n", format="copy")
    await source.open()
    try:
        async with aclosing(source.read(None, max_chunk=10)) as chunks:  # type: ignore[type-var]
            read = [(row.table, row.values) async for chunk in chunks for row in chunk.records]
    finally:
        await source.aclose()
    # The generated column is left out: the target computes it.
    assert read == [("k", b"1\tx\\ty"), ("k", b"2\t\\N"), ("n", {"body": "z"})]


async def test_a_pool_closed_just_after_losing_its_connection_leaves_no_stray_error(
    pg_database: str,
) -> None:
    """Closing must not race a reconnect: asyncpg reported its cancelled connect on the loop."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        for steps in range(12):  # close at each of the first loop steps after the loss
            pool = await open_pool(Dsn.parse(pg_database), policy=retry_policy(0, 1.0))
            try:
                await pool.acquire()
                async with connect(pg_database) as admin:
                    assert await terminate_others(admin, pg_database) == 1
                with anyio.fail_after(5):  # the backend's FATAL error arrives, the socket closes
                    while pool.get_size():
                        await anyio.lowlevel.checkpoint()
                for _ in range(steps):
                    await anyio.lowlevel.checkpoint()
            finally:
                await close_pool(pool)
        gc.collect()  # an unretrieved exception is reported when its future is freed
        await anyio.sleep(0.1)
    finally:
        loop.set_exception_handler(previous)
    assert [context["message"] for context in reported] == []


async def test_a_pool_that_lost_its_connection_reconnects_when_next_used(pg_database: str) -> None:
    pool = await open_pool(Dsn.parse(pg_database), policy=retry_policy(0, 1.0))
    try:
        await pool.acquire()
        async with connect(pg_database) as admin:
            assert await terminate_others(admin, pg_database) == 1
        with anyio.fail_after(5):
            while pool.get_size():
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        assert pool.get_size() == 0  # nothing connects in the background
        assert await pool.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1
    finally:
        await close_pool(pool)
