"""RedisStreamSink against a real Redis: atomic batches, field encoding, de-duplication."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    CheckpointError,
    ConfigError,
    JsonValue,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    Pipeline,
)
from asyncetl.connectors.redis import RedisStreamSink, StreamRecord
from tests.connectors.redis.helpers import REDIS_URL, pipeline, source, text

pytestmark = pytest.mark.anyio

Record = Mapping[str, JsonValue]


async def stream_fields(redis: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    entries = await redis.xrange(stream)
    return [{text(k): text(v) for k, v in (fields or {}).items()} for _, fields in entries or []]


def orders(first: int, last: int) -> list[Record]:
    return [{"id": i, "sku": f"sku-{i}"} for i in range(first, last)]


async def write(
    sink: RedisStreamSink, records: Sequence[object], position: int = 0
) -> list[object]:
    await sink.open()
    try:
        rejects = await sink.write(Batch(0, records, position))  # type: ignore[arg-type]
    finally:
        await sink.aclose()
    return [reject.record for reject in rejects]


async def test_a_pipeline_round_trip_through_a_stream_keeps_every_value(
    redis: aioredis.Redis, stream: str
) -> None:
    records: list[Record] = [
        {"name": "ada", "n": 1, "ok": True, "none": None, "tags": ["x", "y"], "m": {"a": 1.5}},
        {"name": "bob", "text": "déjà vu"},
    ]
    with capture_logs():
        await Pipeline("to_redis", ListSource(records), RedisStreamSink(REDIS_URL, stream)).run()
        back = ListSink[StreamRecord]()
        await pipeline(source(stream), back).run()

    assert [record["fields"] for record in back.records] == [
        {
            "name": "ada",
            "n": "1",
            "ok": "true",
            "none": "null",
            "tags": '["x","y"]',
            "m": '{"a":1.5}',
        },
        {"name": "bob", "text": "déjà vu"},
    ]


async def test_without_id_field_a_replayed_batch_is_appended_again(
    redis: aioredis.Redis, stream: str
) -> None:
    sink = RedisStreamSink(REDIS_URL, stream)
    await write(sink, orders(0, 3))
    await write(sink, orders(0, 3))  # at-least-once: the documented behaviour

    assert [f["id"] for f in await stream_fields(redis, stream)] == ["0", "1", "2"] * 2


async def test_with_id_field_a_replay_cut_into_other_batches_is_not_duplicated(
    redis: aioredis.Redis, stream: str
) -> None:
    sink = RedisStreamSink(REDIS_URL, stream, id_field="id")
    await write(sink, orders(0, 5), position=5)
    await write(sink, orders(3, 8), position=8)  # a replay from 3, plus three new ones
    await write(sink, [*orders(8, 9), *orders(8, 9)], position=9)  # repeated in one batch

    assert await stream_fields(redis, stream) == [
        {"id": str(i), "sku": f"sku-{i}"} for i in range(9)
    ]
    assert await redis.scard(sink.dedupe_key) == 9


async def test_a_dedupe_window_catches_replays_within_it_and_forgets_older_ids(
    redis: aioredis.Redis, stream: str
) -> None:
    sink = RedisStreamSink(REDIS_URL, stream, id_field="id", dedupe_window=0.5)
    assert sink.dedupe_key == f"{stream}:asyncetl:recent-ids"
    await write(sink, orders(0, 5), position=5)
    await write(sink, orders(3, 6), position=6)  # a replay within the window
    assert [f["id"] for f in await stream_fields(redis, stream)] == ["0", "1", "2", "3", "4", "5"]
    assert await redis.zcard(sink.dedupe_key) == 6
    assert 0 < await redis.pttl(sink.dedupe_key) <= 500

    await anyio.sleep(0.6)  # every id is older than the window now
    await write(sink, orders(5, 7), position=7)
    ids = [f["id"] for f in await stream_fields(redis, stream)]
    assert ids == ["0", "1", "2", "3", "4", "5", "5", "6"]  # 5 forgotten, so appended again
    remembered = await redis.zrange(sink.dedupe_key, 0, -1)
    assert sorted(text(member) for member in remembered) == ["5", "6"]


def test_a_dedupe_window_needs_an_id_field_and_a_positive_length() -> None:
    with pytest.raises(ConfigError) as without_id:
        RedisStreamSink(REDIS_URL, "s", dedupe_window=60)
    assert str(without_id.value) == (
        "RedisStreamSink 'redis_sink': dedupe_window: needs id_field: the window is how long "
        "ids are remembered"
    )
    with pytest.raises(ConfigError) as zero:
        RedisStreamSink(REDIS_URL, "s", id_field="id", dedupe_window=0)
    assert str(zero.value) == (
        "RedisStreamSink 'redis_sink': dedupe_window: must be a positive number of seconds, not 0"
    )


async def test_records_that_cannot_be_stream_entries_are_returned_as_rejects(
    redis: aioredis.Redis, stream: str
) -> None:
    sink = RedisStreamSink(REDIS_URL, stream, id_field="id")
    bad: list[object] = [["not", "a", "mapping"], {}, {"sku": "no id"}, {"id": 1, "x": {1, 2}}]
    rejected = await write(sink, [*bad, {"id": 7, "sku": "fine"}])

    assert rejected == bad
    assert await stream_fields(redis, stream) == [{"id": "7", "sku": "fine"}]


async def test_maxlen_trims_the_stream_approximately(redis: aioredis.Redis, stream: str) -> None:
    sink = RedisStreamSink(REDIS_URL, stream, maxlen=10)
    for start in range(0, 500, 100):
        await write(sink, orders(start, start + 100))

    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never below maxlen.
    assert 10 <= await redis.xlen(stream) <= 200


class FlakyCheckpoints(MemoryCheckpointStore):
    """Fails the ``fail_at``-th save (1-based): the batch is written but never committed."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    async def save(self, checkpoint: Checkpoint) -> None:
        if len(self.history) + 1 == self.fail_at:
            self.fail_at = 0
            raise OSError("disk full")
        await super().save(checkpoint)


async def test_a_batch_replayed_after_a_failed_commit_is_not_duplicated(
    redis: aioredis.Redis, stream: str
) -> None:
    checkpoints = FlakyCheckpoints(fail_at=2)
    run = Pipeline(
        "to_redis",
        ListSource(orders(0, 30)),
        RedisStreamSink(REDIS_URL, stream, id_field="id"),
        checkpoints=checkpoints,
        max_batch_size=10,
    )
    with capture_logs(), pytest.raises(CheckpointError, match="disk full"):
        await run.run()
    assert len(await stream_fields(redis, stream)) == 20  # batch two written, not committed
    assert checkpoints.positions == {("to_redis", "list_source"): 10}

    with capture_logs():
        await run.run()  # resumes after 10: batch two again, then batch three

    assert await stream_fields(redis, stream) == [
        {"id": str(i), "sku": f"sku-{i}"} for i in range(30)
    ]
