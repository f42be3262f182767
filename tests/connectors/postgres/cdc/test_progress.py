"""A CDC snapshot shows each table's rows read of its estimate; streaming shows the slot's lag."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import structlog

from asyncetl import Lag, ListSink, Pipeline, Progress
from asyncetl.connectors.postgres import CdcSource
from tests.connectors.postgres.cdc.support import execute, random_name, streaming, wait_for

pytestmark = pytest.mark.anyio


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.05)


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
