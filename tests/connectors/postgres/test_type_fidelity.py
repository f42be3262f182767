"""Every PostgreSQL type through pg_copy, exactly: the row text of source and target agree."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from asyncetl import Batch, ConfigError, PermanentError, Pipeline
from asyncetl.connectors.postgres import PostgresSink, TableSource
from asyncetl.spec import build_pipeline
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parents[3] / "examples" / "pg_copy.toml"

SETUP = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);
"""

#: (column type, SQL literals of its values; NULL is added to each).
TYPES: dict[str, tuple[str, list[str]]] = {
    "numeric": (
        "numeric",
        [
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'1234567890.123456789012345678901234567890'",
            "'-0.000000000000000000001'",
        ],
    ),
    "numeric_typmod": ("numeric(12,4)", ["'12.3400'", "'-99999999.9999'"]),
    "float4": (
        "real",
        ["'Infinity'", "'-Infinity'", "'NaN'", "'-0'", "'1.17549435e-38'", "'3.4028235e38'"],
    ),
    "float8": (
        "double precision",
        ["'Infinity'", "'-Infinity'", "'NaN'", "'-0'", "'2.2250738585072014e-308'", "'0.1'"],
    ),
    "date": ("date", ["'infinity'", "'-infinity'", "'2024-02-29'", "'4713-01-01 BC'"]),
    "timestamp": ("timestamp", ["'infinity'", "'-infinity'", "'2024-02-29 12:00:00.123456'"]),
    "timestamptz": (
        "timestamptz",
        ["'infinity'", "'-infinity'", "'2024-02-29 12:00:00.123456+05:30'"],
    ),
    "time": ("time", ["'00:00'", "'23:59:59.999999'", "'24:00:00'"]),
    "timetz": ("timetz", ["'12:34:56.789+05:30'", "'00:00:00-12'"]),
    "interval": ("interval", ["'1 year 2 mons 3 days 04:05:06.789'", "'-1 mons +40 days'", "'0'"]),
    "money": ("money", ["'12.34'", "'-92233720368547758.08'"]),
    "bit": ("bit(5)", ["B'10101'"]),
    "varbit": ("bit varying(10)", ["B'1'", "B''", "B'1010101010'"]),
    "bytea": ("bytea", ["'\\x00ff5c4e'", "''"]),
    "uuid": ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    "json": ("json", ['\'{"b": 1,  "a": [1, 2.50]}\'', "'null'", "'\"s\"'"]),
    "jsonb": ("jsonb", ['\'{"b": 1, "a": [1, 2.50]}\'', "'null'", "'[]'"]),
    "json_array": ("json[]", ["ARRAY['{\"a\": 1}', 'null']::json[]", "'{}'"]),
    "jsonb_array": ("jsonb[]", ["ARRAY['{\"a\": 1}', '[1]']::jsonb[]"]),
    "xml": ("xml", ["'<a b=\"1\">x</a>'", "'text only'"]),
    "inet": ("inet", ["'192.168.0.1/24'", "'::1'", "'10.0.0.1'"]),
    "cidr": ("cidr", ["'10.0.0.0/8'", "'2001:db8::/32'"]),
    "macaddr": ("macaddr", ["'08:00:2b:01:02:03'"]),
    "macaddr8": ("macaddr8", ["'08:00:2b:01:02:03:04:05'"]),
    "tsvector": ("tsvector", ["'a:1A fat:2B,4C cat:5D'", "''"]),
    "tsquery": ("tsquery", ["'fat & (rat | cat)'", "'!a <-> b'"]),
    "point": ("point", ["'(1.5,-2)'"]),
    "line": ("line", ["'{1,2,3}'"]),
    "lseg": ("lseg", ["'[(0,0),(1,1)]'"]),
    "box": ("box", ["'(1,1),(0,0)'"]),
    "path": ("path", ["'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1))'"]),
    "polygon": ("polygon", ["'((0,0),(1,1),(1,0))'"]),
    "circle": ("circle", ["'<(1,2),3>'"]),
    "int4range": ("int4range", ["'[1,10)'", "'empty'", "'(,5]'"]),
    "tstzrange": ("tstzrange", ["'[2024-01-01 00:00+00,infinity)'"]),
    "numrange": ("numrange", ["'(1.5,2.5]'"]),
    "int4multirange": ("int4multirange", ["'{[1,3), [5,8)}'", "'{}'"]),
    "enum": ("mood", ["'happy'"]),
    "enum_array": ("mood[]", ["'{sad,NULL,ok}'"]),
    "domain": ("positive", ["42"]),
    "composite": ("pair", ["ROW(1, 'x y')::pair", "ROW(NULL, NULL)::pair"]),
    "int_array_2d": ("integer[]", ["'{{1,2},{3,NULL}}'", "'{}'", "'{NULL}'", "'[0:1]={7,8}'"]),
    "text_array": ("text[]", ['\'{"a b",NULL,"\\\\N",""}\'']),
    "timetz_array": ("timetz[]", ["'{12:00+01,NULL}'"]),
    "citext": ("citext", ["'MiXeD'"]),
    "hstore": ("hstore", ["'a=>1, \"b c\"=>NULL'"]),
}


async def make_source(dsn: str, sql_type: str, values: list[str]) -> None:
    literals = [*values, "NULL"]
    inserts = ", ".join(f"({i}, {v})" for i, v in enumerate(literals, 1))
    await execute(
        dsn,
        SETUP + f"CREATE TABLE t (id integer PRIMARY KEY, v {sql_type});"
        f"INSERT INTO t VALUES {inserts}",
    )


async def make_target(dsn: str) -> str:
    target = dsn + "_target"
    await execute(dsn, f'CREATE DATABASE "{target.rsplit("/", 1)[1]}"')
    await execute(target, SETUP)
    return target


async def drop(dsn: str, target: str) -> None:
    await execute(dsn, f'DROP DATABASE IF EXISTS "{target.rsplit("/", 1)[1]}" WITH (FORCE)')


ROWS = "SELECT id, row(t.*)::text FROM t ORDER BY id"
VERSIONS = "SELECT id, xmin::text FROM t ORDER BY id"


def example_reading(form: str, tmp_path: Path) -> Path:
    """The example, its source reading ``form`` (``binary`` as shipped, ``copy`` or ``records``)."""
    spec = EXAMPLE.read_text()
    shipped = '\nformat = "binary"\n'
    assert spec.count(shipped) == 1
    path = tmp_path / "pg_copy.toml"
    path.write_text(spec.replace(shipped, f'\nformat = "{form}"\n'))
    return path


async def test_pg_copy_keeps_every_value_of_every_type(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example as shipped (COPY lines), all types in one table: row n holds each value n."""
    depth = max(len(values) for _, values in TYPES.values()) + 1
    columns = ", ".join(f"v_{name} {sql_type}" for name, (sql_type, _) in TYPES.items())
    inserts = ", ".join(
        "("
        + ", ".join([str(n), *(v[n] if n < len(v) else "NULL" for _, v in TYPES.values())])
        + ")"
        for n in range(depth)
    )
    await execute(
        pg_database,
        SETUP
        + f"CREATE TABLE t (id integer PRIMARY KEY, {columns}); INSERT INTO t VALUES {inserts}",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        stats = await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert (stats.records_out, stats.unchanged) == (depth, 0)
        # Again, with one row missing in the target: only that row is written.
        await execute(target, "DELETE FROM t WHERE id = 1")
        kept = await rows(target, VERSIONS)
        stats = await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert [row for row in await rows(target, VERSIONS) if row[0] != 1] == kept
        assert (stats.records_out, stats.unchanged) == (1, depth - 1)
        types = "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum"
        assert await rows(target, types) == await rows(pg_database, types)
    finally:
        await drop(pg_database, target)


@pytest.mark.parametrize("name", list(TYPES))
async def test_pg_copy_reading_records_keeps_every_value(
    name: str, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sql_type, values = TYPES[name]
    spec = example_reading("records", tmp_path)
    await make_source(pg_database, sql_type, values)
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        first = build_pipeline(spec)
        stats = await first.run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert (stats.records_out, stats.unchanged) == (len(values) + 1, 0)
        # A second run merges every row again, compared in the server as text: only
        # the row missing from the target is written, no other is rewritten.
        await execute(target, "DELETE FROM t WHERE id = 1")
        kept = await rows(target, VERSIONS)
        stats = await build_pipeline(spec).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert (await rows(target, VERSIONS))[1:] == kept
        assert (stats.records_out, stats.unchanged) == (1, len(values))
        column = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'v'"
        assert await rows(target, column) == await rows(pg_database, column)
    finally:
        await drop(pg_database, target)


@pytest.mark.parametrize("name", list(TYPES))
async def test_copy_format_keeps_every_value(name: str, pg_database: str) -> None:
    sql_type, values = TYPES[name]
    await make_source(pg_database, sql_type, values)
    target = await make_target(pg_database)
    try:
        source = TableSource(pg_database, "t", chunk_size=2, format="copy")
        sink = PostgresSink(target, "t", create=True, source_dsn=pg_database, source_table="t")
        await Pipeline("copy", source, sink, max_batch_size=3).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
    finally:
        await drop(pg_database, target)


async def test_pg_copy_writes_into_an_existing_target_without_a_hash_column(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = "CREATE TABLE t (id integer PRIMARY KEY, v point, j json)"
    await execute(
        pg_database, table + "; INSERT INTO t VALUES (1, '(1,2)', '{\"a\": 1}'), (2, NULL, NULL)"
    )
    target = await make_target(pg_database)
    try:
        await execute(target, table + "; INSERT INTO t VALUES (1, '(0,0)', '[]')")
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        written = await rows(target, VERSIONS)
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, VERSIONS) == written
        columns = "SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0"
        assert await rows(target, columns) == [("id",), ("v",), ("j",)]
    finally:
        await drop(pg_database, target)


async def test_pg_copy_fills_a_target_whose_columns_are_in_another_order(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id integer PRIMARY KEY, a text, b integer);"
        "INSERT INTO t VALUES (1, 'x', 10), (2, NULL, 20)",
    )
    target = await make_target(pg_database)
    try:
        await execute(target, "CREATE TABLE t (b integer, a text, id integer PRIMARY KEY)")
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, "SELECT id, a, b FROM t ORDER BY id") == [
            (1, "x", 10),
            (2, None, 20),
        ]
    finally:
        await drop(pg_database, target)


def test_skip_unchanged_is_for_upsert() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresSink("postgresql://u@h/d", "t", mode="append", skip_unchanged=True)
    assert (
        str(caught.value) == "sink postgres: skip_unchanged: is for mode = \"upsert\", not 'append'"
    )


async def test_interval_columns_take_timedelta_and_interval_text(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE i (id integer PRIMARY KEY, d interval)")
    sink = PostgresSink(pg_database, "i")
    await sink.open()
    try:
        records: list[dict[str, Any]] = [
            {"id": 1, "d": timedelta(days=-1, seconds=3, microseconds=5)},
            {"id": 2, "d": "1 mon 2 days"},
            {"id": 3, "d": None},
        ]
        assert await sink.write(Batch(0, records, 0)) == []
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT id, d::text FROM i ORDER BY id") == [
        (1, "-1 days +00:00:03.000005"),
        (2, "1 mon 2 days"),
        (3, None),
    ]


async def test_pg_copy_creates_generated_columns_and_never_writes_them(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id integer PRIMARY KEY, a integer NOT NULL, "
        "g integer GENERATED ALWAYS AS (a * 2) STORED);"
        "INSERT INTO t (id, a) VALUES (1, 5), (2, 7)",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        await execute(pg_database, "UPDATE t SET a = 8 WHERE id = 2")
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == [(1, "(1,5,10)"), (2, "(2,8,16)")]
        generated = (
            "SELECT attname, attgenerated, attnotnull FROM pg_attribute "
            "WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum"
        )
        assert await rows(target, generated) == await rows(pg_database, generated)
    finally:
        await drop(pg_database, target)


async def test_pg_copy_keeps_identity_columns_and_their_values(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a text);"
        "INSERT INTO t (a) VALUES ('x'), ('y'), ('z'); DELETE FROM t WHERE id = 2",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        await execute(
            pg_database, "UPDATE t SET a = 'w' WHERE id = 3; INSERT INTO t (a) VALUES ('v')"
        )
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == [(1, "(1,x)"), (3, "(3,w)"), (4, "(4,v)")]
        identity = (
            "SELECT attname, attidentity FROM pg_attribute "
            "WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum"
        )
        assert await rows(target, identity) == [("id", b"a"), ("a", b"\x00")]
    finally:
        await drop(pg_database, target)


async def test_pg_copy_names_a_custom_type_missing_in_the_target(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(pg_database, SETUP + "CREATE TABLE t (id integer PRIMARY KEY, m mood)")
    target = pg_database + "_target"
    await execute(pg_database, f'CREATE DATABASE "{target.rsplit("/", 1)[1]}"')
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        with pytest.raises(PermanentError) as caught:
            await build_pipeline(EXAMPLE).run()
        assert str(caught.value).endswith(
            'failed while creating table t: type "mood" does not exist'
        )
    finally:
        await drop(pg_database, target)


async def test_pg_copy_creates_defaults_but_not_sequences(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id serial PRIMARY KEY, n integer DEFAULT 7, "
        "at timestamptz NOT NULL DEFAULT now(), s text DEFAULT 'x''y');"
        "INSERT INTO t (n) VALUES (1)",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        defaults = (
            "SELECT a.attname, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = 't'::regclass AND a.attnum > 0 ORDER BY a.attnum"
        )
        assert await rows(target, defaults) == [
            ("id", True, None),
            ("n", False, "7"),
            ("at", True, "now()"),
            ("s", False, "'x''y'::text"),
        ]
    finally:
        await drop(pg_database, target)


#: The types of TYPES a database defines itself, whose binary values name its own OIDs.
NOT_BUILT_IN = {"enum", "enum_array", "domain", "composite", "citext", "hstore"}


async def test_binary_format_keeps_every_value_of_every_built_in_type(pg_database: str) -> None:
    """All built-in types in one table as binary pages of 2 rows, batches of two pages."""
    built_in = {name: typed for name, typed in TYPES.items() if name not in NOT_BUILT_IN}
    depth = max(len(values) for _, values in built_in.values()) + 1
    columns = ", ".join(f"v_{name} {sql_type}" for name, (sql_type, _) in built_in.items())
    inserts = ", ".join(
        "("
        + ", ".join([str(n), *(v[n] if n < len(v) else "NULL" for _, v in built_in.values())])
        + ")"
        for n in range(depth)
    )
    await execute(
        pg_database,
        f"CREATE TABLE t (id integer PRIMARY KEY, {columns}); INSERT INTO t VALUES {inserts}",
    )
    target = await make_target(pg_database)
    try:
        source = TableSource(pg_database, "t", chunk_size=2, format="binary")
        sink = PostgresSink(target, "t", create=True, source_dsn=pg_database, source_table="t")
        stats = await Pipeline("binary", source, sink, max_batch_size=3).run()
        assert stats.records_out == depth
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
    finally:
        await drop(pg_database, target)


async def test_pg_copy_rerun_adds_the_columns_the_source_gained_with_their_values(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id integer PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x'), (2, 'y')",
    )
    target = await make_target(pg_database)
    try:
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", "t")
        await build_pipeline(EXAMPLE).run()
        await execute(
            pg_database,
            "ALTER TABLE t ADD COLUMN d integer DEFAULT 5, ADD COLUMN r float8 DEFAULT random();"
            "INSERT INTO t (id, a) VALUES (3, 'z')",
        )
        stats = await build_pipeline(EXAMPLE).run()
        # Every row differs from the target's, in r at least: each is rewritten with the
        # source's values, the ones a volatile default gave it included.
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
        assert (stats.records_out, stats.unchanged) == (3, 0)
        defaults = (
            "SELECT attname, pg_get_expr(adbin, adrelid) FROM pg_attrdef JOIN pg_attribute "
            "ON attrelid = adrelid AND attnum = adnum WHERE adrelid = 't'::regclass ORDER BY 1"
        )
        assert await rows(target, defaults) == [("d", "5"), ("r", "random()")]
        stats = await build_pipeline(EXAMPLE).run()
        assert (stats.records_out, stats.unchanged) == (0, 3)
    finally:
        await drop(pg_database, target)
