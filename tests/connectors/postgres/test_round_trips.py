"""What a PostgreSQL sink sends per batch: its transaction and nothing between batches.

The sinks leave no session state (settings and locks end with each transaction; the
staging tables are kept on purpose), so their pooled connections are not reset
after each batch: a reset is one more round trip per batch, against a remote
server the cost of a small batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from asyncetl.connectors.postgres import PostgresSink
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def logged(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """The start of each statement sent on ``pool``'s one connection while inside."""
    sent: list[str] = []

    def log(query: asyncpg.connection.LoggedQuery) -> None:
        sent.append(query.query.split("(", 1)[0].strip())

    async with pool.acquire() as conn:
        conn.add_query_logger(log)
    try:
        yield sent
    finally:
        async with pool.acquire() as conn:
            conn.remove_query_logger(log)


async def test_an_upsert_batch_is_its_transaction_and_no_session_reset(pg_database: str) -> None:
    await execute(
        pg_database, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')"
    )
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, "v": "b"}]))  # learns the table has keys: merges
        async with logged(sink.pool) as sent:
            await sink.write(batch([{"id": 1, "v": "c"}, {"id": 2, "v": "d"}], 1))
            await sink.write(batch([{"id": 2, "v": "e"}], 2))
    finally:
        await sink.aclose()
    merge = 'INSERT INTO "public"."t" AS t'
    assert sent == ["BEGIN;", merge, "COMMIT;", "BEGIN;", merge, "COMMIT;"]
    assert await rows(pg_database, "SELECT id, v FROM t ORDER BY id") == [(1, "c"), (2, "e")]
