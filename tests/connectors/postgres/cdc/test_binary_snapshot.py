"""CdcSource(snapshot_format="binary") → ApplySink: the snapshot as pages of binary COPY data."""

from __future__ import annotations

import functools
import logging
from typing import Any

import anyio
import asyncpg
import orjson
import pytest
import structlog

from asyncetl import Batch, Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from asyncetl.connectors.postgres.cdc._pages import SnapshotPage
from asyncetl.core.errors import ConfigError, PermanentError, StageError
from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    random_name,
    streaming,
    take,
    wait_for,
)

pytestmark = pytest.mark.anyio

TYPED = (
    "CREATE TABLE typed (id bigint PRIMARY KEY, n numeric, f float8, t text, j jsonb, "
    "b bytea, at timestamptz, a int[], r int4range);"
    "INSERT INTO typed VALUES "
    "(1, 'NaN', 'NaN', E'tab\\there', '{\"k\": [1, 2.50]}', '\\x00ff', 'infinity', "
    "'[0:1]={7,8}', '[1,10)'),"
    "(2, '-0.000000000000000000001', '-0', '', 'null', '', '2024-02-29 12:00:00.123456+05:30', "
    "'{{1,2},{3,NULL}}', 'empty'),"
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
)
ROWS = "SELECT row_text::text FROM {} AS row_text ORDER BY 1"


@pytest.fixture(autouse=True)
def _info_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def make_source(dsn: str, **kwargs: Any) -> CdcSource:
    options: dict[str, Any] = {
        "slot": random_name("slot"),
        "publication": random_name("pub"),
        "status_interval": 0.2,
        "snapshot_format": "binary",
    }
    options.update(kwargs)
    return CdcSource(dsn, **options)


async def _same(source: str, target: str, table: str) -> bool:
    query = ROWS.format(table)
    try:
        return [tuple(r) for r in await fetch(source, query)] == [
            tuple(r) for r in await fetch(target, query)
        ]
    except Exception:  # the target table does not exist yet
        return False


async def test_binary_snapshot_copies_every_value_exactly_then_streams(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        TYPED + "; CREATE TYPE mood AS ENUM ('ok', 'sad');"
        "CREATE TABLE moods (id int PRIMARY KEY, m mood); INSERT INTO moods VALUES (1, 'sad');"
        "CREATE TABLE loose (v text); INSERT INTO loose VALUES ('a'), ('a')",
    )
    await execute(target_db, "CREATE TYPE mood AS ENUM ('ok', 'sad')")
    await execute(cdc_db, "ALTER TABLE loose REPLICA IDENTITY FULL")
    source = make_source(cdc_db, tables=["typed", "moods", "loose"])
    sink = ApplySink(target_db, create=True)
    pipeline = Pipeline(
        "binary",
        source,
        sink,
        checkpoints=PostgresCheckpointStore(target_db),
        max_batch_size=2,
        max_batch_age=0.05,
    )

    async def drive() -> None:
        await wait_for(lambda: streaming(cdc_db, source.slot))
        await execute(cdc_db, "INSERT INTO typed (id, t) VALUES (4, 'streamed')")
        await execute(cdc_db, "UPDATE typed SET t = 'changed' WHERE id = 3")
        for table in ("typed", "moods", "loose"):
            await wait_for(functools.partial(_same, cdc_db, target_db, table))
        pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await pipeline.run()
    for table in ("typed", "moods", "loose"):
        assert await _same(cdc_db, target_db, table)
    assert [r[0] for r in await fetch(target_db, "SELECT a::text FROM typed ORDER BY id")] == [
        "[0:1]={7,8}",
        "{{1,2},{3,NULL}}",
        None,
        None,
    ]
    types = (
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'typed'::regclass AND attnum > 0 ORDER BY attnum"
    )
    assert [tuple(r) for r in await fetch(target_db, types)] == [
        tuple(r) for r in await fetch(cdc_db, types)
    ]


async def test_binary_snapshot_pages_resume_after_the_last_committed_one(cdc_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TYPE mood AS ENUM ('ok');"
        "CREATE TABLE b (id int PRIMARY KEY, m mood);"
        "INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 12) g;"
        "INSERT INTO b VALUES (1, 'ok')",
    )
    # A table's first page has max_chunk rows; each next one what 80 bytes held before:
    # 'v1'…'v5' are 16 bytes a row, 5 rows; 'v6'…'v10' 81 bytes, 4 rows next.
    source = make_source(cdc_db, tables=["a", "b"], snapshot_page_bytes=80)
    try:
        first, positions = await take(source, 10, max_chunk=5)
    finally:
        await source.aclose()
    # Each row one record, all of a page the same one; pages end at key order (10 after 9).
    pages: list[Any] = list(dict.fromkeys(first))
    assert [type(p).__name__ for p in pages] == ["SnapshotPage", "SnapshotPage"]
    assert [p.page.rows for p in pages] == [5, 5]
    assert [p["snapshot"] for p in positions] == [  # type: ignore[call-overload,index]
        {"table": ["public", "a"], "after": ["5"]},
        {"table": ["public", "a"], "after": ["10"]},
    ]
    resumed = CdcSource(
        cdc_db,
        slot=source.slot,
        publication=source.publication,
        tables=["a", "b"],
        status_interval=0.2,
        snapshot_format="binary",
        snapshot_page_bytes=80,
    )
    try:
        rest, rest_positions = await take(resumed, 3, after=positions[-1], max_chunk=5)
    finally:
        await resumed.aclose()
    # The rest of a as one page of 2, then b (an enum: not built in) as a change event.
    page: Any = rest[0]
    assert isinstance(page, SnapshotPage)
    assert page.page.rows == 2
    assert [(e.op, e.after) for e in rest[2:]] == [("r", {"id": 1, "m": "ok"})]
    assert rest_positions[0]["snapshot"] == {"table": ["public", "b"], "after": None}  # type: ignore[call-overload,index]


async def test_pages_of_a_two_column_key_end_at_key_order_and_resume_exactly(
    cdc_db: str, target_db: str
) -> None:
    # Text before integer in the key: 'a',10 comes after 'a',9, and 'b',1 after 'a',10.
    await execute(
        cdc_db,
        "CREATE TABLE pairs (k text, n int, v text, PRIMARY KEY (k, n));"
        "INSERT INTO pairs SELECT k, n, k || n FROM unnest(ARRAY['a', 'b']) k, "
        "generate_series(1, 10) n",
    )
    # 21 bytes a row ('a9' in v), 147 bytes a page of 7.
    source = make_source(cdc_db, tables=["pairs"], snapshot_page_bytes=147)
    try:
        first, positions = await take(source, 14, max_chunk=7)
    finally:
        await source.aclose()
    assert [p["snapshot"] for p in positions] == [  # type: ignore[call-overload,index]
        {"table": ["public", "pairs"], "after": ["a", "7"]},
        {"table": ["public", "pairs"], "after": ["b", "4"]},
    ]
    resumed = make_source(
        cdc_db,
        tables=["pairs"],
        slot=source.slot,
        publication=source.publication,
        snapshot_page_bytes=147,
    )
    try:
        rest, rest_positions = await take(resumed, 6, after=positions[-1], max_chunk=7)
    finally:
        await resumed.aclose()
    assert [p.page.rows for p in dict.fromkeys(rest)] == [6]  # type: ignore[attr-defined]
    assert "snapshot" not in rest_positions[-1]  # type: ignore[operator]
    sink = ApplySink(target_db, create=True)
    await sink.open()
    try:
        await sink.write(Batch(0, [*first, *rest], None))
    finally:
        await sink.aclose()
    assert await _same(cdc_db, target_db, "pairs")


async def test_a_replayed_page_merges_over_the_rows_it_wrote(cdc_db: str, target_db: str) -> None:
    await execute(cdc_db, TYPED)
    source = make_source(cdc_db, tables=["typed"])
    try:
        records, _ = await take(source, 3, max_chunk=10)
    finally:
        await source.aclose()
    for _ in range(2):  # as a run that crashed before its checkpoint replays the batch
        sink = ApplySink(target_db, create=True)
        await sink.open()
        try:
            await sink.write(Batch(0, records, None))
        finally:
            await sink.aclose()
    assert await _same(cdc_db, target_db, "typed")


async def test_binary_snapshot_refuses_a_target_of_other_column_types(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, TYPED)
    await execute(
        target_db,
        "CREATE TABLE typed (id bigint PRIMARY KEY, n numeric, f float4, t text, j jsonb, "
        "b bytea, at timestamptz, a int[], r int4range)",
    )
    source = make_source(cdc_db, tables=["typed"])
    pipeline = Pipeline("binary", source, ApplySink(target_db), max_batch_size=10)
    with pytest.raises(StageError) as caught:
        await pipeline.run()
    assert isinstance(caught.value.__cause__, PermanentError)
    assert str(caught.value.__cause__) == (
        "a binary snapshot needs the source's column types in the target, and these differ: "
        "f (double precision in public.typed, real in public.typed); "
        'set the source\'s snapshot_format = "events"'
    )
    assert await fetch(target_db, "SELECT * FROM typed") == []


def test_snapshot_format_is_events_or_binary() -> None:
    with pytest.raises(ConfigError) as caught:
        CdcSource("postgresql://u@h/d", slot="s", publication="p", snapshot_format="text")  # type: ignore[arg-type]
    assert str(caught.value) == "snapshot_format: must be 'events' or 'binary', not 'text'"


async def test_pages_after_the_first_hold_about_snapshot_page_bytes_and_resume_after_one(
    cdc_db: str, target_db: str
) -> None:
    # 104 bytes a row: 2 (field count), 4 + 4 (id), 4 + 90 (v).
    await execute(
        cdc_db,
        "CREATE TABLE wide (id int PRIMARY KEY, v text);"
        "INSERT INTO wide SELECT g, repeat('x', 90) FROM generate_series(1, 25) g",
    )
    source = make_source(cdc_db, tables=["wide"], snapshot_page_bytes=1000)
    try:
        first, positions = await take(source, 25, max_chunk=2)
    finally:
        await source.aclose()
    pages: list[Any] = list(dict.fromkeys(first))
    # max_chunk rows first, then as many rows as 1000 bytes held: 1000 // 104.
    assert [(p.page.rows, len(p.page.data)) for p in pages] == [
        (2, 208),
        (9, 936),
        (9, 936),
        (5, 520),
    ]
    assert [p.get("snapshot") for p in positions] == [  # type: ignore[union-attr]
        {"table": ["public", "wide"], "after": ["2"]},
        {"table": ["public", "wide"], "after": ["11"]},
        {"table": ["public", "wide"], "after": ["20"]},
        None,
    ]
    # A crash after the second page committed: the rerun reads from row 12 on, its first
    # page max_chunk rows again.
    resumed = make_source(
        cdc_db,
        tables=["wide"],
        slot=source.slot,
        publication=source.publication,
        snapshot_page_bytes=1000,
    )
    try:
        rest, rest_positions = await take(resumed, 14, after=positions[1], max_chunk=2)
    finally:
        await resumed.aclose()
    assert [p.page.rows for p in dict.fromkeys(rest)] == [2, 9, 3]  # type: ignore[attr-defined]
    assert "snapshot" not in rest_positions[-1]  # type: ignore[operator]
    sink = ApplySink(target_db, create=True)
    await sink.open()
    try:
        await sink.write(Batch(0, first[:11], None))
        await sink.write(Batch(1, rest, None))
    finally:
        await sink.aclose()
    assert await _same(cdc_db, target_db, "wide")


async def test_a_snapshot_batch_is_a_page_while_stream_batches_stay_small(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE wide (id int PRIMARY KEY, v text);"
        "INSERT INTO wide SELECT g, repeat('x', 90) FROM generate_series(1, 25) g",
    )
    source = make_source(cdc_db, tables=["wide"], snapshot_page_bytes=1000)
    sink = ApplySink(target_db, create=True)
    sizes: list[int] = []
    write = sink.write

    async def counting(batch: Batch[Any]) -> Any:
        sizes.append(len(batch.records))
        return await write(batch)

    sink.write = counting  # type: ignore[method-assign]
    pipeline = Pipeline("pages", source, sink, max_batch_size=2, max_batch_age=0.05)

    async def drive() -> None:
        await wait_for(lambda: streaming(cdc_db, source.slot))
        await execute(
            cdc_db,
            "BEGIN; INSERT INTO wide SELECT g, 'new' FROM generate_series(26, 31) g; COMMIT",
        )
        await wait_for(functools.partial(_same, cdc_db, target_db, "wide"))
        pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await pipeline.run()
    assert sizes[:4] == [2, 9, 9, 5]
    assert sum(sizes[4:]) == 6
    # Stream batches stay near max_batch_size, not a page's size: a batch closes once it
    # holds 2 or more, and a chunk of the stream holds at most 2 (max_chunk), so a chunk
    # of 1 (the transaction's bytes arriving in two reads) then one of 2 make 3.
    assert max(sizes[4:]) <= 3


@pytest.mark.parametrize("value", [0, -1, True, 4.5, "4MiB", (1 << 30) + 1])
def test_snapshot_page_bytes_is_a_whole_number_of_bytes_up_to_a_gibibyte(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        CdcSource("postgresql://u@h/d", slot="s", publication="p", snapshot_page_bytes=value)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "snapshot_page_bytes: must be a whole number of bytes from 1 to 1073741824 (1 GiB), "
        f"not {value!r}"
    )


async def test_a_page_larger_than_one_send_arrives_whole(cdc_db: str, target_db: str) -> None:
    # About 650 KB in one page: sent to the target in several slices.
    await execute(
        cdc_db,
        "CREATE TABLE big (id int PRIMARY KEY, v text);"
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 3000) g",
    )
    source = make_source(cdc_db, tables=["big"])
    try:
        records, _ = await take(source, 3000, max_chunk=5000)
    finally:
        await source.aclose()
    (page,) = dict.fromkeys(records)
    assert (page.page.rows, len(page.page.data)) == (3000, 3000 * (2 + 8 + 4 + 192))  # type: ignore[attr-defined]
    sink = ApplySink(target_db, create=True)
    await sink.open()
    try:
        await sink.write(Batch(0, records, None))
    finally:
        await sink.aclose()
    assert await _same(cdc_db, target_db, "big")


async def test_the_end_of_the_snapshot_is_committed_without_waiting_for_the_batch_age(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE quick (id int PRIMARY KEY, v text);"
        "INSERT INTO quick SELECT g, 'v' || g FROM generate_series(1, 25) g",
    )
    source = make_source(cdc_db, tables=["quick"])
    pipeline = Pipeline(
        "quick",
        source,
        ApplySink(target_db, create=True),
        checkpoints=PostgresCheckpointStore(target_db),
        # The snapshot's one page, and last chunk, is smaller than a batch, and nothing
        # streams after it: only its end closes the batch before its age.
        max_batch_size=100,
        max_batch_age=60,
    )

    async def snapshot_done() -> bool:
        try:
            rows = await fetch(target_db, "SELECT position::text FROM asyncetl_checkpoints")
        except asyncpg.UndefinedTableError:
            return False
        return bool(rows) and "snapshot" not in orjson.loads(rows[0][0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await wait_for(snapshot_done, seconds=15)
        pipeline.stop()
    assert await _same(cdc_db, target_db, "quick")
    (position,) = [
        orjson.loads(r[0])
        for r in await fetch(target_db, "SELECT position::text FROM asyncetl_checkpoints")
    ]
    assert position["slot"] == source.slot
    assert "snapshot" not in position
