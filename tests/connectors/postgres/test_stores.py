"""Checkpoint and dead-letter stores, and exactly-once checkpoints in the batch's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from asyncetl import (
    Batch,
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    ListSource,
    MemoryCheckpointStore,
    Pipeline,
    Reject,
    RunOutcome,
    Settle,
    StageError,
    TransactionalWriter,
)
from asyncetl.connectors.postgres import (
    PostgresCheckpointStore,
    PostgresDeadLetterStore,
    PostgresSink,
)
from tests.connectors.postgres.helpers import execute, rows
from tests.unencodable import check_every_letter_is_kept

pytestmark = pytest.mark.anyio


async def test_checkpoint_round_trip(pg_database: str) -> None:
    store = PostgresCheckpointStore(pg_database, schema="etl", table="cp")
    await store.open()
    try:
        assert await store.load("p", "s") is None
        await store.save(Checkpoint("p", "s", {"t": ["1", None]}))
        await store.save(Checkpoint("p", "s", {"t": ["2", None]}))
        await store.save(Checkpoint("p", "other", 7))
        assert await store.load("p", "s") == {"t": ["2", None]}
        assert await store.load("p", "other") == 7
    finally:
        await store.aclose()
    assert await rows(pg_database, "SELECT pipeline, source FROM etl.cp ORDER BY source") == [
        ("p", "other"),
        ("p", "s"),
    ]


async def test_dead_letters_put_list_remove(pg_database: str) -> None:
    store = PostgresDeadLetterStore(pg_database)
    now = datetime(2024, 5, 1, tzinfo=UTC)
    letters = [
        DeadLetter("p", "sink", f"bad {i}", "ValueError", {"i": i, "raw": "\u0000"}, i, now)
        for i in range(3)
    ]
    await store.open()
    try:
        await store.put(letters)
        await store.put([DeadLetter("q", "src", "x", "E", None, None, now)])
        listed = await store.list("p")
        assert [(d.error, d.record, d.position, d.time) for d in listed] == [
            (f"bad {i}", {"i": i, "raw": "\u0000"}, i, now) for i in range(3)
        ]
        assert [d.error for d in await store.list("p", limit=1)] == ["bad 0"]
        await store.remove("p", [listed[0].id or "", listed[2].id or ""])
        assert [d.error for d in await store.list("p")] == ["bad 1"]
        assert [d.pipeline for d in await store.list("q")] == ["q"]
    finally:
        await store.aclose()


async def test_sink_commits_to_a_store_in_the_same_database_only(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "t")
    assert sink.commits_to(PostgresCheckpointStore(pg_database.replace("127.0.0.1", "127.0.0.1")))
    assert not sink.commits_to(PostgresCheckpointStore(pg_database + "_other"))
    assert not sink.commits_to(MemoryCheckpointStore())


async def test_asking_commits_to_binds_nothing_and_transactional_writer_binds(
    pg_database: str,
) -> None:
    # A refresh_swap load that a crashed run left staged matches its checkpoint
    # only when checkpoints travel in the sink's transactions: then it is kept.
    await execute(
        pg_database,
        "CREATE TABLE dim (id int PRIMARY KEY, v text);"
        "CREATE TABLE dim__asyncetl_new (LIKE dim INCLUDING ALL);"
        "INSERT INTO dim__asyncetl_new VALUES (1, 'staged')",
    )
    store = PostgresCheckpointStore(pg_database)
    bound = PostgresSink(pg_database, "dim", mode="refresh_swap")
    assert bound.transactional_writer(store) is not None
    await bound.open()
    await bound.aclose()
    assert await rows(pg_database, "SELECT * FROM dim__asyncetl_new") == [(1, "staged")]

    asked = PostgresSink(pg_database, "dim", mode="refresh_swap")
    assert asked.commits_to(store)
    await asked.open()
    await asked.aclose()
    assert await rows(pg_database, "SELECT * FROM dim__asyncetl_new") == []


def test_a_sink_gives_no_transactional_writer_for_a_store_it_does_not_commit_to() -> None:
    sink = PostgresSink("postgresql://postgres@127.0.0.1:5432/db", "t")
    assert sink.transactional_writer(MemoryCheckpointStore()) is None
    other = PostgresCheckpointStore("postgresql://postgres@127.0.0.1:5432/other")
    assert sink.transactional_writer(other) is None


class _FailingSecondBatch(PostgresSink):
    """Fails the write of the second batch after the first was committed."""

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[Mapping[str, Any]] | None:
        write = super().transactional_writer(store, dead_letters)
        assert write is not None

        async def failing(
            batch: Batch[Mapping[str, Any]], checkpoint: Checkpoint, settle: Settle | None = None
        ) -> Sequence[Reject]:
            if batch.seq == 1:
                raise RuntimeError("crash")
            return await write(batch, checkpoint, settle)

        return failing


async def test_exactly_once_checkpoint_in_the_batch_transaction(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE log (n int)")  # append: a replay would duplicate
    records = [{"n": i} for i in range(10)]
    store = PostgresCheckpointStore(pg_database)
    first = Pipeline(
        "p",
        ListSource(records, chunk_size=4),
        _FailingSecondBatch(pg_database, "log", mode="append"),
        checkpoints=store,
        max_batch_size=4,
    )
    with pytest.raises(StageError, match="crash"):
        await first.run()
    assert await rows(pg_database, "SELECT n FROM log ORDER BY n") == [(i,) for i in range(4)]
    assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [("4",)]

    again = Pipeline(
        "p",
        ListSource(records, chunk_size=4),
        PostgresSink(pg_database, "log", mode="append"),
        checkpoints=store,
        max_batch_size=4,
    )
    stats = await again.run()
    assert stats.records_in == 6
    assert await rows(pg_database, "SELECT n FROM log ORDER BY n") == [(i,) for i in range(10)]
    assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [("10",)]


async def test_a_record_json_cannot_hold_is_kept_as_its_repr_and_the_run_goes_on(
    pg_database: str,
) -> None:
    await check_every_letter_is_kept(PostgresDeadLetterStore(pg_database))


async def test_the_save_time_is_the_rows_updated_at_and_outcomes_are_kept(
    pg_database: str,
) -> None:
    failed = RunOutcome("failed", datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "boom")
    async with PostgresCheckpointStore(pg_database) as store:
        assert await store.saved_at("p", "s") is None
        await store.save(Checkpoint("p", "s", 1))
        await store.save_outcome("p", failed)
        saved = await store.saved_at("p", "s")
        assert await store.load_outcome("p") == failed
    sql = "SELECT updated_at FROM asyncetl_checkpoints WHERE source = 's'"
    assert [(saved,)] == await rows(pg_database, sql)


async def test_a_checkpoint_saved_unflushed_waives_the_wait_for_its_own_commit_only(
    pg_database: str,
) -> None:
    store = PostgresCheckpointStore(pg_database)
    await store.open()
    conn = await asyncpg.connect(pg_database)
    try:
        async with conn.transaction():
            await store.save_on(conn, Checkpoint("p", "s", {"at": 1}), flush=False)
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with conn.transaction():
            await store.save_on(conn, Checkpoint("p", "s", {"at": 2}), flush=False)
        assert await store.load("p", "s") == {"at": 2}
        async with conn.transaction():
            await store.save_on(conn, Checkpoint("p", "s", {"at": 3}))
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await store.load("p", "s") == {"at": 3}
    finally:
        await conn.close()
        await store.aclose()
