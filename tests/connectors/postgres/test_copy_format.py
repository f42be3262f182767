"""TableSource(format="copy") → PostgresSink: rows as COPY text lines, never decoded."""

from __future__ import annotations

from typing import Any

import pytest

from asyncetl import Batch, ConfigError, PermanentError, Pipeline
from asyncetl.connectors.postgres import PostgresCheckpointStore, PostgresSink, TableSource
from tests.connectors.postgres.helpers import connect, execute, rows

pytestmark = pytest.mark.anyio

ODD_TABLE = (
    "CREATE TABLE src (id bigint PRIMARY KEY, name text, score double precision, "
    "at timestamptz, meta jsonb, tags text[], raw bytea);"
    "INSERT INTO src VALUES "
    "(1, E'tab\\there, newline\\nthere, back\\\\slash', 0.1, '2024-02-29 12:00:00.123456+00', "
    """'{"k": "v\\n", "n": [1, 2]}', '{a,"b c",NULL}', '\\x00ff'),"""
    "(2, NULL, NULL, NULL, NULL, NULL, NULL),"
    "(3, 'ünïcødé ☃', -1e300, 'infinity', 'null', '{}', ''),"
    "(4, '\\N', 'NaN', '1999-12-31 23:59:59+00', '[]', '{\"\\\\N\"}', '\\x5c4e')"
)


def batch(lines: list[bytes]) -> Batch[Any]:
    return Batch(0, lines, 0)


async def committed(dsn: str) -> Any:
    store = PostgresCheckpointStore(dsn)
    await store.open()
    try:
        return await store.load("copy", "src")
    finally:
        await store.aclose()


async def copy_table(source_dsn: str, target_dsn: str, **sink: Any) -> Pipeline:
    source = TableSource(source_dsn, "src", chunk_size=2, format="copy")
    target = PostgresSink(target_dsn, "dst", **sink)
    pipeline = Pipeline(
        "copy", source, target, max_batch_size=3, checkpoints=PostgresCheckpointStore(target_dsn)
    )
    await pipeline.run()
    return pipeline


async def test_copy_lines_load_every_value_exactly_and_resume_after_the_checkpoint(
    pg_database: str,
) -> None:
    await execute(pg_database, ODD_TABLE)
    await execute(pg_database, "CREATE TABLE dst (LIKE src INCLUDING ALL)")
    await copy_table(pg_database, pg_database)
    # Compared as row text, so that NaN equals NaN.
    everything = "SELECT id, {0}::text FROM {0} ORDER BY id"
    copied = await rows(pg_database, everything.format("dst"))
    assert copied == await rows(pg_database, everything.format("src"))
    assert [row[0] for row in copied] == [1, 2, 3, 4]
    assert await committed(pg_database) == {"table": "src", "order": ["id"], "after": ["4"]}
    # A new row and a changed one past the position come on the next run; the
    # changed row merges over the copy already there.
    await execute(pg_database, "INSERT INTO src (id, name) VALUES (5, 'five'), (6, 'six')")
    await execute(pg_database, "UPDATE dst SET name = 'stale' WHERE id = 4")
    await execute(pg_database, "UPDATE src SET name = 'fresh' WHERE id = 4")
    await execute(
        pg_database,
        "INSERT INTO dst SELECT * FROM src WHERE id = 5; UPDATE src SET name = 'FIVE' WHERE id = 5",
    )
    await copy_table(pg_database, pg_database)
    assert await rows(pg_database, "SELECT id, name FROM dst WHERE id >= 4 ORDER BY id") == [
        (4, "stale"),  # before the committed position: not read again
        (5, "FIVE"),
        (6, "six"),
    ]
    assert await committed(pg_database) == {"table": "src", "order": ["id"], "after": ["6"]}


async def test_copy_source_pages_by_a_timestamp_cursor_and_holds_back_recent_rows(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at timestamptz NOT NULL);"
        "INSERT INTO ev SELECT g, '2024-01-01'::timestamptz + (g / 3) * interval '1 hour' "
        "FROM generate_series(1, 7) g; INSERT INTO ev VALUES (8, now())",
    )
    source = TableSource(
        pg_database, "ev", cursor=["updated_at"], lag=3600, chunk_size=3, format="copy"
    )
    await source.open()
    try:
        chunks = [c async for c in source.read(["2024-01-01 00:00:00+00", "1"], max_chunk=10)]
    finally:
        await source.aclose()
    assert [(c.records, c.position) for c in chunks] == [
        (
            [
                b"2\t2024-01-01 00:00:00+00",
                b"3\t2024-01-01 01:00:00+00",
                b"4\t2024-01-01 01:00:00+00",
            ],
            {
                "table": "ev",
                "order": ["updated_at", "id"],
                "after": ["2024-01-01 01:00:00+00", "4"],
            },
        ),
        (
            [
                b"5\t2024-01-01 01:00:00+00",
                b"6\t2024-01-01 02:00:00+00",
                b"7\t2024-01-01 02:00:00+00",
            ],
            {
                "table": "ev",
                "order": ["updated_at", "id"],
                "after": ["2024-01-01 02:00:00+00", "7"],
            },
        ),
    ]


async def test_copy_source_positions_are_the_key_text_even_with_escaped_characters(
    pg_database: str,
) -> None:
    keys = ["a\tb", "a\\", "a\nb", "b\\n", "c\rd"]
    await execute(pg_database, 'CREATE TABLE k (id text COLLATE "C" PRIMARY KEY, n int)')
    async with connect(pg_database) as conn:
        await conn.executemany(
            "INSERT INTO k VALUES ($1, $2)", [(k, i) for i, k in enumerate(keys)]
        )
    source = TableSource(pg_database, "k", chunk_size=2, format="copy")
    await source.open()
    try:
        chunks = [c async for c in source.read(None, max_chunk=10)]
        resumed = [c async for c in source.read([sorted(keys)[2]], max_chunk=10)]
    finally:
        await source.aclose()
    assert [c.position for c in chunks] == [
        {"table": "k", "order": ["id"], "after": [sorted(keys)[i]]} for i in (1, 3, 4)
    ]
    assert [line for c in chunks for line in c.records] == [
        b"a\\tb\t0",
        b"a\\nb\t2",
        b"a\\\\\t1",
        b"b\\\\n\t3",
        b"c\\rd\t4",
    ]
    assert [line for c in resumed for line in c.records] == [b"b\\\\n\t3", b"c\\rd\t4"]


async def test_copy_lines_upsert_keeps_the_newest_version_of_a_key_twice_in_a_batch(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE dst (id int PRIMARY KEY, v int, name text)")
    await execute(pg_database, "INSERT INTO dst VALUES (1, 5, 'stored')")
    sink = PostgresSink(pg_database, "dst", version_column="v")
    await sink.open()
    try:
        lines = [b"1\t4\told", b"2\t1\tfirst", b"2\t3\tnewest", b"2\t2\tlater but older"]
        await sink.write(batch(lines))
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT * FROM dst ORDER BY id") == [
        (1, 5, "stored"),
        (2, 3, "newest"),
    ]


async def test_copy_lines_fill_the_named_columns_in_append_and_replace_partition_modes(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE log (day date, n int, note text DEFAULT 'none')")
    await execute(
        pg_database, "INSERT INTO log VALUES ('2024-01-01', 1, 'old'), ('2024-01-02', 2, 'kept')"
    )
    replace = PostgresSink(
        pg_database, "log", mode="replace_partition", partition=["day"], columns=["n", "day"]
    )
    append = PostgresSink(pg_database, "log", mode="append", columns=["day", "n"])
    for sink in (replace, append):
        await sink.open()
    try:
        await replace.write(batch([b"10\t2024-01-01", b"11\t2024-01-01"]))
        await append.write(batch([b"2024-01-03\t12"]))
    finally:
        for sink in (replace, append):
            await sink.aclose()
    assert await rows(pg_database, "SELECT day::text, n, note FROM log ORDER BY n") == [
        ("2024-01-02", 2, "kept"),
        ("2024-01-01", 10, "none"),
        ("2024-01-01", 11, "none"),
        ("2024-01-03", 12, "none"),
    ]


async def test_copy_format_errors(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE keyless (a int, b text); CREATE TABLE t (id int PRIMARY KEY, v text);"
        "CREATE TABLE soft (id int PRIMARY KEY, v text, deleted_at timestamptz)",
    )
    with pytest.raises(ConfigError) as caught:
        TableSource(pg_database, "t", format="csv")
    assert str(caught.value) == "source t: format: must be one of records, copy, binary, not 'csv'"
    source = TableSource(pg_database, "keyless", format="copy")
    with pytest.raises(ConfigError) as caught:
        await source.open()
    assert str(caught.value) == (
        'source keyless: format: format = "copy" reads table keyless in keyset order, '
        "which needs a key and NOT NULL ordering columns (here: ['a', 'b']); "
        'use format = "records"'
    )
    soft = PostgresSink(pg_database, "soft", mode="soft_delete")
    wide = PostgresSink(pg_database, "t")
    await soft.open()
    await wide.open()
    try:
        with pytest.raises(PermanentError) as failed:
            await soft.write(batch([b"1\tx"]))
        assert str(failed.value) == (
            'soft_delete needs records, not COPY lines: read the source with format = "records", '
            "or drop soft_delete"
        )
        with pytest.raises(PermanentError) as failed:
            await wide.write(batch([b"1\tx\textra"]))
        assert str(failed.value) == (
            "COPY lines do not fit the columns (id, v) of table public.t: extra data after "
            "last expected column; the source must read these columns in this order, or give "
            "the sink columns = [...] in the source's order"
        )
    finally:
        await soft.aclose()
        await wide.aclose()
    assert await rows(pg_database, "SELECT count(*) FROM t") == [(0,)]
