"""Tables without a key through pg_copy: every value exactly, arrays' lower bounds included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import PostgresSink, TableSource, TablesSink, TablesSource
from asyncetl.core.batch import JsonValue
from asyncetl.core.errors import RESET_HINT, ConfigError
from asyncetl.spec import build_pipeline
from tests.connectors.postgres.helpers import batch, execute, rows
from tests.connectors.postgres.test_source import read_all
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


def page_by_page(source_dsn: str, target: str, *, batch_size: int = 2) -> Pipeline:
    """A copy of table ``t``, one distinct row a read and ``batch_size`` rows a batch."""
    source = TablesSource(source_dsn, "t", chunk_size=1)
    sink = TablesSink(target, tables="t", source_dsn=source_dsn)
    return Pipeline("keyless", source, sink, max_batch_size=batch_size)


async def test_keyless_arrays_with_bounds_resume_page_after_page(pg_database: str) -> None:
    """Pages of one distinct row: each position holds arrays with bounds, read back exactly."""
    await execute(pg_database, KEYLESS)
    target = await make_target(pg_database)
    try:
        stats = await page_by_page(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (6, 0)
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        await execute(pg_database, "INSERT INTO t VALUES (0, '[5:5]={1}', '{}', '{}')")
        stats = await page_by_page(pg_database, target).run()
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


#: Values that compare equal but differ, or that have no ordering at all; each
#: column's odd values in rows otherwise NULL, so only that value tells them apart.
EQUAL_BUT_NOT_SAME = r"""
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE t (f float8, n numeric, c citext, j json, x xml, p point, ja json[]);
INSERT INTO t (f) VALUES ('NaN'), (NULL), ('Infinity'), ('-Infinity'), ('-0'), ('0'), ('NaN');
INSERT INTO t (n) VALUES ('1.0'), ('1.00'), ('NaN'), ('1.0');
INSERT INTO t (c) VALUES ('A'), ('a'), ('a');
INSERT INTO t (j) VALUES ('{"a":1}'), ('{"a": 1}'), ('{"a": 1}');
INSERT INTO t (x) VALUES ('<a/>'), ('<a />'), ('text');
INSERT INTO t (p) VALUES ('(1,2)'), ('(1,2)'), ('(-0,2)');
INSERT INTO t (ja) VALUES ('{"{\"a\":1}","{\"a\": 1}",NULL}'), ('{}'), ('[0:0]={"[]"}');
INSERT INTO t VALUES ('-0', '1.000', 'B', '[]', '<b/>', '(0,0)', '{"{}"}');
"""
ROWS_EXACT = "SELECT row(f, n, c, j, x, p, ja)::text FROM t ORDER BY 1"


async def test_pg_copy_keeps_keyless_values_that_are_equal_but_not_the_same(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouped by their text, NaN, NULL, ±Infinity, -0 and 0 stay six rows (and NaN
    twice), 1.0 is not 1.00, 'A' not 'a'; json, xml and point, with no ordering, are read."""
    await execute(pg_database, EQUAL_BUT_NOT_SAME)
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        stats = await build_pipeline(EXAMPLE).run()
        assert (stats.records_out, stats.unchanged) == (27, 0)
        source_rows = await rows(pg_database, ROWS_EXACT)
        assert len(source_rows) == 27
        assert await rows(target, ROWS_EXACT) == source_rows
        written = await rows(target, VERSIONS)
        stats = await build_pipeline(EXAMPLE).run()
        assert (stats.records_out, stats.unchanged) == (0, 27)
        assert await rows(target, VERSIONS) == written
    finally:
        await drop(pg_database, target)


async def test_keyless_values_resume_exactly_page_after_page(pg_database: str) -> None:
    """One distinct row a page: every position holds the text of a value that compares
    equal to another (or cannot be compared), and the next page starts right after it."""
    await execute(pg_database, EQUAL_BUT_NOT_SAME)
    target = await make_target(pg_database)
    try:
        stats = await page_by_page(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (27, 0)
        assert await rows(target, ROWS_EXACT) == await rows(pg_database, ROWS_EXACT)
        await execute(pg_database, "INSERT INTO t (f, n) VALUES ('-0', '1.0000')")
        stats = await page_by_page(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (1, 27)
        assert await rows(target, ROWS_EXACT) == await rows(pg_database, ROWS_EXACT)
    finally:
        await drop(pg_database, target)


async def test_keyless_positions_hold_the_text_of_values_that_are_equal(
    pg_database: str,
) -> None:
    """Ordered by text in bytes: '-0' < '0' < 'NaN' < NULL, '{ }' < '{}'."""
    await execute(
        pg_database,
        "CREATE TABLE t (i int NOT NULL, f float8, j json);"
        "INSERT INTO t VALUES (1, 'NaN', '{}'), (1, '-0', '{}'), (1, '0', '{}'), (1, NULL, '{}'),"
        "(1, '0', '{ }'), (1, '0', '{ }')",
    )
    chunks = await read_all(TableSource(pg_database, "t", chunk_size=2))
    positions = [c.position for c in chunks]
    got = [repr([(r["f"], r["j"]) for r in c.records]) for c in chunks]
    afters = [p["after"] for p in positions if isinstance(p, dict)]
    assert list(zip(got, afters, strict=True)) == [
        ("[(-0.0, '{}'), (0.0, '{ }'), (0.0, '{ }')]", ["1", "0", "{ }"]),
        ("[(0.0, '{}'), (nan, '{}')]", ["1", "NaN", "{}"]),
        ("[(None, '{}')]", ["1", None, "{}"]),
    ]
    assert chunks[0].position == {
        "table": "t",
        "order": ["i", "f", "j"],
        "after": ["1", "0", "{ }"],
        "as_text": ["f", "j"],
    }


async def test_a_keyless_position_ordered_by_value_is_refused(pg_database: str) -> None:
    """Written before such columns were ordered by their text, it means other rows."""
    await execute(pg_database, "CREATE TABLE t (i int, f float8); INSERT INTO t VALUES (1, 0)")
    before: JsonValue = {"table": "t", "order": ["i", "f"], "after": ["1", "-0"]}
    with pytest.raises(ConfigError) as caught:
        await read_all(TableSource(pg_database, "t"), before)
    assert str(caught.value) == (
        "TableSource 't': position: cannot resume from the committed position "
        '{"table":"t","order":["i","f"],"after":["1","-0"]}: it orders by the text of the '
        'columns [], this version by the text of ["f"] (rows without a key that differ but '
        "compare equal are told apart now); to read from the start, " + RESET_HINT
    )


async def test_keyless_values_are_exact_whatever_the_session_prints(pg_database: str) -> None:
    """Floats grouped by their text stay apart where the database prints them short, and a
    domain over an array is read whole (its text cast back, no array of arrays)."""
    name = pg_database.rsplit("/", 1)[1]
    await execute(
        pg_database,
        f'ALTER DATABASE "{name}" SET extra_float_digits = 0;'
        "CREATE DOMAIN ints AS integer[];"
        "CREATE TABLE t (f float8, d ints);"
        "INSERT INTO t VALUES (1, '{1,2}'), (1.0000000000000002, '{{1},{2}}'), (1, '{1,2}')",
    )
    chunks = await read_all(TableSource(pg_database, "t", chunk_size=1))
    assert [(c.records, c.position) for c in chunks] == [
        (
            [{"f": 1.0, "d": [1, 2]}, {"f": 1.0, "d": [1, 2]}],
            {"table": "t", "order": ["f", "d"], "after": ["1", "{1,2}"], "as_text": ["f", "d"]},
        ),
        (
            [{"f": 1.0000000000000002, "d": [[1], [2]]}],
            {
                "table": "t",
                "order": ["f", "d"],
                "after": ["1.0000000000000002", "{{1},{2}}"],
                "as_text": ["f", "d"],
            },
        ),
    ]
