"""Helpers for the Kafka tests: a throwaway topic, producing and reading back."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from asyncetl import DeadLetterStore, ListSink, Pipeline, RunStats, Sink
from asyncetl.connectors.kafka import KafkaSource

#: Names a Kafka bootstrap address to test against instead of a private Tansu broker.
KAFKA_VARIABLE = "ASYNCETL_TEST_KAFKA"


@dataclass(frozen=True)
class Topic:
    """A topic with a random name on the test broker; ``group`` is a fresh group for it."""

    name: str
    partitions: int
    bootstrap: str
    group: str

    async def produce(
        self,
        values: Sequence[bytes | None],
        *,
        partition: int | None = None,
        keys: Sequence[bytes | None] | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Send ``values`` (to ``partition``, or round-robin over the partitions) and wait."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            futures = []
            for i, value in enumerate(values):
                part = partition if partition is not None else i % self.partitions
                key = keys[i] if keys is not None else None
                futures.append(
                    await producer.send(
                        self.name, value, key=key, partition=part, headers=list(headers) or None
                    )
                )
            for future in futures:
                await future
        finally:
            await producer.stop()

    async def produce_json(self, start: int, stop: int) -> None:
        """``{"n": i}`` for i in ``start..stop``, to partition ``i % partitions``."""
        await self.produce([orjson.dumps({"n": i}) for i in range(start, stop)])

    async def committed(self, group: str | None = None) -> dict[int, int | None]:
        """The group's committed offset of each partition."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group or self.group)
        await consumer.start()
        try:
            return {
                p: await consumer.committed(TopicPartition(self.name, p))
                for p in range(self.partitions)
            }
        finally:
            await consumer.stop()

    async def read_all(self) -> list[tuple[int, int, bytes | None, bytes | None]]:
        """Every message as (partition, offset, key, value), read without a group."""
        return [(p, o, k, v) for p, o, k, v, _ in await self.read_with_headers()]

    async def read_with_headers(
        self,
    ) -> list[tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]]:
        """Every message as (partition, offset, key, value, headers), read without a group."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(self.name, p) for p in range(self.partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            found: list[
                tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]
            ] = []
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                fetched = await consumer.getmany(timeout_ms=500)
                for tp, messages in fetched.items():
                    found.extend(
                        (tp.partition, m.offset, m.key, m.value, tuple(m.headers)) for m in messages
                    )
            return sorted(found)
        finally:
            await consumer.stop()


def source(topic: Topic, **settings: Any) -> KafkaSource:
    """A source on ``topic`` in its group, polling briefly."""
    settings.setdefault("group", topic.group)
    settings.setdefault("poll_timeout", 0.2)
    # Tansu answers a JoinGroup after about half the session timeout; a real Kafka
    # refuses timeouts under its group.min.session.timeout.ms (6 s by default).
    settings.setdefault("session_timeout", 6.0 if os.environ.get(KAFKA_VARIABLE) else 2.0)
    return KafkaSource(topic.bootstrap, [topic.name], **settings)


def pipeline(
    src: KafkaSource,
    sink: Sink[Any],
    *,
    name: str = "kafka_test",
    dead_letters: DeadLetterStore | None = None,
    **settings: Any,
) -> Pipeline:
    """A pipeline in small batches; sources that read dead letters set them aside."""
    settings.setdefault("max_batch_size", 10)
    settings.setdefault("max_batch_age", 0.1)
    if dead_letters is not None:
        settings["source_errors"] = "dead_letter"
    return Pipeline(name, src, sink, dead_letters=dead_letters, **settings)


async def run_until(
    run: Pipeline, sink: ListSink[Any], count: int, *, limit: float = 30
) -> RunStats:
    """Run ``run`` until ``sink`` holds ``count`` records, then stop it gracefully."""

    async def full() -> bool:
        return len(sink.records) >= count

    return await run_while(run, full, limit=limit)


async def run_while(
    run: Pipeline,
    done: Callable[[], Awaitable[bool]],
    *,
    limit: float = 30,
    immediate: bool = False,
) -> RunStats:
    """Run ``run`` until ``done()`` says so, then stop it (gracefully unless ``immediate``).

    Joining a consumer group takes the broker a moment, so an idle timeout
    cannot tell a drained topic from a group still forming.
    """
    result: list[RunStats] = []

    async def stop_when_done() -> None:
        while not await done():
            await anyio.sleep(0.02)
        run.stop(immediate=immediate)

    with anyio.fail_after(limit):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_done)
            result.append(await run.run())
            tg.cancel_scope.cancel()
    return result[0]
