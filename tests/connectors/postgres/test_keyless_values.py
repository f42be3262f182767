"""Tables without a key through pg_copy: every value exactly, arrays' lower bounds included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import PostgresSink, TablesSink, TablesSource
from asyncetl.spec import build_pipeline
from tests.connectors.postgres.helpers import batch, execute, rows
from tests.connectors.postgres.test_type_fidelity import (
    EXAMPLE,
    drop,
    example_reading,
    make_target,
)

pytestmark = pytest.mark.anyio

KEYLESS = r"""
CREATE TABLE t (n integer, a integer[], m integer[], s text[]);
INSERT INTO t VALUES
    (1, '[0:1]={7,8}', '[0:1][2:3]={{1,2},{3,4}}', '[-1:1]={x,NULL,"y z"}'),
    (1, '{7,8}', '[0:1][2:3]={{1,2},{3,4}}', '[-1:1]={x,NULL,"y z"}'),
    (2, '{7,8}', '{{1,2},{3,NULL}}', '{"a b",NULL,"\\N",""}'),
    (3, '{}', '{NULL}', '{}'),
    (4, NULL, NULL, NULL),
    (4, NULL, NULL, NULL)
"""
#: The source's rows as text; the target's, without its _row_hash column.
ROWS = "SELECT row(n, a, m, s)::text FROM t ORDER BY 1"
VERSIONS = "SELECT xmin::text, _row_hash FROM t ORDER BY 2"
#: The hashes of the two (4, NULL, NULL, NULL) rows, as asyncetl wrote them before
#: arrays were read as text: a target copied then sees no change in them.
HASHES_BEFORE = [("dd0cfa43310802507d3532a37afeab27",), ("e026b889ad1781dfbe0cbec785a31fb1",)]


@pytest.mark.parametrize("form", ["records", "copy", "binary"])
async def test_pg_copy_keeps_the_bounds_of_a_keyless_tables_arrays(
    form: str, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Keyless tables are read as records whatever the format; a re-run writes nothing."""
    await execute(pg_database, KEYLESS)
    target = await make_target(pg_database)
    spec = example_reading(form, tmp_path)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        stats = await build_pipeline(spec).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert await rows(target, ROWS) == [
            ('(1,"[0:1]={7,8}","[0:1][2:3]={{1,2},{3,4}}","[-1:1]={x,NULL,""y z""}")',),
            ('(1,"{7,8}","[0:1][2:3]={{1,2},{3,4}}","[-1:1]={x,NULL,""y z""}")',),
            (r'(2,"{7,8}","{{1,2},{3,NULL}}","{""a b"",NULL,""\\\\N"",""""}")',),
            ("(3,{},{NULL},{})",),
            ("(4,,,)",),
            ("(4,,,)",),
        ]
        assert (stats.records_out, stats.unchanged) == (6, 0)
        hashes = "SELECT _row_hash FROM t WHERE n = 4 ORDER BY 1"
        assert await rows(target, hashes) == HASHES_BEFORE
        written = await rows(target, VERSIONS)
        stats = await build_pipeline(spec).run()
        assert (stats.records_out, stats.unchanged) == (0, 6)
        assert await rows(target, VERSIONS) == written
    finally:
        await drop(pg_database, target)


async def test_keyless_arrays_with_bounds_resume_page_after_page(pg_database: str) -> None:
    """Pages of one distinct row: each position holds arrays with bounds, read back exactly."""
    await execute(pg_database, KEYLESS)
    target = await make_target(pg_database)
    try:

        def copy() -> Pipeline:
            source = TablesSource(pg_database, "t", chunk_size=1)
            sink = TablesSink(target, tables="t", source_dsn=pg_database)
            return Pipeline("keyless", source, sink, max_batch_size=2)

        stats = await copy().run()
        assert (stats.records_out, stats.unchanged) == (6, 0)
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        await execute(pg_database, "INSERT INTO t VALUES (0, '[5:5]={1}', '{}', '{}')")
        stats = await copy().run()
        assert (stats.records_out, stats.unchanged) == (1, 6)
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
    finally:
        await drop(pg_database, target)


async def test_append_with_row_hash_numbers_identical_rows_holding_lists(
    pg_database: str,
) -> None:
    """A list is no dict key, yet identical rows holding one are numbered apart, hashed as
    ``row_hash`` always hashed them; rows without lists keep the hashes they had."""
    await execute(pg_database, "CREATE TABLE t (id integer, tags integer[], _row_hash text UNIQUE)")
    records: list[dict[str, Any]] = [
        {"id": 1, "tags": [1, 2]},
        {"id": 1, "tags": [1, 2]},
        {"id": 2, "tags": None},
    ]
    sink = PostgresSink(pg_database, "t", mode="append", row_hash=["*"])
    await sink.open()
    try:
        assert await sink.write(batch(records)) == []
        assert await sink.write(batch(records, 1)) == []
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT id, tags, _row_hash FROM t ORDER BY 3") == [
        (1, [1, 2], "9f63d33b0ebbff6254a350353c394506"),
        (1, [1, 2], "d1215babeacc36643a36c1979141415e"),
        (2, None, "f6520e102f955d7223070534b25ab53a"),
    ]


async def test_pg_copy_hashes_the_rows_of_a_keyless_table_with_time_zones(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson refuses a time with a zone: the row hash takes its ISO text."""
    await execute(
        pg_database,
        "CREATE TABLE t (n integer, z timetz, zs timetz[]);"
        "INSERT INTO t VALUES (1, '12:34:56.789+05:30', '{12:00+01,NULL}'),"
        "(1, '12:34:56.789+05:30', '{12:00+01,NULL}'), (2, '00:00:00-12', NULL), (3, NULL, '{}')",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        stats = await build_pipeline(EXAMPLE).run()
        assert (stats.records_out, stats.unchanged) == (4, 0)
        zoned = "SELECT row(n, z, zs)::text FROM t ORDER BY 1"
        assert await rows(target, zoned) == await rows(pg_database, zoned)
        assert len(await rows(target, zoned)) == 4
        stats = await build_pipeline(EXAMPLE).run()
        assert (stats.records_out, stats.unchanged) == (0, 4)
    finally:
        await drop(pg_database, target)
