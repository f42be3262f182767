"""Table copies show their progress: rows read of the planner's estimate, per table."""

from __future__ import annotations

from typing import Any

import pytest

from asyncetl import Checkpoint, ListSink, MemoryCheckpointStore, Pipeline, Progress
from asyncetl.connectors.postgres import TableSource, TablesSource
from tests.connectors.postgres.helpers import execute

pytestmark = pytest.mark.anyio


async def test_a_table_copy_counts_rows_against_the_estimate_then_its_count(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500);"
        "ANALYZE t; INSERT INTO t SELECT generate_series(501, 520)",
    )
    source = TableSource(pg_database, "t", chunk_size=100)
    async with source:
        assert list(source.progress()) == [Progress(0, 500, "rows", "t")]
        pipeline = Pipeline("copy", source, ListSink[Any](), max_batch_size=100)
        await pipeline.run()
    # Read whole: the total is now what was counted, not the estimate of before the insert.
    assert list(source.progress()) == [Progress(520, 520, "rows", "t")]
    (part,) = pipeline.observe().progress
    assert (part.part, part.done, part.total, part.fraction, part.eta_s) == ("t", 520, 520, 1.0, 0)


async def test_a_table_never_analysed_has_no_total(pg_database: str) -> None:
    await execute(
        pg_database, "CREATE TABLE fresh (id int PRIMARY KEY); INSERT INTO fresh VALUES (1)"
    )
    source = TableSource(pg_database, "fresh", poll=0.5)
    async with source:
        assert list(source.progress()) == [Progress(0, None, "rows", "fresh")]


async def test_a_multi_table_copy_shows_each_table(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 30);"
        "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 70);"
        "ANALYZE a; ANALYZE b",
    )
    source = TablesSource(pg_database, ["a", "b"], chunk_size=50)
    async with source:
        assert list(source.progress()) == [
            Progress(0, 30, "rows", "a"),
            Progress(0, 70, "rows", "b"),
        ]
        await Pipeline("tables", source, ListSink[Any]()).run()
        assert list(source.progress()) == [
            Progress(30, 30, "rows", "a"),
            Progress(70, 70, "rows", "b"),
        ]
        # A run resumed after table a's snapshot shows it complete and reads b only.
        checkpoints = MemoryCheckpointStore()
        await checkpoints.save(Checkpoint("again", "tables", {"a": "done"}))
        sink = ListSink[Any]()
        await Pipeline("again", source, sink, checkpoints=checkpoints).run()
        assert len(sink.records) == 70
        assert list(source.progress()) == [
            Progress(30, 30, "rows", "a"),
            Progress(70, 70, "rows", "b"),
        ]
