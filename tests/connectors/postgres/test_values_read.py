"""TableSource gives every type as a plain Python value or as the server's text of it.

Ranges, multiranges, composites, geometric types, bit strings, ``interval`` and
``timetz`` (and arrays of them) arrive as their text, as change data capture
gives them: asyncpg would make objects of its own of them (``<Range [1, 10)>``
in a JSON file) or lose an interval's months.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from asyncetl.connectors.postgres import PostgresSink, TableSource
from tests.connectors.postgres.helpers import batch, connect, execute, rows
from tests.connectors.postgres.test_source import read_all
from tests.connectors.postgres.test_type_fidelity import SETUP, TYPES

pytestmark = pytest.mark.anyio

#: Columns of TYPES read as their text, and arrays of them as their elements' text.
READ_AS_TEXT = {
    "interval",
    "bit",
    "varbit",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "int4range",
    "tstzrange",
    "numrange",
    "int4multirange",
    "composite",
    "timetz",
}
ARRAYS_READ_AS_TEXT = {"timetz_array"}
#: What a value of a type not read as text may be: built-in and standard library types.
PLAIN = (
    *(bool, int, float, Decimal, str, bytes, date, time, datetime, uuid.UUID),
    *(ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Interface),
    *(ipaddress.IPv6Interface, ipaddress.IPv4Network, ipaddress.IPv6Network),
)


async def every_type(dsn: str) -> None:
    columns = ", ".join(f"{name} {sql_type}" for name, (sql_type, _) in TYPES.items())
    most = max(len(values) for _, values in TYPES.values())
    inserts = ", ".join(
        "({}, {})".format(
            i + 1, ", ".join(v[i] if i < len(v) else "NULL" for _, v in TYPES.values())
        )
        for i in range(most)
    )
    await execute(
        dsn,
        SETUP + f"CREATE TABLE t (id int PRIMARY KEY, {columns}); INSERT INTO t VALUES {inserts}",
    )


def plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(plain(v) for v in value)
    if isinstance(value, time) and value.tzinfo is not None:
        return False
    return value is None or isinstance(value, PLAIN)


async def test_every_type_arrives_as_a_plain_value_or_its_text(pg_database: str) -> None:
    await every_type(pg_database)
    [chunk] = await read_all(TableSource(pg_database, "t"))
    records = list(chunk.records)
    assert [r["id"] for r in records] == list(range(1, len(records) + 1))
    for name in TYPES:
        values = [r[name] for r in records]
        assert all(plain(v) for v in values), (name, values)
        cast = "::text[]" if name in ARRAYS_READ_AS_TEXT else "::text"
        if name in READ_AS_TEXT | ARRAYS_READ_AS_TEXT:
            texts = await rows(pg_database, f"SELECT {name}{cast} FROM t ORDER BY id")
            assert values == [text for (text,) in texts], name


async def test_values_read_as_text_are_exact(pg_database: str) -> None:
    await every_type(pg_database)
    [chunk] = await read_all(TableSource(pg_database, "t"))
    first, second = list(chunk.records)[:2]
    assert first["interval"] == "1 year 2 mons 3 days 04:05:06.789"
    assert second["interval"] == "-1 mons +40 days"
    assert first["int4range"] == "[1,10)" and second["int4range"] == "empty"
    assert first["tstzrange"] == '["2024-01-01 00:00:00+00",infinity)'
    assert first["composite"] == '(1,"x y")' and second["composite"] == "(,)"
    assert first["point"] == "(1.5,-2)" and first["bit"] == "10101"
    assert first["timetz_array"] == ["12:00:00+01", None]
    assert first["int_array_2d"] == [[1, 2], [3, None]]


async def test_a_query_and_a_keyless_table_read_the_same_types_as_text(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE k (r int4range, ps point[], n int);"
        "INSERT INTO k VALUES ('[1,3)', '{\"(1,2)\",NULL}', 1), ('[1,3)', '{\"(1,2)\",NULL}', 1),"
        "('empty', NULL, 2)",
    )
    [grouped] = await read_all(TableSource(pg_database, "k"))
    assert list(grouped.records) == [
        {"r": "[1,3)", "ps": ["(1,2)", None], "n": 1},
        {"r": "[1,3)", "ps": ["(1,2)", None], "n": 1},
        {"r": "empty", "ps": None, "n": 2},
    ]
    query = TableSource(pg_database, "q", query="SELECT n, r, ps FROM k WHERE n = 2", cursor=["n"])
    [queried] = await read_all(query)
    assert list(queried.records) == [{"n": 2, "r": "empty", "ps": None}]
    query = TableSource(
        pg_database, "q", query="SELECT n, r, ps FROM k WHERE n = 1 LIMIT 1", cursor=["n"]
    )
    [queried] = await read_all(query)
    assert list(queried.records) == [{"n": 1, "r": "[1,3)", "ps": ["(1,2)", None]}]


async def test_the_sink_writes_asyncpg_objects_of_these_types_exactly(pg_database: str) -> None:
    """A record an application built from asyncpg's own reads still loads exactly."""
    kinds = [
        "int4range", "tstzrange", "numrange", "point", "line", "lseg", "box", "path",
        "polygon", "circle", "bit", "varbit", "composite",
    ]  # fmt: skip
    await every_type(pg_database)
    columns = ", ".join(f"{k} {TYPES[k][0]}" for k in kinds)
    await execute(pg_database, f"CREATE TABLE copied (id int PRIMARY KEY, {columns})")
    select = f"SELECT id, {', '.join(kinds)} FROM t ORDER BY id"
    async with connect(pg_database) as conn:
        records = [dict(r) for r in await conn.fetch(select)]  # asyncpg's objects
    assert isinstance(records[0]["int4range"], asyncpg.Range)
    assert isinstance(records[0]["composite"], asyncpg.Record)
    sink = PostgresSink(pg_database, "copied")
    await sink.open()
    try:
        assert await sink.write(batch(records)) == []
    finally:
        await sink.aclose()
    texts = f"SELECT id, {', '.join(f'{k}::text' for k in kinds)} FROM {{}} ORDER BY id"
    assert await rows(pg_database, texts.format("copied")) == await rows(
        pg_database, texts.format("t")
    )
