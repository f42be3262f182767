"""The client's connection packing commands in hiredis's C code."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc

from asyncetl.connectors.redis._client import RedisClient, retry_policy
from tests.connectors.redis.helpers import REDIS_URL

pytestmark = pytest.mark.anyio


async def packed_client() -> RedisClient:
    client = RedisClient(
        REDIS_URL,
        where="test",
        client_name="asyncetl:test",
        policy=retry_policy(0, 1.0, "test"),
        socket_timeout=5.0,
        hiredis_packing=True,
    )
    await client.open()
    return client


async def test_commands_packed_by_hiredis_carry_every_kind_of_argument(
    redis: aioredis.Redis, stream: str
) -> None:
    client = await packed_client()
    try:
        fields = {
            "text": "grüße",
            "raw": b"\xff\x00",
            "int": 7,
            "float": 1.5,
            "view": memoryview(b"mv"),
            "array": bytearray(b"ba"),
        }
        entry_id = await client.redis.xadd(stream, fields)  # type: ignore[arg-type]
        await client.redis.xgroup_create(stream, "g", id="0")
        with pytest.raises(rexc.DataError, match="A tuple item must be str, int, float or bytes"):
            await client.redis.set(f"{stream}:x", {"a": 1})  # type: ignore[arg-type]
    finally:
        await client.close()
    assert await redis.xrange(stream) == [
        (
            entry_id,
            {
                b"text": "grüße".encode(),
                b"raw": b"\xff\x00",
                b"int": b"7",
                b"float": b"1.5",
                b"view": b"mv",
                b"array": b"ba",
            },
        )
    ]
    assert [g["name"] for g in await redis.xinfo_groups(stream)] == [b"g"]
