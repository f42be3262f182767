"""TableSource: keyset pages, exact positions, resume, ties, lag, keyless tables, snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from asyncetl import Chunk, ConfigError, JsonValue, PermanentError
from asyncetl.connectors.postgres import TableSource
from tests.connectors.postgres.helpers import execute

pytestmark = pytest.mark.anyio


async def read_all(
    source: TableSource, after: JsonValue = None, max_chunk: int = 100
) -> list[Chunk[dict[str, Any]]]:
    await source.open()
    try:
        return [chunk async for chunk in source.read(after, max_chunk=max_chunk)]
    finally:
        await source.aclose()


async def test_reads_by_primary_key_in_pages_and_resumes_strictly_after(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE SCHEMA s; CREATE TABLE s.t (id bigint PRIMARY KEY, v text);"
        "INSERT INTO s.t SELECT g, 'v' || g FROM generate_series(1, 7) g",
    )
    source = TableSource(pg_database, "s.t", chunk_size=3)
    chunks = await read_all(source)
    assert [(len(c.records), c.position) for c in chunks] == [
        (3, {"table": "s.t", "order": ["id"], "after": ["3"]}),
        (3, {"table": "s.t", "order": ["id"], "after": ["6"]}),
        (1, {"table": "s.t", "order": ["id"], "after": ["7"]}),
    ]
    assert chunks[0].records[0] == {"id": 1, "v": "v1"}
    assert source.order == ["id"]
    assert source.schema is not None and str(source.schema.table) == "s.t"
    resumed = await read_all(TableSource(pg_database, "s.t", chunk_size=3), chunks[1].position)
    assert [c.records for c in resumed] == [[{"id": 7, "v": "v7"}]]


async def test_timestamp_cursor_with_key_tie_breaker_neither_skips_nor_repeats(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at timestamptz NOT NULL);"
        "INSERT INTO ev SELECT g, '2024-01-01'::timestamptz + (g / 4) * interval '1 hour' "
        "FROM generate_series(1, 10) g",
    )
    source = TableSource(pg_database, "ev", cursor=["updated_at"], chunk_size=3)
    chunks = await read_all(source)
    assert [r["id"] for c in chunks for r in c.records] == list(range(1, 11))
    assert chunks[0].position == {
        "table": "ev",
        "order": ["updated_at", "id"],
        "after": ["2024-01-01T00:00:00+00:00", "3"],
    }
    assert source.order == ["updated_at", "id"]
    # Rows updated after the position come again, each once.
    await execute(pg_database, "UPDATE ev SET updated_at = '2030-01-01' WHERE id IN (2, 9)")
    again = await read_all(
        TableSource(pg_database, "ev", cursor=["updated_at"]), chunks[-1].position
    )
    assert [r["id"] for c in again for r in c.records] == [2, 9]


async def test_lag_holds_back_recent_rows(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz NOT NULL);"
        "INSERT INTO ev VALUES (1, now() - interval '1 hour'), (2, now())",
    )
    chunks = await read_all(TableSource(pg_database, "ev", cursor=["at"], lag=60.0))
    assert [r["id"] for c in chunks for r in c.records] == [1]


async def test_keyless_table_keeps_duplicates_and_nulls(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE h (a int, b text);"
        "INSERT INTO h VALUES (1, NULL), (1, NULL), (1, 'x'), (2, 'y'), (2, 'y'), (3, NULL)",
    )
    source = TableSource(pg_database, "h", chunk_size=2)
    chunks = await read_all(source)
    assert source.grouped and source.order == ["a", "b"]
    assert [(c.records, c.position) for c in chunks] == [
        (
            [{"a": 1, "b": "x"}, {"a": 1, "b": None}, {"a": 1, "b": None}],
            {"table": "h", "order": ["a", "b"], "after": ["1", None], "as_text": ["b"]},
        ),
        (
            [{"a": 2, "b": "y"}, {"a": 2, "b": "y"}, {"a": 3, "b": None}],
            {"table": "h", "order": ["a", "b"], "after": ["3", None], "as_text": ["b"]},
        ),
    ]


async def test_snapshot_resets_the_position_after_a_complete_scan(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY);INSERT INTO t SELECT generate_series(1, 4)",
    )
    chunks = await read_all(TableSource(pg_database, "t", snapshot=True, chunk_size=2), ["1"])
    assert [(len(c.records), c.position) for c in chunks] == [
        (2, {"table": "t", "order": ["id"], "after": ["3"]}),
        (1, {"table": "t", "order": ["id"], "after": ["4"]}),
        (0, None),
    ]


async def test_query_source(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, v int);"
        "INSERT INTO t SELECT g, g * 10 FROM generate_series(1, 5) g",
    )
    source = TableSource(
        pg_database, "big_v", query="SELECT id, v FROM t WHERE v > 20", cursor=["id"], chunk_size=2
    )
    chunks = await read_all(source)
    assert [r["id"] for c in chunks for r in c.records] == [3, 4, 5]
    assert chunks[-1].position == {
        "query": "SELECT id, v FROM t WHERE v > 20",
        "order": ["id"],
        "after": ["5"],
    }


async def test_errors(pg_database: str) -> None:
    with pytest.raises(PermanentError, match=r"source table public\.nope does not exist|nope"):
        await read_all(TableSource(pg_database, "nope"))
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY)")
    with pytest.raises(PermanentError, match="column 'ts' is not in table t"):
        await read_all(TableSource(pg_database, "t", cursor=["ts"]))
    with pytest.raises(
        ConfigError, match=r"it does not hold the ordering columns \[\"id\"\] of table t"
    ):
        await read_all(TableSource(pg_database, "t"), ["1", "2"])
    with pytest.raises(ConfigError, match="a query source needs cursor"):
        TableSource(pg_database, "q", query="SELECT 1")


async def test_a_position_written_for_another_table_or_order_is_refused(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE a (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO a (id) VALUES (1); INSERT INTO b VALUES (1)",
    )
    [chunk] = await read_all(TableSource(pg_database, "a"))
    assert chunk.position == {"table": "a", "order": ["id"], "after": ["1"]}
    elsewhere = TableSource(pg_database, "b", name="rows")
    with pytest.raises(ConfigError) as caught:
        elsewhere.check_position(chunk.position)  # before open: no connection needed
    assert str(caught.value) == (
        "TableSource 'rows': position: cannot resume from the committed position "
        '{"table":"a","order":["id"],"after":["1"]}: it was written for table "a", not for '
        'table "b"; point table back there, or to read "b" from the start, reset the '
        "checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )
    with pytest.raises(ConfigError) as read_refused:
        await read_all(elsewhere, chunk.position)
    assert str(read_refused.value) == str(caught.value)
    with pytest.raises(ConfigError) as reordered:
        await read_all(TableSource(pg_database, "a", cursor=["at"]), chunk.position)
    assert str(reordered.value) == (
        "TableSource 'a': position: cannot resume from the committed position "
        '{"table":"a","order":["id"],"after":["1"]}: it was written for the ordering columns '
        '["id"], not for ["at","id"] (cursor and key); restore them, or to read in the new '
        "order from the start, reset the checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )
    query = TableSource(pg_database, "a", query="SELECT id FROM b", cursor=["id"])
    with pytest.raises(ConfigError, match='it was written for query "SELECT id FROM a", not for'):
        query.check_position({"query": "SELECT id FROM a", "order": ["id"], "after": ["1"]})


async def test_a_bare_list_written_before_positions_named_their_table_is_taken(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    source = TableSource(pg_database, "t")
    source.check_position(["1"])
    [chunk] = await read_all(source, ["1"])
    assert (chunk.records, chunk.position) == (
        [{"id": 2}],
        {"table": "t", "order": ["id"], "after": ["2"]},
    )


def test_a_query_position_is_refused_by_a_table_source() -> None:
    source = TableSource("postgresql://u:secret@127.0.0.1/db", "t")
    with pytest.raises(ConfigError) as caught:
        source.check_position({"query": "SELECT 1 AS id", "order": ["id"], "after": ["1"]})
    assert str(caught.value) == (
        "TableSource 't': position: cannot resume from the committed position "
        '{"query":"SELECT 1 AS id","order":["id"],"after":["1"]}: it was written for query '
        '"SELECT 1 AS id", not for table "t"; point table back there, or to read "t" from the '
        "start, reset the checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )
