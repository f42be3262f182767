"""The job of ``backfill_daily.toml``: one UTC day of ``events`` into ``daily_totals``.

The day's count and sum are read from the source database; the target row is
written by :class:`asyncetl.connectors.postgres.PostgresSink` in
``replace_partition`` mode (delete the day, insert it, in one transaction), so
running a day again leaves exactly the same table.
"""

from __future__ import annotations

from datetime import datetime

import anyio
import asyncpg

from asyncetl import Batch
from asyncetl.backfill import Partition
from asyncetl.connectors.postgres import PostgresSink

_DDL = """
CREATE TABLE IF NOT EXISTS daily_totals (
    day date PRIMARY KEY,
    events bigint NOT NULL,
    amount numeric NOT NULL
)
"""
_TOTALS = """
SELECT count(*) AS events, coalesce(sum(amount), 0) AS amount
FROM events WHERE occurred_at >= $1 AND occurred_at < $2
"""
_created: set[str] = set()
_create_lock = anyio.Lock()


async def load_day(partition: Partition, *, source_dsn: str, target_dsn: str) -> None:
    """Aggregate the day ``partition`` covers and replace its row of ``daily_totals``."""
    assert isinstance(partition.start, datetime)
    await _ensure_table(target_dsn)
    source = await asyncpg.connect(source_dsn)
    try:
        totals = await source.fetchrow(_TOTALS, partition.start, partition.end)
    finally:
        await source.close()
    assert totals is not None
    row = {"day": partition.start.date(), "events": totals["events"], "amount": totals["amount"]}
    sink = PostgresSink(target_dsn, "daily_totals", mode="replace_partition", partition=["day"])
    await sink.open()
    try:
        await sink.write(Batch(0, [row], partition.key))
    finally:
        await sink.aclose()


async def _ensure_table(dsn: str) -> None:
    async with _create_lock:
        if dsn in _created:
            return
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                # Workers on other machines may create it at the same moment.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('daily_totals'))")
                await conn.execute(_DDL)
        finally:
            await conn.close()
        _created.add(dsn)
