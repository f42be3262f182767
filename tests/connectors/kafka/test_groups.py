"""KafkaSource in consumer groups and into transactional sinks: exactly-once, rebalances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio
import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from asyncetl import Batch, ListSink, Position, Reject
from asyncetl.connectors.kafka import KafkaSource
from asyncetl.connectors.postgres import ApplySink, PostgresCheckpointStore, PostgresSink
from tests.connectors.kafka.helpers import Topic, pipeline, run_until, run_while, source

pytestmark = pytest.mark.anyio


class _DiesBeforeCommittingOffsets(KafkaSource):
    """As a process killed after each checkpoint commit and before the group's offset commit."""

    async def acknowledge(self, position: Position) -> None:
        pass


async def _rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_a_killed_run_replays_into_postgresql_exactly_once(
    topic: Topic, pg_database: str
) -> None:
    await _rows(pg_database, "CREATE TABLE events (n int NOT NULL)")  # no key: duplicates show
    await topic.produce_json(0, 15)

    def run(src: KafkaSource) -> object:
        sink = PostgresSink(pg_database, "events", mode="append")
        checkpoints = PostgresCheckpointStore(pg_database)
        return pipeline(src, sink, checkpoints=checkpoints, max_batch_size=3)

    async def written(at_least: int) -> bool:
        count: int = (await _rows(pg_database, "SELECT count(*) FROM events"))[0][0]
        return count >= at_least

    first = _DiesBeforeCommittingOffsets(
        topic.bootstrap, [topic.name], group=topic.group, poll_timeout=0.2, session_timeout=2.0
    )
    with capture_logs():
        await run_while(run(first), lambda: written(15), immediate=True)  # type: ignore[arg-type]
    assert await topic.committed() == {0: None, 1: None, 2: None}
    await topic.produce_json(15, 30)

    with capture_logs():
        await run_while(run(source(topic)), lambda: written(30))  # type: ignore[arg-type]
    await anyio.sleep(0.3)  # anything read twice would land meanwhile

    rows = await _rows(pg_database, "SELECT n FROM events ORDER BY n")
    assert [row["n"] for row in rows] == list(range(30))
    assert await topic.committed() == {0: 10, 1: 10, 2: 10}


async def test_two_members_of_one_group_split_the_partitions_and_read_each_message_once(
    topic: Topic,
) -> None:
    await topic.produce_json(0, 150)
    sinks = [ListSink[dict[str, int]](), ListSink[dict[str, int]]()]
    sources = [source(topic), source(topic)]
    runs = [
        pipeline(src, sink, name=f"worker{i}")
        for i, (src, sink) in enumerate(zip(sources, sinks, strict=True))
    ]

    async def total(count: int) -> bool:
        return sum(len(sink.records) for sink in sinks) >= count

    with capture_logs() as logs, anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_while, runs[0], lambda: total(300))
            while len(sinks[0].records) < 150:
                await anyio.sleep(0.02)
            tg.start_soon(run_while, runs[1], lambda: total(300))
            while not (sources[0].partitions and sources[1].partitions):
                await anyio.sleep(0.02)  # the group has rebalanced between the two
            split = (sources[0].partitions, sources[1].partitions)
            await topic.produce_json(150, 300)

    shares = [sorted(r["n"] for r in sink.records) for sink in sinks]
    assert shares[0][:150] == list(range(150))
    assert shares[1], "the second member should have had a share"
    assert sorted(shares[0] + shares[1]) == list(range(300))  # each message exactly once
    assert split[0].isdisjoint(split[1])
    assert split[0] | split[1] == {(topic.name, p) for p in range(3)}
    revokes = [e for e in logs if e["event"] == "partitions revoked" and e["source"] == "kafka"]
    assert revokes and all(e["drained"] for e in revokes)
    assert await topic.committed() == {0: 100, 1: 100, 2: 100}


def _envelope(
    op: str, before: dict[str, object] | None, after: dict[str, object] | None, lsn: int
) -> bytes:
    """A Debezium PostgreSQL change event as its JSON converter writes it, schemas disabled."""
    return orjson.dumps(
        {
            "before": before,
            "after": after,
            "source": {
                "version": "2.7.0.Final",
                "connector": "postgresql",
                "name": "dbserver1",
                "ts_ms": 1735689600000,
                "snapshot": "false",
                "db": "inventory",
                "sequence": f'["{lsn - 8}","{lsn}"]',
                "schema": "inventory",
                "table": "customers",
                "txId": 771,
                "lsn": lsn,
                "xmin": None,
            },
            "op": op,
            "ts_ms": 1735689600123,
            "transaction": None,
        }
    )


async def test_a_debezium_topic_feeds_the_postgres_apply_sink_exactly(
    single: Topic, pg_database: str
) -> None:
    await _rows(pg_database, "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
    with_schema = orjson.dumps(
        {
            "schema": {"type": "struct", "fields": [{"field": "id", "type": "int32"}]},
            "payload": {"id": 2},
        }
    )
    await single.produce(
        [
            _envelope("c", None, {"id": 1, "name": "Ada"}, 1000),
            _envelope("c", None, {"id": 2, "name": "Grace"}, 1100),
            _envelope("u", {"id": 1, "name": "Ada"}, {"id": 1, "name": "Ada L."}, 1200),
            _envelope("d", {"id": 2, "name": "Grace"}, None, 1300),
            None,  # the tombstone Debezium writes after a delete
            _envelope("c", None, {"id": 3, "name": "Edsger"}, 900),  # an older LSN, later offset
        ],
        keys=[b'{"id": 1}', b'{"id": 2}', b'{"id": 1}', with_schema, with_schema, b'{"id": 3}'],
    )
    sink = ApplySink(pg_database, tables={"inventory.customers": "public.customers"})
    checkpoints = PostgresCheckpointStore(pg_database)

    async def committed() -> bool:
        return (await single.committed()) == {0: 6}

    with capture_logs():
        await run_while(
            pipeline(source(single, format="debezium"), sink, checkpoints=checkpoints), committed
        )

    rows = await _rows(pg_database, "SELECT id, name FROM customers ORDER BY id")
    assert [tuple(row) for row in rows] == [(1, "Ada L."), (3, "Edsger")]
    [saved] = await _rows(pg_database, "SELECT position FROM asyncetl_checkpoints")
    assert orjson.loads(saved["position"]) == {
        "group": single.group,
        "offsets": {single.name: {"0": 6}},
    }


class _SlowToSettle(KafkaSource):
    """Takes its time when partitions are assigned, as under a loaded event loop."""

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        await anyio.sleep(0.5)  # aiokafka fetches from the default positions meanwhile
        await super().assigned(partitions)


async def test_messages_fetched_while_an_assignment_settles_are_neither_lost_nor_doubled(
    topic: Topic,
) -> None:
    await topic.produce_json(0, 30)
    src = _SlowToSettle(
        topic.bootstrap, [topic.name], group=topic.group, poll_timeout=0.1, session_timeout=2.0
    )
    sink = ListSink[dict[str, int]]()

    with capture_logs():
        await run_until(pipeline(src, sink), sink, 30)
    await anyio.sleep(0.3)

    assert sorted(r["n"] for r in sink.records) == list(range(30))
    assert await topic.committed() == {0: 10, 1: 10, 2: 10}


async def test_typed_debezium_values_arrive_in_postgresql_exactly(
    single: Topic, pg_database: str
) -> None:
    await _rows(
        pg_database,
        "CREATE TABLE items (id int PRIMARY KEY, price numeric(7,2), born date, "
        "created timestamp, token uuid, blob bytea)",
    )
    fields = [
        {"field": "id", "type": "int32"},
        {
            "field": "price",
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2"},
        },
        {"field": "born", "type": "int32", "name": "io.debezium.time.Date"},
        {"field": "created", "type": "int64", "name": "io.debezium.time.MicroTimestamp"},
        {"field": "token", "type": "string", "name": "io.debezium.data.Uuid"},
        {"field": "blob", "type": "bytes"},
    ]
    row = {"type": "struct", "fields": fields, "optional": True}
    message = {
        "schema": {
            "type": "struct",
            "fields": [{**row, "field": "before"}, {**row, "field": "after"}],
        },
        "payload": {
            "before": None,
            "after": {
                "id": 1,
                "price": "z8c=",
                "born": 19723,
                "created": 1704110400123456,
                "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "blob": "3q2+7w==",
            },
            "source": {"schema": "public", "table": "items", "ts_ms": 0, "lsn": 5},
            "op": "c",
        },
    }
    await single.produce([orjson.dumps(message)], keys=[b'{"id": 1}'])

    async def committed() -> bool:
        return (await single.committed()) == {0: 1}

    run = pipeline(
        source(single, format="debezium"),
        ApplySink(pg_database),
        checkpoints=PostgresCheckpointStore(pg_database),
    )
    with capture_logs():
        await run_while(run, committed)

    [found] = await _rows(
        pg_database,
        "SELECT price::text, born::text, created::text, token::text, "
        "encode(blob, 'hex') AS blob FROM items",
    )
    assert tuple(found) == (
        "-123.45",
        "2024-01-01",
        "2024-01-01 12:00:00.123456",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "deadbeef",
    )


class _SlowSink(ListSink[dict[str, int]]):
    """Takes a while per batch at first, so that batches are in flight when the group
    rebalances (a few seconds in)."""

    async def write(self, batch: Batch[dict[str, int]]) -> Sequence[Reject]:
        if len(self.batches) < 25:
            await anyio.sleep(0.2)
        return await super().write(batch)


async def test_a_member_losing_partitions_drains_its_batches_of_them_before_releasing(
    topic: Topic,
) -> None:
    await topic.produce_json(0, 240)
    sinks = [_SlowSink(), ListSink[dict[str, int]]()]
    sources = [source(topic), source(topic)]
    runs = [
        pipeline(src, sink, name=f"worker{i}", max_batch_size=5)
        for i, (src, sink) in enumerate(zip(sources, sinks, strict=True))
    ]

    async def total(count: int) -> bool:
        return sum(len(sink.records) for sink in sinks) >= count

    with capture_logs() as logs, anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_while, runs[0], lambda: total(240))
            while len(sinks[0].records) < 10:
                await anyio.sleep(0.01)
            tg.start_soon(run_while, runs[1], lambda: total(240))

    first, second = ([r["n"] for r in sink.records] for sink in sinks)
    assert 10 <= len(first) < 240 and second, "the group should have rebalanced mid-stream"
    assert sorted(first + second) == list(range(240))  # none lost, none read twice
    revokes = [e for e in logs if e["event"] == "partitions revoked"]
    assert revokes, "the first member should have given partitions up"
    assert all(e["drained"] is True for e in revokes)
    assert await topic.committed() == {0: 80, 1: 80, 2: 80}
