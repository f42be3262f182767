"""A CDC stream that has caught up with the server and stays quiet ends its open batch at
once, instead of holding what it read for ``max_batch_age``; behind the server, batches
still fill up to ``max_batch_size``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from tests.connectors.postgres.cdc.support import execute, fetch, random_name, wait_for

pytestmark = pytest.mark.anyio


class SizedApply(ApplySink):
    """Notes how many changes each batch with any brought."""

    sizes: list[int]

    async def _apply(self, records: Sequence[Any], *rest: Any) -> None:
        await super()._apply(records, *rest)
        if records:
            self.sizes.append(len(records))


async def streaming_pipeline(cdc_db: str, target_db: str, batch_size: int) -> Pipeline:
    """A slot and publication of table ``t`` made now, and a pipeline that streams from it
    (no snapshot) whose batches would wait a minute to close by age."""
    slot, publication = random_name("slot"), random_name("pub")
    await execute(cdc_db, f"CREATE PUBLICATION {publication} FOR TABLE t")
    await execute(cdc_db, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    await execute(target_db, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = SizedApply(target_db)
    sink.sizes = []
    source = CdcSource(
        cdc_db, slot=slot, publication=publication, snapshot="never", create_slot=False
    )
    return Pipeline(
        "quiet",
        source,
        sink,
        checkpoints=PostgresCheckpointStore(target_db),
        max_batch_size=batch_size,
        max_batch_age=60,
    )


async def target_ids(target_db: str) -> list[int]:
    return [r[0] for r in await fetch(target_db, "SELECT id FROM t ORDER BY id")]


def sizes(pipeline: Pipeline) -> list[int]:
    sink = pipeline.sink
    assert isinstance(sink, SizedApply)
    return sink.sizes


async def test_a_transaction_is_applied_once_the_caught_up_stream_is_quiet(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    pipeline = await streaming_pipeline(cdc_db, target_db, batch_size=1000)

    async def applied(ids: list[int]) -> bool:
        return await target_ids(target_db) == ids

    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await execute(cdc_db, "INSERT INTO t VALUES (1), (2), (3)")
        await wait_for(lambda: applied([1, 2, 3]), seconds=10)
        await execute(cdc_db, "INSERT INTO t VALUES (4)")
        await wait_for(lambda: applied([1, 2, 3, 4]), seconds=10)
        pipeline.stop()
    # Each transaction a batch of its own, committed long before its age of 60 s.
    assert sizes(pipeline) == [3, 1]


async def test_a_backlog_still_fills_batches_up_to_their_size(cdc_db: str, target_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    pipeline = await streaming_pipeline(cdc_db, target_db, batch_size=50)
    # 120 transactions of one row each, all waiting in the slot before the run starts.
    await execute(
        cdc_db,
        "CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$ BEGIN "
        "FOR i IN 1..120 LOOP INSERT INTO t VALUES (i); COMMIT; END LOOP; END $$",
    )
    await execute(cdc_db, "CALL fill()")

    async def all_applied() -> bool:
        return await target_ids(target_db) == list(range(1, 121))

    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await wait_for(all_applied, seconds=10)
        pipeline.stop()
    # Closed by size (a chunk is never split, so a batch may hold a few more), and only
    # the last one, with the rest of the backlog, by the quiet after it.
    made = sizes(pipeline)
    assert sum(made) == 120
    assert len(made) >= 2
    assert all(size >= 50 for size in made[:-1])
