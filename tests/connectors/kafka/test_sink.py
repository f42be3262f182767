"""KafkaSink against a real Kafka-protocol broker: routing, keys, headers, Debezium envelopes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import anyio
import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, RequestTimedOutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    Pipeline,
    StageError,
    Transform,
    TransientError,
)
from asyncetl.connectors.kafka import KafkaSink
from asyncetl.connectors.kafka._partitions import KeyHashes, murmur2
from asyncetl.connectors.kafka.sink import BATCH_BYTES, HOLD
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from asyncetl.core.interfaces import Checkpoint
from tests.connectors.kafka.helpers import Topic, pipeline, run_until, source

pytestmark = pytest.mark.anyio


async def test_records_arrive_as_json_keyed_by_their_fields_with_headers(topic: Topic) -> None:
    records = [{"id": i, "kind": "order", "total": i * 1.5} for i in range(12)]
    sink = KafkaSink(
        topic.bootstrap,
        topic.name,
        key_fields=["id"],
        headers={"origin": "asyncetl"},
        compression="gzip",
    )

    async with sink:
        assert await sink.write(Batch(0, records, None)) == []

    found = await topic.read_with_headers()
    assert sorted((k or b"", orjson.loads(v or b"")) for _, _, k, v, _ in found) == sorted(
        (orjson.dumps({"id": record["id"]}), record) for record in records
    )
    assert {headers for *_, headers in found} == {(("origin", b"asyncetl"),)}
    for partition in {p for p, *_ in found}:  # each partition holds its records in batch order
        ids = [orjson.loads(v or b"")["id"] for p, _, _, v, _ in found if p == partition]
        assert ids == sorted(ids)


async def test_a_record_lacking_a_topic_field_is_dead_lettered_and_the_rest_are_sent(
    single: Topic,
) -> None:
    template = single.name.replace("asyncetl_test_", "{prefix_field}")
    prefix = single.name.removesuffix(single.name.removeprefix("asyncetl_test_"))
    records = [{"prefix_field": prefix, "n": 1}, {"n": 2}, {"prefix_field": prefix, "n": 3}]
    letters = MemoryDeadLetterStore()
    run = Pipeline(
        "to_kafka",
        ListSource(records),
        KafkaSink(single.bootstrap, template),
        dead_letters=letters,
        sink_errors="dead_letter",
    )

    with capture_logs():
        await run.run()

    assert [orjson.loads(v or b"")["n"] for *_, v in await single.read_all()] == [1, 3]
    [letter] = await letters.list("to_kafka")
    assert letter.record == {"n": 2}
    assert letter.error == (
        f"record has no 'prefix_field' value for topic {template!r}; fix the record or the "
        "topic template"
    )


async def test_change_events_go_to_one_topic_per_table_as_debezium_envelopes_keyed_by_row(
    cdc_topics: tuple[str, Topic, Topic],
) -> None:
    prefix, orders, items = cdc_topics
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    events = [
        ChangeEvent(
            "c",
            "public",
            "orders",
            after={"id": 1, "total": 5},
            lsn=100,
            commit_time=when,
            key_columns=("id",),
            xid=7,
        ),
        ChangeEvent(
            "c",
            "sales",
            "items",
            after={"sku": "a", "qty": 2},
            lsn=100,
            seq=1,
            commit_time=when,
            key_columns=("sku",),
            xid=7,
        ),
        ChangeEvent(
            "d",
            "public",
            "orders",
            before={"id": 1, "total": 5},
            lsn=200,
            commit_time=when,
            key_columns=("id",),
            xid=8,
        ),
    ]
    sink = KafkaSink(orders.bootstrap, topic_prefix=prefix, database="shop")

    async with sink:
        sent = dt.datetime.now(dt.UTC)
        await sink.write(Batch(0, events, None))
        confirmed = dt.datetime.now(dt.UTC)

    order_messages = await orders.read_all()
    assert [(k, v and orjson.loads(v)["op"]) for _, _, k, v in order_messages] == [
        (b'{"id":1}', "c"),
        (b'{"id":1}', "d"),
        (b'{"id":1}', None),  # the tombstone after a delete, as Debezium writes it
    ]
    assert len({p for p, *_ in order_messages}) == 1  # one row, one partition, in order
    [(_, _, key, value)] = await items.read_all()
    assert key == b'{"sku":"a"}'
    envelope = orjson.loads(value or b"")
    assert envelope["after"] == {"sku": "a", "qty": 2}
    assert envelope["before"] is None
    assert envelope["op"] == "c"
    assert envelope["source"]["schema"] == "sales"
    assert envelope["source"]["table"] == "items"
    assert envelope["source"]["lsn"] == 100
    assert envelope["source"]["name"] == prefix
    assert envelope["source"]["db"] == "shop"
    assert envelope["source"]["ts_us"] == 1735689600000000  # the commit time
    # When the sink encoded it, as Debezium's envelope time is when the connector did.
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    micros = dt.timedelta(microseconds=1)
    assert (sent - epoch) // micros <= envelope["ts_us"] <= (confirmed - epoch) // micros


async def test_an_unreachable_broker_fails_after_its_retries_naming_host_and_port() -> None:
    sink = KafkaSink("127.0.0.1:9", "orders", retries=1, retry_max_time=2)

    with capture_logs(), pytest.raises(TransientError) as caught:
        await sink.open()
    await sink.aclose()

    assert str(caught.value).startswith(
        "Kafka at 127.0.0.1:9 is unreachable or did not answer connect in time ("
    )
    assert str(caught.value).endswith(
        "); check that the broker is running and that bootstrap_servers is right"
    )


async def test_with_schema_typed_change_events_come_back_exactly_through_the_debezium_format(
    single: Topic,
) -> None:
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    after = {
        "id": 1,
        "born": dt.date(2019, 5, 28),
        "created": dt.datetime(2019, 5, 28, 8, 58, 24, 863769),
        "seen": dt.datetime(2019, 5, 28, 8, 58, 24, tzinfo=dt.UTC),
        "at": dt.time(8, 58, 24, 863769),
        "price": Decimal("-123.45"),
        "token": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "tags": ["x", "y"],
        "raw": b"\x00\xff",
        "note": UNCHANGED,
        "gone": None,
    }
    event = ChangeEvent(
        "c", "public", "things", {"id": 1}, None, after, lsn=7, commit_time=when, xid=3
    )
    sink = KafkaSink(single.bootstrap, single.name, with_schema=True)
    async with sink:
        await sink.write(Batch(0, [event], None))
    [(_, _, key, value)] = await single.read_all()
    assert orjson.loads(key or b"")["payload"] == {"id": 1}
    assert orjson.loads(value or b"")["schema"]["name"] == "asyncetl.public.things.Envelope"

    records = ListSink[ChangeEvent]()
    with capture_logs():
        await run_until(pipeline(source(single, format="debezium"), records), records, 1)

    [back] = records.records
    assert (back.op, back.schema, back.table, back.key, back.before) == (
        "c",
        "public",
        "things",
        {"id": 1},
        None,
    )
    assert back.after == after
    assert back.commit_time == when


async def test_a_batch_larger_than_a_record_batch_arrives_whole_in_order_in_the_keys_partitions(
    topic: Topic,
) -> None:
    # 6,000 records of about 1 kB: more than one record batch's worth for each partition.
    records = [{"id": i % 40, "n": i, "pad": "x" * 1000} for i in range(6000)]
    sink = KafkaSink(topic.bootstrap, topic.name, key_fields=["id"])

    async with sink:
        assert await sink.write(Batch(0, records, None)) == []

    found = await topic.read_all()
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[int]] = {}
    for partition, _, key, value in found:
        # The partition Kafka's default partitioner (Java's, aiokafka's) gives the key.
        assert partition == partitioner(key, list(range(topic.partitions)), [])
        by_partition.setdefault(partition, []).append(orjson.loads(value or b"")["n"])
    assert sorted(n for ns in by_partition.values() for n in ns) == list(range(6000))
    assert all(ns == sorted(ns) for ns in by_partition.values())  # in batch order
    sizes = [sum(len(v or b"") for p, _, _, v in found if p == at) for at in by_partition]
    assert min(sizes) > BATCH_BYTES


async def test_keyless_records_of_one_batch_go_to_one_partition_and_the_next_batch_to_another(
    topic: Topic,
) -> None:
    sink = KafkaSink(topic.bootstrap, topic.name)

    async with sink:
        for seq in range(3):
            await sink.write(Batch(seq, [{"batch": seq, "n": n} for n in range(5)], None))

    found = await topic.read_all()
    partitions: dict[int, set[int]] = {}
    for partition, _, _, value in found:
        record = orjson.loads(value or b"")
        partitions.setdefault(record["batch"], set()).add(partition)
    assert sorted(partitions) == [0, 1, 2]
    assert all(len(used) == 1 for used in partitions.values())
    assert len(set().union(*partitions.values())) == 3  # turn by turn over the partitions


@given(st.binary(max_size=64))
def test_murmur2_hashes_as_kafkas_default_partitioner(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)


def test_kept_key_hashes_are_murmur2s_and_forgotten_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(KeyHashes, "LIMIT", 3)
    hashes = KeyHashes()
    keys = [b'{"id":%d}' % n for n in (1, 2, 1, 3, 4, 2, 1)]

    assert [hashes(key) for key in keys] == [kafka_murmur2(key) for key in keys]
    assert sorted(hashes._known) == [b'{"id":1}', b'{"id":2}', b'{"id":4}']  # cleared at 4


async def test_a_batch_whose_send_failed_midway_is_sent_again_whole(
    single: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000 records of about 1 kB make three record batches; the second fails once, as a
    # broker that stops answering makes it fail (a fault a healthy broker cannot be made
    # to produce on cue), after the first was queued and before the rest were encoded.
    records = [{"n": i, "pad": "x" * 1000} for i in range(3000)]
    sink = KafkaSink(single.bootstrap, single.name, retries=1, retry_max_time=10)
    queued = 0

    async with sink:
        producer = sink._open_producer()
        send_batch = producer.send_batch

        async def failing_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal queued
            queued += 1
            if queued == 2:
                raise RequestTimedOutError()
            return await send_batch(*args, **kwargs)

        monkeypatch.setattr(producer, "send_batch", failing_once)
        with capture_logs() as logs:
            assert await sink.write(Batch(0, records, None)) == []

    values = [orjson.loads(v or b"")["n"] for *_, v in await single.read_all()]
    first = values.index(0, 1)  # where the second try starts again
    assert values[first:] == list(range(3000))  # every record, the unencoded ones too
    assert values[:first] == list(range(first))  # the first try's queued record batch
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["retrying"]


class _Watching(MemoryCheckpointStore):
    """Notes, at each checkpoint, how many records the broker had confirmed by then."""

    def __init__(self, confirmed: list[int]) -> None:
        super().__init__()
        self.confirmed = confirmed
        self.seen: list[tuple[Any, int]] = []

    async def save(self, checkpoint: Checkpoint) -> None:
        self.seen.append((checkpoint.position, sum(self.confirmed)))
        await super().save(checkpoint)


async def test_a_checkpoint_covers_only_records_the_broker_has_confirmed(
    single: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker's answers are held back a little (a slow broker), so that a checkpoint
    # taken before them would show.
    confirmed: list[int] = []
    store = _Watching(confirmed)
    sink = KafkaSink(single.bootstrap, single.name)
    records = [{"n": n} for n in range(50)]
    run = Pipeline("slow_acks", ListSource(records), sink, checkpoints=store)
    run.max_batch_size = 10

    async def open_slowly() -> None:
        await KafkaSink.open(sink)
        producer = sink._open_producer()
        send_batch = producer.send_batch

        async def late(builder: Any, topic: str, *, partition: int) -> Any:
            count = builder.record_count()
            answer = await send_batch(builder, topic, partition=partition)
            loop = asyncio.get_running_loop()
            delayed = loop.create_future()

            def settle(answered: asyncio.Future[Any]) -> None:
                confirmed.append(count)
                delayed.set_result(answered.result())

            answer.add_done_callback(lambda done: loop.call_later(0.05, settle, done))
            return delayed

        monkeypatch.setattr(producer, "send_batch", late)

    monkeypatch.setattr(sink, "open", open_slowly)
    with capture_logs():
        await run.run()

    assert [position for position, _ in store.seen][-1] == 50
    assert all(at <= done for at, done in store.seen)  # never ahead of the confirmations
    assert [orjson.loads(v or b"") for *_, v in await single.read_all()] == records


async def test_a_record_batch_the_broker_refuses_fails_the_run_with_its_error_unacknowledged(
    single: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker refuses the third batch's record batch (in its answer, as a broker does:
    # a refusal a healthy broker cannot be made to produce on cue). The third batch comes
    # late, so that the first two are confirmed and committed before it.
    store = _Watching([])
    sink = KafkaSink(single.bootstrap, single.name)
    records = [{"n": n} for n in range(50)]

    async def third_late(batch: list[dict[str, int]]) -> list[dict[str, int]]:
        if batch[0]["n"] == 20:
            await anyio.sleep(HOLD * 2)
        return batch

    run = Pipeline(
        "refused",
        ListSource(records),
        sink,
        [Transform(third_late, kind="batch")],
        checkpoints=store,
        max_batch_size=10,
    )
    sent = 0

    async def open_refusing() -> None:
        await KafkaSink.open(sink)
        producer = sink._open_producer()
        send_batch = producer.send_batch

        async def refusing_third(builder: Any, topic: str, *, partition: int) -> Any:
            nonlocal sent
            sent += 1
            answer = await send_batch(builder, topic, partition=partition)
            if sent != 3:
                return answer
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(MessageSizeTooLargeError())
            return refused

        monkeypatch.setattr(producer, "send_batch", refusing_third)

    monkeypatch.setattr(sink, "open", open_refusing)
    with capture_logs(), pytest.raises(StageError) as caught:
        await run.run()

    assert f"Kafka at {single.bootstrap} refused" in str(caught.value)
    assert "MessageSizeTooLargeError" in str(caught.value)
    assert [position for position, _ in store.seen] == [20]  # never past the refused batch


async def test_changes_to_one_key_arrive_in_order_across_batches_and_record_batches(
    topic: Topic,
) -> None:
    # 40 keys, each changed 300 times, in batches of 4,000 records of about 1 kB: each
    # batch fills two record batches per partition, and the engine writes the next batch
    # before the broker has confirmed the last.
    records = [{"id": n % 40, "n": n, "pad": "x" * 1000} for n in range(12_000)]
    sink = KafkaSink(topic.bootstrap, topic.name, key_fields=["id"])
    run = Pipeline("ordered", ListSource(records), sink, max_batch_size=4000)

    with capture_logs():
        await run.run()

    by_key: dict[int, list[int]] = {}
    for *_, value in await topic.read_all():
        record = orjson.loads(value or b"")
        by_key.setdefault(record["id"], []).append(record["n"])
    assert by_key == {key: list(range(key, 12_000, 40)) for key in range(40)}
