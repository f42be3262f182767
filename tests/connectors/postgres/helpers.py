"""Shared helpers for the PostgreSQL connector tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from asyncetl import Batch


@asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    async with connect(dsn) as conn:
        return [tuple(r) for r in await conn.fetch(sql)]


async def execute(dsn: str, sql: str) -> None:
    async with connect(dsn) as conn:
        await conn.execute(sql)


def batch(records: Sequence[dict[str, Any]], seq: int = 0) -> Batch[dict[str, Any]]:
    return Batch(seq, records, seq)
