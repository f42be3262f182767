"""JetStreamSource against a real NATS JetStream: pull consumers, acks after commit, replay."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import Lag, ListSink, MemoryDeadLetterStore, PermanentError, StageError
from asyncetl.connectors.nats import JetStreamRecord, JetStreamSource
from tests.connectors.nats.helpers import (
    DURABLE,
    NATS_URL,
    FailingSink,
    Stream,
    pipeline,
    source,
)

pytestmark = pytest.mark.anyio


async def test_a_pipeline_delivers_every_message_in_order_and_leaves_nothing_pending(
    stream: Stream,
) -> None:
    seqs = await stream.publish(25)
    src, sink = source(stream), ListSink[JetStreamRecord]()

    with capture_logs():
        stats = await pipeline(src, sink).run()

    assert sink.records == stream.expected(seqs)
    assert [len(batch) for batch in sink.batches] == [10, 10, 5]
    assert stats.position == seqs[-1]
    assert await stream.settled((0, 0)) == (0, 0)
    assert src.outstanding == 0


async def test_payloads_are_json_when_they_are_json_and_text_otherwise(stream: Stream) -> None:
    js = stream.js
    await js.publish(stream.subject, b'{"a": [1, 2]}', headers={"trace": "t-1"})
    await js.publish(stream.subject, b"plain words")
    await js.publish(f"{stream.prefix}.other", b"42")
    await js.publish(stream.subject, b"")
    sink = ListSink[JetStreamRecord]()

    with capture_logs():
        await pipeline(source(stream), sink).run()

    assert [(r["subject"], r["data"], r["headers"], r["seq"]) for r in sink.records] == [
        (stream.subject, {"a": [1, 2]}, {"trace": "t-1"}, 1),
        (stream.subject, "plain words", {}, 2),
        (f"{stream.prefix}.other", 42, {}, 3),
        (stream.subject, "", {}, 4),
    ]


async def test_acknowledge_acks_exactly_the_messages_up_to_the_position(stream: Stream) -> None:
    seqs = await stream.publish(6)
    src = source(stream, batch=2)
    await src.open()
    try:
        async with aclosing(src.read(None, max_chunk=2)) as chunks:  # type: ignore[type-var]
            positions = [(await anext(chunks)).position for _ in range(3)]
        assert positions == [seqs[1], seqs[3], seqs[5]]
        assert await stream.settled((6, 0)) == (6, 0)

        await src.acknowledge(seqs[3])  # the watermark: chunks one and two are committed

        assert await stream.settled((2, 0)) == (2, 0)
        assert src.outstanding == 2
    finally:
        await src.aclose()
    # The last chunk was never committed: closing nak-ed it for immediate redelivery.
    sink = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(source(stream), sink).run()
    assert sink.records == stream.expected(seqs[4:], start=4)


async def test_a_failed_run_replays_exactly_the_unacknowledged_messages(stream: Stream) -> None:
    seqs = await stream.publish(30)
    first = FailingSink(fail_at=2)

    with capture_logs(), pytest.raises(StageError, match="the target is down"):
        await pipeline(source(stream, ack_wait=1.0), first).run()
    assert first.records == stream.expected(seqs[:20])

    # Closing nak-ed the rest for redelivery at once; a nak that went astray (to a pull
    # request of the failed run still waiting on the server) is redelivered after ack_wait.
    second = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(source(stream), second, stop_when_idle=1.5).run()

    assert second.records == stream.expected(seqs[20:], start=20)
    assert first.records + second.records == stream.expected(seqs)
    assert await stream.settled((0, 0)) == (0, 0)


async def test_a_crash_that_cannot_nak_is_replayed_after_ack_wait(stream: Stream) -> None:
    seqs = await stream.publish(8)
    crashed = source(stream, batch=4, ack_wait=1.0)
    await crashed.open()
    async with aclosing(crashed.read(None, max_chunk=4)) as chunks:  # type: ignore[type-var]
        first, second = await anext(chunks), await anext(chunks)
    assert (first.position, second.position) == (seqs[3], seqs[7])
    await crashed.acknowledge(first.position)
    # As after kill -9: the connection drops without nak-ing what was in flight.
    await crashed.client.close()

    await anyio.sleep(1.1)
    sink = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(source(stream), sink).run()

    assert sink.records == stream.expected(seqs[4:], start=4)
    assert await stream.settled((0, 0)) == (0, 0)


async def test_two_workers_on_one_durable_share_the_stream_without_overlap(
    stream: Stream,
) -> None:
    seqs = await stream.publish(300)
    sinks = [ListSink[JetStreamRecord](), ListSink[JetStreamRecord]()]
    with capture_logs():
        async with anyio.create_task_group() as tg:
            for sink in sinks:
                tg.start_soon(pipeline(source(stream, batch=5), sink).run)

    seen = [[record["seq"] for record in sink.records] for sink in sinks]
    assert all(seen), "both workers should have had a share"
    assert not set(seen[0]) & set(seen[1])
    assert sorted(int(str(seq)) for seq in seen[0] + seen[1]) == seqs
    assert await stream.settled((0, 0)) == (0, 0)


async def test_a_payload_that_is_not_utf8_is_dead_lettered_and_acknowledged(
    stream: Stream,
) -> None:
    await stream.js.publish(stream.subject, orjson.dumps({"n": 0}))
    await stream.js.publish(stream.subject, b"caf\xe9!")
    src, sink, letters = source(stream), ListSink[JetStreamRecord](), MemoryDeadLetterStore()

    with capture_logs():
        await pipeline(src, sink, dead_letters=letters).run()

    assert sink.records == stream.expected([1])
    [letter] = letters.letters
    assert letter.record == {
        "subject": stream.subject,
        "data": "caf\\xe9!",
        "headers": {},
        "seq": 2,
    }
    assert letter.error == (
        f"message 2 of stream {stream.name!r} is neither JSON nor UTF-8 text (invalid "
        "continuation byte at byte 3); fix the publisher or replay it from the dead letters"
    )
    assert await stream.settled((0, 0)) == (0, 0)
    assert src.decode(letter.record) == letter.record


async def test_a_missing_stream_or_consumer_fails_clearly(stream: Stream) -> None:
    missing = JetStreamSource(NATS_URL, "NO_SUCH_STREAM", durable=DURABLE)
    with pytest.raises(PermanentError) as caught:
        await missing.open()
    await missing.aclose()
    assert str(caught.value) == (
        "JetStream stream 'NO_SUCH_STREAM' does not exist on NATS at 127.0.0.1:4222; "
        "create it before reading from it"
    )

    strict = JetStreamSource(NATS_URL, stream.name, durable="absent", create_consumer=False)
    with pytest.raises(PermanentError) as caught:
        await strict.open()
    await strict.aclose()
    assert str(caught.value) == (
        f"durable consumer 'absent' of stream {stream.name!r} does not exist on NATS at "
        "127.0.0.1:4222; create it or set create_consumer = true"
    )


async def test_a_new_consumer_is_created_with_explicit_acks_and_the_filter(
    stream: Stream,
) -> None:
    await stream.js.publish(f"{stream.prefix}.skip", b"1")
    await stream.js.publish(stream.subject, b"2")
    src = JetStreamSource(
        NATS_URL, stream.name, durable="filtered", subject=stream.subject, fetch_timeout=0.1
    )
    sink = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(src, sink).run()

    assert [record["data"] for record in sink.records] == [2]
    info = await stream.js.consumer_info(stream.name, "filtered")
    assert (info.config.ack_policy, info.config.ack_wait, info.config.filter_subject) == (
        "explicit",
        60.0,
        stream.subject,
    )


async def test_the_lag_is_the_messages_the_consumer_has_yet_to_deliver(stream: Stream) -> None:
    await stream.publish(25)
    src = source(stream, batch=10)
    async with src, aclosing(src.read(None, max_chunk=10)) as chunks:  # type: ignore[type-var]
        assert list(src.upstream_lag()) == []
        await chunks.__anext__()
        assert list(src.upstream_lag()) == [Lag(15.0, "records", DURABLE)]
        await chunks.__anext__()
        assert list(src.upstream_lag()) == [Lag(5.0, "records", DURABLE)]
