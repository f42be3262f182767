"""Source and target agree row for row (``row(t.*)::text``): keyless tables, TOAST, types."""

from __future__ import annotations

import subprocess

import anyio
import pytest

from asyncetl.connectors.postgres.cdc._catalog import TableInfo
from asyncetl.connectors.postgres.cdc._pgoutput import PgOutputDecoder
from asyncetl.connectors.postgres.cdc._snapshot import _events
from asyncetl.connectors.postgres.cdc._values import converter
from asyncetl.core.errors import PermanentError, StageError
from tests.connectors.postgres.cdc.support import execute, replicate, table_text

pytestmark = pytest.mark.anyio


def _pgbench(dsn: str, *args: str) -> None:
    subprocess.run(["pgbench", *args, dsn], check=True, capture_output=True, timeout=300)


async def test_pgbench_with_a_keyless_history_table(cdc_db: str, target_db: str) -> None:
    await anyio.to_thread.run_sync(_pgbench, cdc_db, "-i", "-s", "1", "-q")
    await execute(cdc_db, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
    tables = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]

    async def bench() -> None:
        await anyio.to_thread.run_sync(_pgbench, cdc_db, "-n", "-c", "4", "-t", "200")

    # The history table is empty in the snapshot: the target is created from streamed
    # changes, whose old-row identity covers every column (and ``filler`` is NULL).
    statements = ["INSERT INTO pgbench_history VALUES (1, 1, 1, 5, now(), NULL)", bench]
    await replicate(cdc_db, target_db, tables, statements, seconds=120)
    for table in tables:
        assert await table_text(cdc_db, table) == await table_text(target_db, table)
    assert len(await table_text(target_db, "pgbench_history")) == 801


async def test_keyless_full_identity_updates_and_deletes_match_null_safely(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE k (a int, b text, p point, x xml);"
        "ALTER TABLE k REPLICA IDENTITY FULL;"
        "INSERT INTO k VALUES (1, NULL, '(1,2)', '<a>1</a>'), (1, NULL, '(1,2)', '<a>1</a>'),"
        " (2, 'two', NULL, NULL)",
    )
    await replicate(
        cdc_db,
        target_db,
        ["k"],
        [
            "INSERT INTO k VALUES (3, NULL, NULL, NULL), (3, NULL, NULL, NULL)",
            "DELETE FROM k WHERE ctid = (SELECT min(ctid) FROM k WHERE a = 1)",
            "UPDATE k SET b = 'three' WHERE ctid = (SELECT min(ctid) FROM k WHERE a = 3)",
            "UPDATE k SET a = 20 WHERE a = 2",
        ],
    )
    assert await table_text(target_db, "k") == [
        '(1,,"(1,2)",<a>1</a>)',
        "(20,two,,)",
        "(3,,,)",
        "(3,three,,)",
    ]


RANDOM_TEXT = "(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 400) g)"


@pytest.mark.parametrize(
    ("identity", "key"),
    [("DEFAULT", "PRIMARY KEY"), ("FULL", "PRIMARY KEY"), ("FULL", "")],
    ids=["default", "full", "full-keyless"],
)
async def test_unchanged_toast_values_are_kept(
    cdc_db: str, target_db: str, identity: str, key: str
) -> None:
    await execute(
        cdc_db,
        f"CREATE TABLE t (id int {key}, n int, big text, also text);"
        f"ALTER TABLE t REPLICA IDENTITY {identity};"
        f"INSERT INTO t SELECT g, 0, {RANDOM_TEXT}, repeat('x', 10000) FROM generate_series(1, 6) g",
    )
    await replicate(
        cdc_db,
        target_db,
        ["t"],
        [
            # rows first seen in the stream through an update that leaves both unchanged
            "UPDATE t SET n = 1 WHERE id <= 2",
            "UPDATE t SET n = n + 1 WHERE id <= 2",  # twice in one batch, too
            f"UPDATE t SET big = {RANDOM_TEXT} WHERE id = 3",  # only ``also`` unchanged
            "BEGIN; UPDATE t SET n = 5 WHERE id = 4; UPDATE t SET n = 6 WHERE id = 4; COMMIT",
            "DELETE FROM t WHERE id = 5",
        ],
    )
    rows = await table_text(target_db, "t")
    assert len(rows) == 5
    assert min(len(r) for r in rows) > 20000


# name → (column type, setup DDL in both databases, values as SQL literals)
TYPES: dict[str, tuple[str, str, list[str]]] = {
    "numeric": ("numeric", "", ["1.50", "'NaN'", "'Infinity'", "'-Infinity'", "-0.000001"]),
    "numeric(10,3)": ("numeric(10,3)", "", ["1.5", "-12345.678"]),
    "float4": ("real", "", ["1.5", "'Infinity'", "'-Infinity'", "'NaN'", "3.4e38"]),
    "float8": ("double precision", "", ["0.1", "'Infinity'", "'-Infinity'", "'NaN'", "1e-300"]),
    "date": ("date", "", ["'2024-02-29'", "'infinity'", "'-infinity'", "'0044-03-15 BC'"]),
    "timestamp": (
        "timestamp",
        "",
        ["'2024-01-01 12:00:00.123456'", "'infinity'", "'-infinity'", "'10000-01-01'"],
    ),
    "timestamptz": (
        "timestamptz",
        "",
        ["'2024-01-01 12:00:00+05:30'", "'infinity'", "'-infinity'"],
    ),
    "time": ("time", "", ["'23:59:59.999999'", "'24:00:00'"]),
    "timetz": ("timetz", "", ["'12:00:00+05:30'"]),
    "interval": ("interval", "", ["'1 year 2 mons 3 days 04:05:06.7'", "'-1 day'"]),
    "money": ("money", "", ["12.34", "-1"]),
    "bit": ("bit(4)", "", ["B'1010'"]),
    "varbit": ("bit varying", "", ["B'101'", "B''"]),
    "bytea": ("bytea", "", ["'\\x00ff'::bytea", "''::bytea"]),
    "uuid": ("uuid", "", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    "json": ("json", "", ['\'{"b":1,"a":[1,2.5]}\'', "'[]'", "'{}'", "'null'"]),
    "jsonb": ("jsonb", "", ['\'{"b": 1, "a": 1.5}\'', "'[]'", "'{}'", "'null'", "'\"s\"'"]),
    "json[]": ("json[]", "", ["ARRAY['[]', '{}', NULL]::json[]", "'{}'::json[]"]),
    "jsonb[]": ("jsonb[]", "", ["ARRAY['[]'::jsonb, '{\"a\": [1]}']", "'{}'::jsonb[]"]),
    "xml": ("xml", "", ["'<a x=\"1\">t</a>'"]),
    "inet": ("inet", "", ["'192.168.0.1/24'", "'::1'"]),
    "cidr": ("cidr", "", ["'10.0.0.0/8'"]),
    "macaddr": ("macaddr", "", ["'08:00:2b:01:02:03'"]),
    "macaddr8": ("macaddr8", "", ["'08:00:2b:01:02:03:04:05'"]),
    "tsvector": ("tsvector", "", ["'a fat cat'::tsvector"]),
    "tsquery": ("tsquery", "", ["'fat & (rat | cat)'::tsquery"]),
    "point": ("point", "", ["'(1.5,2)'"]),
    "box": ("box", "", ["'((0,0),(1,1))'"]),
    "circle": ("circle", "", ["'<(0,0),2>'"]),
    "line": ("line", "", ["'{1,2,3}'"]),
    "lseg": ("lseg", "", ["'[(0,0),(1,1)]'"]),
    "path": ("path", "", ["'((0,0),(1,1),(2,0))'"]),
    "polygon": ("polygon", "", ["'((0,0),(1,1),(2,0))'"]),
    "int4range": ("int4range", "", ["'[1,5)'", "'empty'"]),
    "tstzrange": ("tstzrange", "", ["'[2024-01-01,infinity)'"]),
    "int4multirange": ("int4multirange", "", ["'{[1,3),[5,7)}'", "'{}'"]),
    "enum": ("mood", "CREATE TYPE mood AS ENUM ('sad', 'happy')", ["'happy'"]),
    "domain int": ("posint", "CREATE DOMAIN posint AS int CHECK (VALUE > 0)", ["7"]),
    "domain text[]": ("tags", "CREATE DOMAIN tags AS text[]", ["'{a,\"b c\",NULL}'"]),
    "composite": (
        "pair",
        "CREATE TYPE pair AS (x int, y text)",
        ["ROW(1, 'a b')::pair", "ROW(NULL, NULL)::pair"],
    ),
    "int[][]": ("int[]", "", ["'{{1,2},{3,NULL}}'", "'{}'", "'{NULL}'", "'[0:1]={7,8}'"]),
    "text[]": ("text[]", "", ['\'{"","NULL",NULL,"a,b","q\\""}\'']),
    "timestamptz[]": ("timestamptz[]", "", ["ARRAY['infinity', '2024-01-01']::timestamptz[]"]),
    "numeric[]": ("numeric[]", "", ["'{NaN,1.10,-Infinity}'"]),
    "citext": ("citext", "CREATE EXTENSION IF NOT EXISTS citext", ["'MiXeD'"]),
    "hstore": ("hstore", "CREATE EXTENSION IF NOT EXISTS hstore", ["'a=>1, b=>NULL'"]),
}


# JSON kept as text: json's spacing and key order, jsonb's number scale.
TYPES.update(
    {
        "json text form": ("json", "", ['\'{"b": 1,  "a": [1, 2.50], "a": 3}\'']),
        "jsonb numeric scale": ("jsonb", "", ['\'{"a": 1.50, "b": [1e2, -0.0]}\'']),
        "json[] text form": ("json[]", "", ["ARRAY['{\"b\":1,  \"a\":2}', ' 1.50']::json[]"]),
    }
)


@pytest.mark.parametrize("name", list(TYPES))
async def test_type_round_trips_through_snapshot_and_stream(
    cdc_db: str, target_db: str, name: str
) -> None:
    sql_type, setup, values = TYPES[name]
    table = f"CREATE TABLE m (id int PRIMARY KEY, v {sql_type}, n int, big text)"
    if setup:  # custom types: the target gets the same DDL (the sink creates tables only)
        await execute(cdc_db, setup)
        await execute(target_db, f"{setup}; {table}")
    count = len(values)
    rows = ", ".join(f"({i}, {v}, 0, {RANDOM_TEXT})" for i, v in enumerate(values, 1))
    streamed = ", ".join(f"({i + 100}, {v}, 0, 'small')" for i, v in enumerate(values, 1))
    await execute(
        cdc_db,
        f"{table}; INSERT INTO m VALUES {rows}, (0, NULL, 0, NULL), (-1, {values[0]}, 0, NULL)",
    )
    await replicate(
        cdc_db,
        target_db,
        ["m"],
        [
            f"INSERT INTO m VALUES {streamed}, (200, {values[-1]}, 0, {RANDOM_TEXT})",
            "UPDATE m SET n = 1",  # ``big`` left unchanged: TOAST
            f"UPDATE m SET v = (SELECT v FROM m WHERE id = {count}) WHERE id = 0",
            f"UPDATE m SET v = NULL, big = {RANDOM_TEXT} WHERE id = -1",
            "DELETE FROM m WHERE id = 200",
        ],
    )
    rows_text = await table_text(target_db, "m")
    assert len(rows_text) == 2 * count + 2


def test_an_array_literal_the_parser_cannot_follow_stays_text() -> None:
    assert converter(1007)(b"{1,2}") == [1, 2]
    assert converter(1007)(b"{{1,2},{3}x}") == "{{1,2},{3}x}"
    # Lists have no lower bounds: an array with other bounds than 1 stays its text.
    assert converter(1007)(b"[0:1]={7,8}") == "[0:1]={7,8}"


async def test_keyless_default_identity_inserts_apply_and_updates_name_the_fix(
    cdc_db: str, target_db: str
) -> None:
    # A keyless table with REPLICA IDENTITY DEFAULT: PostgreSQL itself refuses its updates
    # while it is published, so inserts are all that can come, and they apply.
    await execute(cdc_db, "CREATE TABLE h (a int, filler char(4)); INSERT INTO h VALUES (1, NULL)")
    await replicate(cdc_db, target_db, ["h"], ["INSERT INTO h VALUES (1, NULL), (2, 'x')"])
    assert await table_text(target_db, "h") == ["(1,)", "(1,)", '(2,"x   ")']
    # A keyed source into a keyless target: the update carries only the key, which
    # cannot find the row; the error says what to do and names the table.
    await execute(
        cdc_db, "CREATE TABLE d (id int PRIMARY KEY, v text); INSERT INTO d VALUES (1, 'a')"
    )
    await execute(target_db, "CREATE TABLE d (id int, v text)")
    errors: list[BaseException] = []
    try:
        await replicate(cdc_db, target_db, ["d"], ["UPDATE d SET v = 'b'"], seconds=10)
    except* StageError as group:
        errors.extend(group.exceptions)
    assert len(errors) == 1
    assert (
        "table public.d has no primary key and the source sent no old row for an update of "
        "public.d; set REPLICA IDENTITY FULL on source table public.d or give the target a "
        "primary key"
    ) in str(errors[0])


def test_a_value_that_cannot_be_decoded_names_table_and_column() -> None:
    decoder = PgOutputDecoder()
    relation = (
        b"R"
        + (16385).to_bytes(4, "big")
        + b"public\0t\0d"
        + (2).to_bytes(2, "big")
        + b"\x01id\0"
        + (23).to_bytes(4, "big")
        + (-1).to_bytes(4, "big", signed=True)
        + b"\x00n\0"
        + (1700).to_bytes(4, "big")
        + (-1).to_bytes(4, "big", signed=True)
    )
    decoder.decode(relation)
    insert = (
        b"I"
        + (16385).to_bytes(4, "big")
        + b"N"
        + (2).to_bytes(2, "big")
        + b"t"
        + (1).to_bytes(4, "big")
        + b"1"
        + b"t"
        + (3).to_bytes(4, "big")
        + b"1.x"
    )
    with pytest.raises(PermanentError) as caught:
        decoder.decode(insert)
    assert str(caught.value).startswith("cannot decode column 'n' (numeric) of table public.t: ")


def test_a_snapshot_value_that_cannot_be_decoded_names_table_and_column() -> None:
    table = TableInfo("public", "t", (("id", 23, "integer"), ("n", 1700, "numeric")), ("id",), "d")
    with pytest.raises(PermanentError) as caught:
        _events(table, [("1", "1", "1.x")])  # type: ignore[list-item]
    assert str(caught.value).startswith(
        "cannot decode column 'n' (numeric) of table public.t in the snapshot: "
    )
