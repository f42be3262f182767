"""Helpers for the Redis Streams tests."""

from __future__ import annotations

import os
from collections.abc import Sequence

import redis.asyncio as aioredis

from asyncetl import DeadLetterStore, Pipeline, Sink
from asyncetl.connectors.redis import RedisStreamSource, StreamRecord
from tests.core.helpers import FailingSink as BaseFailingSink

REDIS_URL = os.environ.get("ASYNCETL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GROUP = "etl"


async def add_entries(redis: aioredis.Redis, stream: str, n: int, start: int = 0) -> list[str]:
    """Append entries ``{"n": i, "sku": "sku-<i % 3>"}`` for i in ``start..start+n``; their ids."""
    ids = []
    for i in range(start, start + n):
        ids.append(text(await redis.xadd(stream, {"n": str(i), "sku": f"sku-{i % 3}"})))
    return ids


def text(value: object) -> str:
    """A reply value as text (redis-py answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def expected(ids: Sequence[str], start: int = 0) -> list[StreamRecord]:
    return [
        {"id": entry_id, "fields": {"n": str(i), "sku": f"sku-{i % 3}"}}
        for i, entry_id in enumerate(ids, start)
    ]


def source(
    stream: str, consumer: str = "worker-1", *, count: int = 10, claim_idle_ms: int = 60000
) -> RedisStreamSource:
    return RedisStreamSource(
        REDIS_URL,
        stream,
        group=GROUP,
        consumer=consumer,
        block_ms=50,
        count=count,
        claim_idle_ms=claim_idle_ms,
    )


def pipeline(
    src: RedisStreamSource,
    sink: Sink[StreamRecord],
    *,
    dead_letters: DeadLetterStore | None = None,
) -> Pipeline:
    return Pipeline(
        "redis_test",
        src,
        sink,
        dead_letters=dead_letters,
        source_errors="fail" if dead_letters is None else "dead_letter",
        max_batch_size=10,
        max_batch_age=0.05,
        stop_when_idle=0.3,
    )


async def pending(redis: aioredis.Redis, stream: str, group: str = GROUP) -> int:
    summary = await redis.xpending(stream, group)
    count: int = summary["pending"]
    return count


#: A sink of StreamRecords failing from its ``fail_at``-th write on.
FailingSink = BaseFailingSink[StreamRecord]
