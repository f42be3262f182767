"""A CDC snapshot shows each table's rows read of its estimate; streaming shows the slot's lag."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
import structlog

from asyncetl import Lag, ListSink, Pipeline, Progress
from asyncetl.connectors.postgres import CdcSource
from asyncetl.status import serve_status
from tests.connectors.postgres.cdc.support import (
    execute,
    fetchval,
    fresh_database,
    random_name,
    streaming,
    wait_for,
)

pytestmark = pytest.mark.anyio


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.05)


async def fetch(port: int, path: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return await response.text()


@pytest.fixture(autouse=True)
def _info_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


async def test_a_snapshot_counts_each_tables_rows_and_streaming_reads_no_lag(cdc_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 40);"
        "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 25);"
        "ANALYZE a; ANALYZE b",
    )
    source = CdcSource(
        cdc_db,
        slot=random_name("slot"),
        publication=random_name("pub"),
        tables=["a", "b"],
        status_interval=0.2,
        metrics_interval=0.1,
        heartbeat_interval=0.1,
    )
    sink = ListSink[Any]()
    pipeline = Pipeline("snap", source, sink, max_batch_size=10, max_batch_age=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await wait_for(lambda: streaming(cdc_db, source.slot))
        await until(lambda: len(sink.records) == 65)
        assert list(source.progress()) == [
            Progress(40, 40, "rows", "public.a"),
            Progress(25, 25, "rows", "public.b"),
        ]
        # Caught up and idle: the heartbeats keep the slot's lag, from this database's WAL, at zero.
        await until(lambda: Lag(0.0, "bytes", source.slot) in source.upstream_lag())
        pipeline.stop()
    assert [p.part for p in pipeline.observe().progress] == ["public.a", "public.b"]


SLOT_LAG = (
    "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots "
    "WHERE slot_name = $1"
)


async def test_a_running_caught_up_pipeline_reads_no_lag_whatever_other_databases_write(
    cdc_db: str, logical_pg: str
) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = CdcSource(
        cdc_db,
        slot=random_name("slot"),
        publication=random_name("pub"),
        tables=["t"],
        snapshot="never",
        status_interval=0.1,
        metrics_interval=0.1,
    )  # the default 60 s heartbeat: the slot itself stays behind other databases' WAL
    sink = ListSink[Any]()
    pipeline = Pipeline("idle", source, sink, max_batch_age=0.05)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve_status, pipeline, port=0))
        async with anyio.create_task_group() as running:
            running.start_soon(pipeline.run)
            await wait_for(lambda: streaming(cdc_db, source.slot))
            await execute(cdc_db, "INSERT INTO t VALUES (1)")
            await until(lambda: pipeline.stats.records_out == 1)
            async with fresh_database(logical_pg) as other:
                await execute(other, "CREATE TABLE noise AS SELECT generate_series(1, 20000) AS n")
            # The slot's own figure counts the other database's WAL until a heartbeat.
            assert await fetchval(cdc_db, SLOT_LAG, source.slot) > 100_000
            await anyio.sleep(0.3)  # a few measurements
            status = orjson.loads(await fetch(port, "/status.json"))
            metrics = await fetch(port, "/metrics")
            pipeline.stop()
        tg.cancel_scope.cancel()
    assert status["lag"] == [
        {"value": 0.0, "unit": "bytes", "part": source.slot},
        {"value": 0.0, "unit": "seconds", "part": source.slot},
    ]
    labels = f'part="{source.slot}",pipeline="idle",source="{source.name}"'
    assert f"asyncetl_source_lag_bytes{{{labels}}} 0.0" in metrics.splitlines()
    assert f"asyncetl_source_lag_seconds{{{labels}}} 0.0" in metrics.splitlines()
