"""``check()`` of the Redis stream source and sink: one try, nothing created."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from asyncetl import Problem
from asyncetl.connectors.redis import RedisStreamSink, RedisStreamSource
from tests.connectors.redis.helpers import REDIS_URL

pytestmark = pytest.mark.anyio


async def test_a_missing_stream_is_fine_when_the_group_would_be_created(
    redis: aioredis.Redis, stream: str
) -> None:
    assert await RedisStreamSource(REDIS_URL, stream, group="g").check() == []
    assert await RedisStreamSink(REDIS_URL, stream).check() == []
    assert await redis.exists(stream) == 0


async def test_a_missing_group_is_a_problem_without_create_group(
    redis: aioredis.Redis, stream: str
) -> None:
    await redis.xgroup_create(stream, "other", mkstream=True)
    source = RedisStreamSource(REDIS_URL, stream, group="g", create_group=False)
    assert await source.check() == [
        Problem(
            "group",
            f"consumer group 'g' of stream {stream!r} does not exist on Redis at "
            "127.0.0.1:6379 and create_group = false",
        )
    ]
    assert (
        await RedisStreamSource(REDIS_URL, stream, group="other", create_group=False).check() == []
    )


async def test_a_key_of_another_type_is_named(redis: aioredis.Redis, stream: str) -> None:
    await redis.set(stream, "x")
    problem = Problem(
        "stream", f"key {stream!r} on Redis at 127.0.0.1:6379 holds a string, not a stream"
    )
    assert await RedisStreamSource(REDIS_URL, stream, group="g").check() == [problem]
    assert await RedisStreamSink(REDIS_URL, stream).check() == [problem]


async def test_an_unreachable_server_is_tried_once_and_named_without_the_password() -> None:
    url = "redis://etl:s3cr3t-pw@127.0.0.1:1/0"
    with capture_logs() as logs:
        problems = await RedisStreamSource(url, "orders", group="g", retries=5).check()
        problems += await RedisStreamSink(url, "orders", retries=5).check()
    assert [p.setting for p in problems] == ["url", "url"]
    for problem in problems:
        assert problem.message.startswith(
            "Redis at 127.0.0.1:1 is unreachable or dropped the connection during PING "
            "(ConnectionError: Error 111 connecting to 127.0.0.1:1."
        )
        assert "s3cr3t" not in problem.message
    assert [log for log in logs if log["event"] == "retrying"] == []
