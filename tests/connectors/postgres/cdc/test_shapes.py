"""Tables of every shape through the CDC snapshot and stream, compared row for row
(``row(t.*)::text``): other schemas, quoted and reserved names, partitioned tables,
1 MB values and one large transaction."""

from __future__ import annotations

import os

import anyio
import asyncpg
import pytest

from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    fetchval,
    replicate,
    table_text,
)

pytestmark = pytest.mark.anyio

SHAPES = """
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Lines" ("Id" int PRIMARY KEY, "select" text, "User" int, "from" date);
INSERT INTO "Sales"."Order Lines" VALUES (1, 'a', 10, '2024-01-01'), (2, NULL, 20, NULL);
CREATE TABLE events (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b');
CREATE TABLE wide (id int PRIMARY KEY, t text, b bytea);
INSERT INTO wide VALUES (1, repeat('x', 1048576), decode(repeat('ab', 1048576), 'hex'));
"""
TABLES = ['"Sales"."Order Lines"', "events", "wide"]
#: One megabyte of text no compression shrinks: TOASTed out of line, and sent whole.
MEGABYTE = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 32768) g)"


async def test_schemas_quoted_names_partitions_and_megabyte_values(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, SHAPES)
    await execute(target_db, 'CREATE SCHEMA "Sales"')
    await replicate(
        cdc_db,
        target_db,
        TABLES,
        [
            """INSERT INTO "Sales"."Order Lines" VALUES (3, 'c', 30, '2024-02-02');
            UPDATE "Sales"."Order Lines" SET "select" = 'z' WHERE "Id" = 2;
            DELETE FROM "Sales"."Order Lines" WHERE "Id" = 1""",
            # into a partition, moved across partitions, and deleted: all through the parent
            """INSERT INTO events VALUES (3, '2025-06-01', 'c');
            UPDATE events SET day = '2025-01-02' WHERE id = 1;
            DELETE FROM events WHERE id = 2""",
            f"""INSERT INTO wide VALUES (2, {MEGABYTE}, decode({MEGABYTE}, 'hex'));
            UPDATE wide SET t = {MEGABYTE} WHERE id = 1""",
        ],
        seconds=30,
    )
    assert await table_text(target_db, '"Sales"."Order Lines"') == [
        "(2,z,20,)",
        "(3,c,30,2024-02-02)",
    ]
    assert await table_text(target_db, "events") == ["(1,2025-01-02,a)", "(3,2025-06-01,c)"]
    sizes = "SELECT id, length(t), length(b) FROM wide ORDER BY id"
    assert [tuple(r) for r in await fetch(target_db, sizes)] == [
        (1, 1048576, 1048576),
        (2, 1048576, 524288),
    ]
    # One target table for the partitioned one, as the parent publishes its partitions.
    relkind = "SELECT relkind::text FROM pg_class WHERE relname = 'events'"
    assert await fetchval(target_db, relkind) == "r"
    assert await fetchval(target_db, "SELECT to_regclass('events_2024')::text") is None


async def test_a_large_transaction_streams_in_chunks_and_arrives_whole(
    cdc_db: str, target_db: str
) -> None:
    """One transaction of 1M rows arrives whole while the process's memory stays flat:
    the stream is applied chunk by chunk, never held whole (as change events, 1M such
    rows take about 430 MiB; streamed, the process grows by about 26 MiB)."""
    await execute(cdc_db, "CREATE TABLE bulk (id int PRIMARY KEY, v text)")
    rows = 1_000_000
    before = _resident()
    most = before

    async def last_row_arrived() -> bool:
        # The rows are inserted, streamed and applied in id order: the last one closes it.
        nonlocal most
        most = max(most, _resident())
        await anyio.sleep(0.5)
        last = f"SELECT count(*) FROM bulk WHERE id = {rows}"
        try:
            return bool(await fetchval(target_db, last))
        except asyncpg.UndefinedTableError:
            return False  # not created in the target yet

    await replicate(
        cdc_db,
        target_db,
        ["bulk"],
        [f"INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"],
        seconds=300,
        until=last_row_arrived,
        max_batch_size=5000,  # the batches' size is not what this test is about
    )
    assert await fetchval(target_db, _DIGEST) == await fetchval(cdc_db, _DIGEST)
    assert await fetchval(target_db, "SELECT count(*) FROM bulk") == rows
    assert most - before < 150 * 2**20, f"resident memory grew by {(most - before) >> 20} MiB"


#: Every row's text in key order, digested in the server (1M rows fetched would cost more
#: than the stream).
_DIGEST = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM bulk AS t"


def _resident() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
