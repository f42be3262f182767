"""RedisStreamSource against a real Redis: consumer groups, acks after commit, replay."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import aclosing

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from asyncetl import (
    Lag,
    ListSink,
    MemoryDeadLetterStore,
    PermanentError,
    Pipeline,
    StageError,
    TransientError,
)
from asyncetl.connectors.redis import RedisStreamSource, StreamRecord
from tests.connectors.redis.helpers import (
    GROUP,
    REDIS_URL,
    FailingSink,
    add_entries,
    expected,
    pending,
    pipeline,
    source,
    text,
)

pytestmark = pytest.mark.anyio


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.01)


async def pending_ids(redis: aioredis.Redis, stream: str) -> list[str]:
    rows = await redis.xpending_range(stream, GROUP, min="-", max="+", count=1000)
    return [text(row["message_id"]) for row in rows]


async def test_a_pipeline_delivers_every_entry_in_order_and_leaves_nothing_pending(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 25)
    src, sink = source(stream), ListSink[StreamRecord]()

    with capture_logs():
        stats = await pipeline(src, sink).run()

    assert sink.records == expected(ids)
    assert [len(batch) for batch in sink.batches] == [10, 10, 5]
    assert stats.position == ids[-1]
    assert await pending(redis, stream) == 0
    [group] = await redis.xinfo_groups(stream)
    assert text(group["last-delivered-id"]) == ids[-1]
    assert src.outstanding == 0


async def test_acknowledge_acks_exactly_the_entries_up_to_the_position(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 6)
    src = source(stream, count=2)
    await src.open()
    try:
        async with aclosing(src.read(None, max_chunk=2)) as chunks:  # type: ignore[type-var]
            positions = [(await anext(chunks)).position for _ in range(3)]
        assert positions == [ids[1], ids[3], ids[5]]
        assert await pending_ids(redis, stream) == ids

        await src.acknowledge(ids[3])  # the watermark: chunks one and two are committed

        assert await pending_ids(redis, stream) == ids[4:]
        assert src.outstanding == 2
        await src.acknowledge(ids[3])  # already taken: nothing more
        assert await pending_ids(redis, stream) == ids[4:]
    finally:
        await src.aclose()


async def test_a_failed_run_replays_exactly_the_unacknowledged_entries(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 30)
    first = FailingSink(fail_at=2)

    with capture_logs(), pytest.raises(StageError, match="the target is down"):
        await pipeline(source(stream), first).run()

    assert first.records == expected(ids[:20])
    assert await pending_ids(redis, stream) == ids[20:]

    second = ListSink[StreamRecord]()
    with capture_logs():
        await pipeline(source(stream), second).run()

    assert second.records == expected(ids[20:], start=20)
    assert first.records + second.records == expected(ids)
    assert await pending(redis, stream) == 0


async def test_a_dead_consumers_entries_are_claimed_after_claim_idle_ms(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 30)
    with capture_logs(), pytest.raises(StageError):
        await pipeline(source(stream, "dead-worker"), FailingSink(fail_at=1)).run()
    assert await pending_ids(redis, stream) == ids[10:]

    await anyio.sleep(0.15)
    survivor = ListSink[StreamRecord]()
    with capture_logs():
        await pipeline(source(stream, "survivor", claim_idle_ms=100), survivor).run()

    assert survivor.records == expected(ids[10:], start=10)
    assert await pending(redis, stream) == 0


async def test_two_consumers_in_one_group_share_the_stream_without_overlap(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 300)
    sinks = [ListSink[StreamRecord](), ListSink[StreamRecord]()]
    with capture_logs():
        async with anyio.create_task_group() as tg:
            for worker, sink in zip(("a", "b"), sinks, strict=True):
                tg.start_soon(pipeline(source(stream, worker, count=5), sink).run)

    seen = [[text(record["id"]) for record in sink.records] for sink in sinks]
    assert all(seen), "both workers should have had a share"
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(ids)
    assert await pending(redis, stream) == 0
    consumers = await redis.xinfo_consumers(stream, GROUP)
    assert {text(c["name"]): c["pending"] for c in consumers} == {"a": 0, "b": 0}


async def test_an_entry_that_is_not_utf8_is_dead_lettered_and_acknowledged(
    redis: aioredis.Redis, stream: str
) -> None:
    good = await add_entries(redis, stream, 2)
    bad = text(await redis.xadd(stream, {"n": b"caf\xe9"}))
    src, sink, letters = source(stream), ListSink[StreamRecord](), MemoryDeadLetterStore()

    with capture_logs():
        stats = await pipeline(src, sink, dead_letters=letters).run()

    assert sink.records == expected(good)
    [letter] = letters.letters
    assert letter.stage == "redis"
    assert letter.record == {"id": bad, "fields": {"n": "caf\\xe9"}}
    assert letter.error == (
        f"field 'n' of entry {bad} in stream {stream!r} is not valid UTF-8 (unexpected end of "
        "data at byte 3); fix the producer or replay it from the dead letters"
    )
    assert stats.dead_lettered == 1
    assert await pending(redis, stream) == 0
    assert src.decode(letter.record) == {"id": bad, "fields": {"n": "caf\\xe9"}}
    with pytest.raises(ValueError, match="expected"):
        src.decode({"id": bad})


async def test_an_entry_deleted_while_pending_is_acknowledged_without_a_record(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 20)
    with capture_logs(), pytest.raises(StageError):
        await pipeline(source(stream), FailingSink(fail_at=1)).run()
    await redis.xdel(stream, ids[12])

    sink = ListSink[StreamRecord]()
    with capture_logs():
        await pipeline(source(stream), sink).run()

    assert sink.records == [r for r in expected(ids) if r["id"] != ids[12]][10:]
    assert await pending(redis, stream) == 0


async def test_a_killed_connection_is_retried_and_nothing_is_lost_or_repeated(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 20)
    consumer = f"victim-{secrets.token_hex(4)}"
    src, sink = source(stream, consumer), ListSink[StreamRecord]()
    run = pipeline(src, sink)
    run.stop_when_idle = None
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.run)
            await wait_until(lambda: len(sink.records) == 20)
            clients = await redis.client_list()
            # The reader's connection, blocked in XREADGROUP, and the one XACK used.
            victims = [c["id"] for c in clients if c["name"] == f"asyncetl:redis:{consumer}"]
            for victim in victims:
                assert await redis.client_kill_filter(_id=victim) == 1
            ids += await add_entries(redis, stream, 20, start=20)
            await wait_until(lambda: len(sink.records) == 40)
            run.stop()

    assert sink.records == expected(ids)
    assert await pending(redis, stream) == 0
    retries = [log for log in logs if log["event"] == "retrying"]
    assert retries
    assert retries[0]["call"] == f"XREADGROUP {stream} on 127.0.0.1:6379"


async def test_a_missing_group_fails_clearly_when_create_group_is_off(
    redis: aioredis.Redis, stream: str
) -> None:
    await add_entries(redis, stream, 1)
    src = RedisStreamSource(REDIS_URL, stream, group="nope", create_group=False)
    with pytest.raises(PermanentError) as caught:
        await src.open()
    await src.aclose()
    assert str(caught.value) == (
        f"consumer group 'nope' of stream {stream!r} does not exist on Redis at "
        "127.0.0.1:6379; create it with XGROUP CREATE or set create_group = true"
    )


async def test_a_new_group_at_dollar_reads_only_entries_added_afterwards(
    redis: aioredis.Redis, stream: str
) -> None:
    await add_entries(redis, stream, 5)
    src = RedisStreamSource(REDIS_URL, stream, group=GROUP, consumer="w", start_id="$", block_ms=50)
    sink = ListSink[StreamRecord]()
    await src.open()  # creates the group at the current end
    await src.aclose()
    later = await add_entries(redis, stream, 3, start=5)

    with capture_logs():
        await pipeline(src, sink).run()

    assert sink.records == expected(later, start=5)


@pytest.mark.parametrize("protocol", [2, 3])
async def test_new_pending_and_deleted_entries_read_the_same_over_resp2_and_resp3(
    redis: aioredis.Redis, stream: str, protocol: int
) -> None:
    ids = await add_entries(redis, stream, 20)
    url = f"{REDIS_URL}?protocol={protocol}"

    def over_protocol() -> RedisStreamSource:
        return RedisStreamSource(url, stream, group=GROUP, consumer="c", block_ms=50, count=10)

    with capture_logs(), pytest.raises(StageError):
        await pipeline(over_protocol(), FailingSink(fail_at=1)).run()
    await redis.xdel(stream, ids[12])
    sink = ListSink[StreamRecord]()
    with capture_logs():
        await pipeline(over_protocol(), sink).run()

    assert sink.records == [r for r in expected(ids) if r["id"] != ids[12]][10:]
    assert await pending(redis, stream) == 0


async def test_the_lag_counts_the_groups_pending_and_undelivered_entries(
    redis: aioredis.Redis, stream: str
) -> None:
    await add_entries(redis, stream, 25)
    src = source(stream, count=10)
    src.lag_interval = 0  # measured after every read
    async with src, aclosing(src.read(None, max_chunk=10)) as chunks:  # type: ignore[type-var]
        assert list(src.upstream_lag()) == []
        await chunks.__anext__()
        assert list(src.upstream_lag()) == [
            Lag(10.0, "records", f"{GROUP} pending"),
            Lag(15.0, "records", f"{GROUP} lag"),
        ]
        await chunks.__anext__()
        assert list(src.upstream_lag()) == [
            Lag(20.0, "records", f"{GROUP} pending"),
            Lag(5.0, "records", f"{GROUP} lag"),
        ]


async def test_the_upstream_end_waits_for_delivery_then_for_the_acknowledgement(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 4)
    src = source(stream, count=4)
    await src.open()
    try:
        with pytest.raises(TransientError) as caught:
            await src.upstream_end()
        assert str(caught.value) == (
            f"stream {stream!r} holds entries not yet delivered to group {GROUP!r}"
        )
        async with aclosing(src.read(None, max_chunk=4)) as chunks:  # type: ignore[type-var]
            assert (await anext(chunks)).position == ids[-1]
        mark = await src.upstream_end()
        assert not src.confirmed_through(mark)  # handed out, not yet acknowledged
        await src.acknowledge(ids[-1])
        assert src.confirmed_through(mark)
    finally:
        await src.aclose()


async def test_a_run_that_stops_when_idle_takes_every_entry_despite_a_slow_first_read(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await add_entries(redis, stream, 30)
    src, sink = source(stream), ListSink[StreamRecord]()
    fetch = src._fetch

    async def slow_fetch(*args: object) -> object:
        if src.outstanding == 0 and not sink.records:
            await anyio.sleep(0.3)  # longer than the idle time: quiet, yet not caught up
        return await fetch(*args)  # type: ignore[arg-type]

    src._fetch = slow_fetch  # type: ignore[method-assign,assignment]
    with capture_logs():
        await Pipeline("p", src, sink, max_batch_size=10, stop_when_idle=0.1).run()

    assert sink.records == expected(ids)
    assert await pending(redis, stream) == 0
