"""Values PostgreSQL would silently change or refuse for the whole batch are that record's failure."""

from __future__ import annotations

import pytest

from asyncetl.connectors.postgres import PostgresSink
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio


async def test_fractions_in_integers_and_nul_in_text_are_refused_per_record(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE t (id bigint PRIMARY KEY, n bigint, s text)")
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        records = [
            {"id": 1, "n": 1.5, "s": "a"},
            {"id": 2, "n": 2, "s": "b\x00c"},
            {"id": 3, "n": 3.0, "s": "ok"},
        ]
        rejects = await sink.write(batch(records))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            records[0],
            "column 'n' of table public.t is bigint and cannot take the value 1.5 "
            "(record id=1): it would lose its fraction; round it with a transform",
        ),
        (
            records[1],
            "column 's' of table public.t is text and cannot take the value 'b\\x00c' "
            "(record id=2): PostgreSQL text cannot hold the NUL character; strip it "
            "with a transform",
        ),
    ]
    assert await rows(pg_database, "SELECT id, n, s FROM t") == [(3, 3, "ok")]
