"""KafkaSource against a real Kafka-protocol broker: groups, commits after checkpoints, resume."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    ConfigError,
    JsonValue,
    Lag,
    ListSink,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
)
from asyncetl.connectors.kafka import KafkaMessage, KafkaSource
from tests.connectors.kafka.helpers import Topic, pipeline, run_until, source

pytestmark = pytest.mark.anyio


def _ns(records: list[object]) -> list[int]:
    return sorted(r["n"] for r in records)  # type: ignore[index]


async def test_every_message_arrives_once_and_the_group_commits_exactly_the_next_offsets(
    topic: Topic,
) -> None:
    await topic.produce_json(0, 30)
    sink = ListSink[object]()

    with capture_logs():
        stats = await run_until(pipeline(source(topic), sink), sink, 30)

    assert _ns(list(sink.records)) == list(range(30))
    by_partition = {p: [r["n"] for r in sink.records if r["n"] % 3 == p] for p in range(3)}  # type: ignore[index]
    assert by_partition == {p: list(range(p, 30, 3)) for p in range(3)}  # in order per partition
    assert stats.position == {
        "group": topic.group,
        "offsets": {topic.name: {"0": 10, "1": 10, "2": 10}},
    }
    assert await topic.committed() == {0: 10, 1: 10, 2: 10}


async def test_a_rerun_resumes_after_its_checkpoint_and_reads_exactly_the_remainder(
    topic: Topic,
) -> None:
    checkpoints = MemoryCheckpointStore()
    await topic.produce_json(0, 12)
    first = ListSink[object]()
    with capture_logs():
        await run_until(pipeline(source(topic), first, checkpoints=checkpoints), first, 12)
    await topic.produce_json(12, 24)

    second = ListSink[object]()
    with capture_logs():
        stats = await run_until(
            pipeline(source(topic), second, checkpoints=checkpoints), second, 12
        )

    assert _ns(list(first.records)) == list(range(12))
    assert _ns(list(second.records)) == list(range(12, 24))
    assert stats.position == {
        "group": topic.group,
        "offsets": {topic.name: {"0": 8, "1": 8, "2": 8}},
    }
    assert await topic.committed() == {0: 8, 1: 8, 2: 8}


async def test_an_undecodable_message_is_dead_lettered_committed_and_does_not_block_its_partition(
    single: Topic,
) -> None:
    await single.produce([b'{"n": 0}', b"\xff not json", b'{"n": 2}'], keys=[None, b"k", None])
    sink, letters = ListSink[object](), MemoryDeadLetterStore()

    with capture_logs():
        await run_until(pipeline(source(single), sink, dead_letters=letters), sink, 2)

    assert sink.records == [{"n": 0}, {"n": 2}]
    [letter] = await letters.list("kafka_test")
    assert letter.stage == "kafka"
    assert letter.record == {
        "topic": single.name,
        "partition": 0,
        "offset": 1,
        "key": "k",
        "value": "\\xff not json",
        "headers": {},
    }
    assert letter.error.startswith(
        f"message at offset 1 of {single.name!r} partition 0 is not json ("
    )
    assert await single.committed() == {0: 3}


async def test_raw_messages_keep_key_value_and_headers_as_bytes(single: Topic) -> None:
    await single.produce([b"\x00\x01", None], keys=[b"k1", b"k2"], headers=[("trace", b"t-1")])
    sink = ListSink[object]()

    with capture_logs():
        await run_until(pipeline(source(single, format="raw"), sink), sink, 2)

    assert [(m.offset, m.key, m.value, m.headers) for m in sink.records] == [  # type: ignore[attr-defined]
        (0, b"k1", b"\x00\x01", (("trace", b"t-1"),)),
        (1, b"k2", None, (("trace", b"t-1"),)),
    ]
    assert all(isinstance(m, KafkaMessage) and m.topic == single.name for m in sink.records)


async def test_acknowledge_commits_only_offsets_past_what_the_group_has(topic: Topic) -> None:
    src = source(topic)
    position: JsonValue = {"group": topic.group, "offsets": {topic.name: {"0": 4}}}
    await src.open()
    try:
        # Not a member yet: no partition is owned, so nothing may be committed for it.
        await src.acknowledge(position)
    finally:
        await src.aclose()
    assert await topic.committed() == {0: None, 1: None, 2: None}


def test_a_position_of_another_shape_is_refused_with_how_to_reset() -> None:
    src = KafkaSource("127.0.0.1:9", ["orders"], group="etl")
    with pytest.raises(ConfigError, match="reset the checkpoint") as caught:
        src.check_position({"offsets": {"orders": {"zero": 1}}})
    assert str(caught.value).startswith(
        "KafkaSource 'kafka' cannot resume after {'offsets': {'orders': {'zero': 1}}}: expected"
    )
    src.check_position(None)  # a fresh start
    src.check_position({"group": "etl", "offsets": {"orders": {"0": 1}}})


async def test_a_pattern_reads_every_matching_topic_and_no_other(
    cdc_topics: tuple[str, Topic, Topic], single: Topic
) -> None:
    prefix, orders, items = cdc_topics
    await orders.produce([b'{"t": "orders"}'] * 4)
    await items.produce([b'{"t": "items"}'] * 3)
    await single.produce([b'{"t": "elsewhere"}'])
    src = KafkaSource(
        orders.bootstrap,
        group=orders.group,
        pattern=rf"{prefix}\..*",
        poll_timeout=0.2,
        session_timeout=2.0,
    )
    sink = ListSink[dict[str, str]]()

    with capture_logs():
        stats = await run_until(pipeline(src, sink), sink, 7)

    assert sorted(r["t"] for r in sink.records) == ["items"] * 3 + ["orders"] * 4
    assert stats.position == {
        "group": orders.group,
        "offsets": {items.name: {"0": 3}, orders.name: {"0": 2, "1": 2}},
    }


async def test_stopping_when_idle_waits_for_the_group_and_reads_every_message(
    topic: Topic,
) -> None:
    # The group takes about a second to assign partitions (half the session
    # timeout on the test broker), far longer than the idle time: a quiet spell
    # before the assignment is no stop.
    await topic.produce_json(0, 30)
    sink = ListSink[object]()

    with capture_logs(), anyio.fail_after(30):
        stats = await pipeline(source(topic), sink, stop_when_idle=0.2).run()

    assert _ns(list(sink.records)) == list(range(30))
    assert stats.position == {
        "group": topic.group,
        "offsets": {topic.name: {"0": 10, "1": 10, "2": 10}},
    }
    assert await topic.committed() == {0: 10, 1: 10, 2: 10}


async def test_stopping_when_idle_on_a_topic_read_to_its_end_stops_at_once(topic: Topic) -> None:
    await topic.produce_json(0, 6)
    checkpoints = MemoryCheckpointStore()
    with capture_logs():
        first = ListSink[object]()
        await pipeline(source(topic), first, checkpoints=checkpoints, stop_when_idle=0.2).run()
        second = ListSink[object]()
        with anyio.fail_after(20):  # not the 30 s the engine waits for an end never confirmed
            stats = await pipeline(
                source(topic), second, checkpoints=checkpoints, stop_when_idle=0.2
            ).run()

    assert (_ns(list(first.records)), second.records) == (list(range(6)), [])
    assert stats.position == {
        "group": topic.group,
        "offsets": {topic.name: {"0": 2, "1": 2, "2": 2}},
    }


async def test_upstream_lag_is_each_partitions_high_watermark_minus_the_next_offset(
    single: Topic,
) -> None:
    await single.produce_json(0, 10)
    src = source(single)
    part = f"{single.name}/0"
    async with src, aclosing(src.read(None, max_chunk=4)) as chunks:  # type: ignore[type-var]
        assert list(src.upstream_lag()) == []
        read = len((await anext(chunks)).records)
        assert list(src.upstream_lag()) == [Lag(float(10 - read), "records", part)]
        while read < 10:
            read += len((await anext(chunks)).records)
        assert list(src.upstream_lag()) == [Lag(0.0, "records", part)]
