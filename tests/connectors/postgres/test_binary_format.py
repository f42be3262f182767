"""TableSource(format="binary") → PostgresSink: pages of COPY's binary format, never decoded."""

from __future__ import annotations

import itertools
from contextlib import aclosing
from typing import Any

import pytest

from asyncetl import Batch, ConfigError, PermanentError, Pipeline, StageError
from asyncetl.connectors.postgres import (
    PostgresCheckpointStore,
    PostgresSink,
    TableSource,
    TablesSink,
    TablesSource,
)
from asyncetl.connectors.postgres._binary import HEADER, TRAILER, BinaryPage, page_of
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

TABLE = (
    "CREATE TABLE src (id bigint PRIMARY KEY, name text, score double precision, "
    "at timestamptz, meta jsonb, tags int[]);"
    "INSERT INTO src SELECT g, 'n' || g, g / 3.0, '2024-02-29 12:00:00.123456+00', "
    """'{"k": [1, 2.50]}', '[0:1]={1,NULL}' FROM generate_series(1, 12) g"""
)
EVERYTHING = "SELECT id, {0}::text FROM {0} ORDER BY id"


async def read_all(source: TableSource, after: Any = None) -> list[tuple[list[int], Any]]:
    """Each chunk's pages (their row counts) and position."""
    await source.open()
    chunks: list[tuple[list[int], Any]] = []
    try:
        async with aclosing(source.read(after, max_chunk=100)) as reading:  # type: ignore[type-var]
            async for chunk in reading:
                pages = list(dict.fromkeys(chunk.records))
                assert all(isinstance(page, BinaryPage) for page in pages)
                sizes = [page.rows for page in pages]
                assert len(chunk.records) == sum(sizes)  # one record per row
                chunks.append((sizes, chunk.position))
    finally:
        await source.aclose()
    return chunks


def position(after: str) -> dict[str, Any]:
    return {"table": "src", "order": ["id"], "after": [after]}


async def test_binary_pages_hold_whole_pages_and_resume_after_their_last_key(
    pg_database: str,
) -> None:
    await execute(pg_database, TABLE)
    source = TableSource(pg_database, "src", chunk_size=5, format="binary")
    # One page per chunk, each row of the page one record: pages of 5, 5 and 2 rows,
    # in key order (not the order of the keys' text: "10" before "2").
    assert await read_all(source) == [
        ([5], position("5")),
        ([5], position("10")),
        ([2], position("12")),
    ]
    resumed = TableSource(pg_database, "src", chunk_size=5, format="binary")
    assert await read_all(resumed, position("3")) == [([5], position("8")), ([4], position("12"))]


async def test_binary_pages_load_every_value_exactly_into_an_empty_and_a_full_target(
    pg_database: str,
) -> None:
    await execute(pg_database, TABLE)
    store = PostgresCheckpointStore(pg_database)

    async def copy() -> Any:
        source = TableSource(pg_database, "src", chunk_size=2, format="binary")
        sink = PostgresSink(
            pg_database,
            "dst",
            create=True,
            skip_unchanged=True,
            source_dsn=pg_database,
            source_table="src",
        )
        # Batches of 3 records or more: two pages of 2 rows go in one COPY.
        return await Pipeline("binary", source, sink, max_batch_size=3, checkpoints=store).run()

    stats = await copy()
    assert (stats.records_out, stats.unchanged) == (12, 0)
    assert await rows(pg_database, EVERYTHING.format("dst")) == await rows(
        pg_database, EVERYTHING.format("src")
    )
    assert await rows(pg_database, "SELECT tags::text FROM dst WHERE id = 1") == [
        ("[0:1]={1,NULL}",)
    ]
    # Again from the start into the full table: merged, only the changed row rewritten.
    await execute(pg_database, "UPDATE src SET name = 'changed' WHERE id = 3")
    await execute(pg_database, "DELETE FROM asyncetl_checkpoints")
    stats = await copy()
    assert (stats.records_out, stats.unchanged) == (1, 11)
    assert await rows(pg_database, EVERYTHING.format("dst")) == await rows(
        pg_database, EVERYTHING.format("src")
    )


async def test_binary_format_refuses_a_table_with_types_that_are_not_built_in(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TYPE mood AS ENUM ('ok'); CREATE DOMAIN positive AS integer CHECK (VALUE > 0);"
        "CREATE TABLE src (id integer PRIMARY KEY, m mood, p positive, ms mood[], n int[])",
    )
    source = TableSource(pg_database, "src", format="binary")
    with pytest.raises(ConfigError) as caught:
        await source.open()
    assert str(caught.value) == (
        "source src: format: columns m (mood), p (positive), ms (mood[]) of src have "
        "types that are not built in (or lack a binary form), whose binary values another "
        'database may not read; use format = "copy"'
    )


async def test_tables_copy_takes_custom_types_as_copy_text_and_the_rest_as_binary(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        TABLE + "; CREATE TYPE mood AS ENUM ('ok', 'sad');"
        "CREATE TABLE moods (id integer PRIMARY KEY, m mood);"
        "INSERT INTO moods VALUES (1, 'sad'), (2, NULL)",
    )
    source = TablesSource(pg_database, "src, moods", format="binary", chunk_size=2)
    await source.open()
    try:
        kinds = {}
        for table in ("src", "moods"):
            reading = source.sources[table].read(None, max_chunk=2)
            async with aclosing(reading) as chunks:  # type: ignore[type-var]
                first = await anext(chunks)
            kinds[table] = type(first.records[0]).__name__
    finally:
        await source.aclose()
    assert kinds == {"src": "BinaryPage", "moods": "bytes"}


async def test_sink_refuses_binary_pages_into_columns_of_other_types(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    await execute(
        pg_database,
        "CREATE TABLE dst (id bigint PRIMARY KEY, name text, score real, at timestamptz, "
        "meta jsonb, tags int[])",
    )
    source = TableSource(pg_database, "src", format="binary")
    sink = PostgresSink(pg_database, "dst", source_dsn=pg_database, source_table="src")
    with pytest.raises(StageError) as caught:
        await Pipeline("binary", source, sink).run()
    assert isinstance(caught.value.__cause__, PermanentError)
    assert str(caught.value.__cause__) == (
        "binary COPY data needs the same column types in source and target, and these differ: "
        "score (double precision in public.src, real in public.dst); "
        'read the source with format = "copy"'
    )
    assert await rows(pg_database, "SELECT count(*) FROM dst") == [(0,)]


async def test_sink_without_its_source_refuses_binary_pages(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE dst (id bigint PRIMARY KEY)")
    sink = PostgresSink(pg_database, "dst")
    await sink.open()
    try:
        with pytest.raises(PermanentError) as caught:
            await sink.write(Batch(0, [BinaryPage(b"", 0)], None))  # type: ignore[list-item]
    finally:
        await sink.aclose()
    assert str(caught.value) == (
        "binary COPY pages for public.dst need the sink's source_dsn and source_table, to "
        "check that the columns' types are the same"
    )


async def test_tables_sink_copies_binary_pages_exactly(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    target = pg_database + "_t"
    await execute(pg_database, f'CREATE DATABASE "{target.rsplit("/", 1)[1]}"')
    try:
        source = TablesSource(pg_database, "src", format="binary", chunk_size=2)
        sink = TablesSink(target, tables="src", source_dsn=pg_database)
        stats = await Pipeline("tables", source, sink, max_batch_size=3).run()
        assert stats.records_out == 12
        assert await rows(target, EVERYTHING.format("src")) == await rows(
            pg_database, EVERYTHING.format("src")
        )
    finally:
        await execute(pg_database, f'DROP DATABASE "{target.rsplit("/", 1)[1]}" WITH (FORCE)')


async def test_binary_pages_follow_a_timestamp_cursor_and_hold_back_recent_rows(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at timestamptz NOT NULL);"
        "INSERT INTO ev SELECT g, '2024-01-01'::timestamptz + (g / 3) * interval '1 hour' "
        "FROM generate_series(1, 7) g; INSERT INTO ev VALUES (8, now())",
    )
    source = TableSource(
        pg_database, "ev", cursor=["updated_at"], lag=3600, chunk_size=3, format="binary"
    )
    chunks = await read_all(source, ["2024-01-01 00:00:00+00", "1"])

    def at(hour: int, key: str) -> dict[str, Any]:
        after = [f"2024-01-01 0{hour}:00:00+00", key]
        return {"table": "ev", "order": ["updated_at", "id"], "after": after}

    # Rows 2-4, then 5-7; row 8, newer than the lag, waits for a later run.
    assert chunks == [([3], at(1, "4")), ([3], at(2, "7"))]


@pytest.mark.parametrize(
    "cuts",
    [[], [19], [5], [19, 30], [78], [77], [10, 20, 62]],
    ids=["whole", "after-header", "in-header", "three", "in-trailer", "at-trailer", "four"],
)
def test_a_page_of_copy_output_in_parts_is_the_rows_between_header_and_trailer(
    cuts: list[int],
) -> None:
    data = b"\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07" * 4 + b"\x00\x01\xff\xff\xff\xff" * 3
    output = HEADER + data + TRAILER  # 19 + 58 + 2 bytes
    bounds = [0, *cuts, len(output)]
    parts = [bytearray(output[a:b]) for a, b in itertools.pairwise(bounds)]
    page = page_of(parts if cuts else output, 7)
    assert (page.data, page.rows) == (data, 7)
    assert isinstance(page.data, bytes)


def test_output_not_framed_as_binary_copy_data_is_refused() -> None:
    for output in ([], [b"PGCOPY"], [HEADER, b"\x00"], b"text\n"):
        with pytest.raises(PermanentError) as caught:
            page_of(output, 1)
        assert str(caught.value) == (
            "COPY TO printed no binary COPY data; the server is not PostgreSQL"
        )
