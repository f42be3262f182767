"""Fixtures and helpers shared by the CDC tests: databases whose slots are always dropped."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg

from asyncetl import Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from asyncetl.core.batch import Chunk, Position
from asyncetl.core.changes import ChangeEvent


def random_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def server_and_database(dsn: str) -> str:
    """``host:port/database`` of ``dsn``: how error messages name where a slot lives."""
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


async def drop_replication_objects(dsn: str) -> None:
    """Drop every replication slot of ``dsn``'s database and every publication in it."""
    server, database = dsn.rsplit("/", 1)
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        with anyio.fail_after(20):
            while True:
                await admin.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE database = $1 AND active_pid IS NOT NULL",
                    database,
                )
                slots = await admin.fetch(
                    "SELECT slot_name, active FROM pg_replication_slots WHERE database = $1",
                    database,
                )
                if not slots:
                    break
                for slot in slots:
                    if not slot["active"]:
                        with contextlib.suppress(asyncpg.ObjectInUseError):
                            await admin.execute("SELECT pg_drop_replication_slot($1)", slot[0])
                await anyio.sleep(0.05)
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        for row in await conn.fetch("SELECT pubname FROM pg_publication"):
            await conn.execute(f'DROP PUBLICATION "{row[0]}"')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new database on ``admin_dsn``'s server; its slots and the database go afterwards."""
    name = random_name("asyncetl_test")
    await execute(admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    try:
        yield dsn
    finally:
        try:
            await drop_replication_objects(dsn)
        finally:
            await execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def confirmed_flush(dsn: str, slot: str) -> str | None:
    value: str | None = await fetchval(
        dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot
    )
    return value


async def streaming(dsn: str, slot: str) -> bool:
    """Whether a consumer streams ``slot``: not merely "active", which a slot also is while
    CREATE_REPLICATION_SLOT still waits for its consistent point (a write then would
    land before the slot's start)."""
    state = await fetchval(
        dsn,
        "SELECT r.state FROM pg_replication_slots s JOIN pg_stat_replication r "
        "ON r.pid = s.active_pid WHERE s.slot_name = $1",
        slot,
    )
    return state in ("catchup", "streaming")


async def wait_for(check: Callable[[], Any], *, seconds: float = 30.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    with anyio.fail_after(seconds):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)


async def take(
    source: CdcSource,
    count: int,
    *,
    after: Position = None,
    max_chunk: int = 1000,
    seconds: float = 30.0,
    on_chunk: Callable[[Chunk[ChangeEvent]], Any] | None = None,
    committed: bool = False,
) -> tuple[list[ChangeEvent], list[Position]]:
    """Read ``source`` until ``count`` records came; the records and every chunk position.

    :param committed: read on until a chunk's position is past a commit, not inside the
        transaction of the last record (its commit may come a read after it).
    """
    records: list[ChangeEvent] = []
    positions: list[Position] = []
    with anyio.fail_after(seconds):
        async with aclosing(source.read(after, max_chunk=max_chunk)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                records.extend(chunk.records)
                positions.append(chunk.position)
                if on_chunk is not None:
                    await on_chunk(chunk)
                inside = isinstance(chunk.position, dict) and "tx" in chunk.position
                if len(records) >= count and not (committed and inside):
                    break
    return records, positions


def rows_of(events: list[ChangeEvent]) -> list[tuple[str, Any, Any]]:
    """``(op, key, after)`` of each event: what the tests compare exactly."""
    return [(e.op, e.key, e.after) for e in events]


async def table_text(dsn: str, table: str, columns: str = "t.*") -> list[str]:
    """Every row of ``table`` as ``row(t.*)::text``, sorted, in one session's settings."""
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC", "DateStyle": "ISO"})
    try:
        rows = await conn.fetch(f"SELECT row({columns})::text FROM {table} AS t ORDER BY 1")
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        return ["<missing>"]
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def same(source: str, target: str, tables: Sequence[str], columns: str = "t.*") -> bool:
    for table in tables:
        if await table_text(source, table, columns) != await table_text(target, table, columns):
            return False
    return True


async def replicate(
    source_dsn: str,
    target_dsn: str,
    tables: Sequence[str],
    statements: Sequence[Any],
    *,
    seconds: float = 20.0,
    schema_contract: str = "freeze",
    columns: str = "t.*",
    until: Callable[[], Awaitable[bool]] | None = None,
    read_source: bool = False,
    max_batch_size: int = 500,
) -> Pipeline:
    """Snapshot ``tables`` into ``target_dsn`` through an ApplySink, run ``statements``
    (SQL or async callables) while streaming, and stop once every table matches (the
    ``row(columns)`` of each row), or once ``until`` returns true.

    :param read_source: give the sink the source's DSN, for its catalog.
    :param max_batch_size: the pipeline's batch size.
    """
    source = CdcSource(
        source_dsn,
        slot=random_name("slot"),
        publication=random_name("pub"),
        tables=list(tables),
        status_interval=0.2,
    )
    sink = ApplySink(
        target_dsn,
        create=True,
        schema_contract=schema_contract,
        source_dsn=source_dsn if read_source else None,
    )
    pipeline = Pipeline(
        random_name("fidelity"),
        source,
        sink,
        checkpoints=PostgresCheckpointStore(target_dsn),
        max_batch_size=max_batch_size,
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
                await wait_for(
                    until or (lambda: same(source_dsn, target_dsn, tables, columns)),
                    seconds=seconds,
                )
            except TimeoutError:
                for table in tables:  # what differs, in the failure's report
                    for dsn in (source_dsn, target_dsn):
                        print(table, [r[:200] for r in await table_text(dsn, table, columns)])
                raise
        finally:
            pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await pipeline.run()
    return pipeline
