"""Copying the values a volatile default gave older source rows into the target's rows."""

from __future__ import annotations

import asyncpg
import pytest

from asyncetl.connectors.postgres._connect import Dsn
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.cdc._backfill import backfill
from asyncetl.connectors.postgres.schema import describe_table
from tests.connectors.postgres.cdc.support import execute, table_text

pytestmark = pytest.mark.anyio

TABLE = 'CREATE TABLE "S t" (a int, "Key b" text, c float8, PRIMARY KEY (a, "Key b"))'


async def test_backfill_fills_null_rows_by_key_and_keeps_streamed_values(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        f"{TABLE}; INSERT INTO \"S t\" VALUES (1, 'x', 0.5), (2, 'y', 0.25), (3, 'z', NULL),"
        " (4, 'w', 1.5), (5, 'q', 2.5)",
    )
    await execute(
        target_db,
        # 2 holds a value a change streamed; 5 is not in the target yet, 6 no longer in the source.
        f'{TABLE}; ALTER TABLE "S t" ADD COLUMN d int;'
        "INSERT INTO \"S t\" VALUES (1, 'x', NULL), (2, 'y', -1), (3, 'z', NULL),"
        " (4, 'w', NULL), (6, 'n', NULL)",
    )
    conn = await asyncpg.connect(target_db)
    try:
        schema = await describe_table(conn, TableName(None, "S t"))
        assert schema is not None
        async with conn.transaction():
            # Two rows a chunk: the three non-NULL source rows take two UPDATEs.
            gone = await backfill(
                conn, Dsn.parse(cdc_db), TableName("public", "S t"), schema, ["c", "d"], chunk=2
            )
    finally:
        await conn.close()
    assert gone == ["d"]  # the source has no column d (any longer): nothing to copy
    assert await table_text(target_db, '"S t"') == [
        "(1,x,0.5,)",
        "(2,y,-1,)",
        "(3,z,,)",
        "(4,w,1.5,)",
        "(6,n,,)",
    ]
