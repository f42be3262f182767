"""Fill ``events(id, occurred_at, amount)`` with made-up rows for a range of UTC days.

    python examples/make_events.py --dsn "$SOURCE_DSN" --start 2024-01-01 --end 2024-03-31

Creates the table when missing and replaces the rows of the days in the range,
so running it again gives the same table. Rows are random but reproducible
(``--seed``); ids are ``days since 1970 × 1,000,000 + n``.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import anyio
import asyncpg

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    id bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    amount numeric NOT NULL
)
"""
_DELETE = "DELETE FROM events WHERE occurred_at >= $1 AND occurred_at < $2"


def rows_for_day(
    day: date, per_day: int, rng: random.Random
) -> list[tuple[int, datetime, Decimal]]:
    """``per_day`` events at random moments of ``day`` (UTC) with amounts of 0.01 to 500.00."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    base = (day - date(1970, 1, 1)).days * 1_000_000
    return [
        (
            base + n,
            start + timedelta(seconds=rng.randrange(86_400)),
            Decimal(rng.randrange(1, 50_001)) / 100,
        )
        for n in range(per_day)
    ]


async def fill(dsn: str, first: date, last: date, *, per_day: int = 1000, seed: int = 1) -> int:
    """Replace the events of ``first``..``last`` (inclusive); returns the rows written."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    written = 0
    try:
        await conn.execute(_DDL)
        day = first
        while day <= last:
            rows = rows_for_day(day, per_day, rng)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            async with conn.transaction():
                await conn.execute(_DELETE, start, start + timedelta(days=1))
                await conn.copy_records_to_table("events", records=rows)
            written += len(rows)
            day += timedelta(days=1)
    finally:
        await conn.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True, help="postgresql:// DSN of the source database")
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="first day")
    parser.add_argument("--end", required=True, type=date.fromisoformat, help="last day, included")
    parser.add_argument("--per-day", type=int, default=1000, help="events per day (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()
    if args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    written = anyio.run(
        lambda: fill(args.dsn, args.start, args.end, per_day=args.per_day, seed=args.seed)
    )
    print(f"wrote {written} events for {args.start}..{args.end}")


if __name__ == "__main__":
    main()
