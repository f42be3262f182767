"""Fixtures for the Redis Streams tests: a client and a throwaway stream key."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.connectors.redis.helpers import REDIS_URL


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stream(redis: aioredis.Redis) -> AsyncIterator[str]:
    """A random stream key; the stream, its groups and its dedupe sets are deleted afterwards."""
    name = f"asyncetl_test:{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await redis.delete(name, f"{name}:asyncetl:ids", f"{name}:asyncetl:recent-ids")
