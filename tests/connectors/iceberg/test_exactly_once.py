"""Positions committed in Iceberg snapshot summaries, with the data, and read back to resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncetl import ListSource, Pipeline
from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from tests.connectors.iceberg.helpers import rows, summaries

pytestmark = pytest.mark.anyio


def records(start: int, stop: int) -> list[dict[str, object]]:
    return [{"id": i, "v": i * 3} for i in range(start, stop)]


def pipeline(warehouse: Path, source: ListSource[dict[str, object]], **sink: object) -> Pipeline:
    return Pipeline(
        "orders",
        source,
        IcebergSink(str(warehouse), table="shop.orders", **sink),  # type: ignore[arg-type]
        checkpoints=IcebergCheckpointStore(str(warehouse)),
        max_batch_size=10,
    )


async def test_each_commit_carries_its_position_and_a_rerun_resumes_after_it(
    tmp_path: Path,
) -> None:
    source = ListSource(records(0, 25), chunk_size=10)
    stats = await pipeline(tmp_path, source, commit_interval=0).run()
    assert stats.records_out == 25
    assert summaries(tmp_path, "shop.orders") == [
        {
            "asyncetl.pipeline": "orders",
            "asyncetl.source": "list_source",
            "asyncetl.commit": str(n),
            "asyncetl.position": str(position),
            "asyncetl.previous-position": previous,
            "asyncetl.tables": '["shop.orders"]',
        }
        for n, position, previous in [(1, 10, "null"), (2, 20, "10"), (3, 25, "20")]
    ]
    store = IcebergCheckpointStore(str(tmp_path))
    async with store:
        assert await store.load("orders", "list_source") == 25
        assert await store.load("orders", "other_source") is None
        assert await store.load("other", "list_source") is None
    more = ListSource(records(0, 40), chunk_size=10)
    rerun = await pipeline(tmp_path, more, commit_interval=0).run()
    assert rerun.records_in == 15  # only what came after position 25
    assert rows(tmp_path, "shop.orders") == records(0, 40)
    assert summaries(tmp_path, "shop.orders")[-1]["asyncetl.position"] == "40"


async def test_batches_are_gathered_into_one_commit_per_target_size(tmp_path: Path) -> None:
    source = ListSource(records(0, 100), chunk_size=10)
    # Each record is two numbers, 16 bytes counted: 40 records fill 640 bytes.
    await pipeline(tmp_path, source, target_file_size=640, commit_interval=60).run()
    positions = [s["asyncetl.position"] for s in summaries(tmp_path, "shop.orders")]
    assert positions == ["40", "80", "100"]  # the rest committed when the input ended
    assert rows(tmp_path, "shop.orders") == records(0, 100)


async def test_the_store_refuses_to_save_positions_without_their_data(tmp_path: Path) -> None:
    from asyncetl import Checkpoint, CheckpointError

    async with IcebergCheckpointStore(str(tmp_path)) as store:
        with pytest.raises(CheckpointError) as raised:
            await store.save(Checkpoint("orders", "list_source", 5))
    assert str(raised.value) == (
        "IcebergCheckpointStore cannot save position 5 of pipeline 'orders' on its own: "
        "positions are committed with the data by an IcebergSink on the same catalog; use that "
        "sink, or another checkpoint store"
    )


async def test_with_another_store_checkpoints_are_saved_only_after_their_commit(
    tmp_path: Path,
) -> None:
    from asyncetl import MemoryCheckpointStore

    store = MemoryCheckpointStore()
    sink = IcebergSink(str(tmp_path), table="shop.orders", key=["id"], target_file_size=640)
    source = ListSource(records(0, 100), chunk_size=10)
    await Pipeline("orders", source, sink, checkpoints=store, max_batch_size=10).run()
    assert [c.position for c in store.history] == [40, 80, 100]
    assert source.acknowledged == [40, 80, 100]
    assert summaries(tmp_path, "shop.orders") == [{}, {}, {}]  # no positions of their own
    assert rows(tmp_path, "shop.orders") == records(0, 100)


async def test_a_slow_source_is_committed_once_per_interval_not_once_per_batch(
    tmp_path: Path,
) -> None:
    source = ListSource(records(0, 100), chunk_size=10, delay=0.05)  # a batch each 50 ms
    await pipeline(tmp_path, source, commit_interval=0.25).run()
    commits = len(summaries(tmp_path, "shop.orders"))
    assert 1 < commits < 10, commits  # ten batches, about half a second
    assert rows(tmp_path, "shop.orders") == records(0, 100)
