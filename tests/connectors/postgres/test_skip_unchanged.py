"""Upserts leave rows whose stored values equal the new ones unwritten, and miss no change.

An ``UPDATE`` trigger logs every row the server rewrites, so each test names exactly
which rows were written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from asyncetl.connectors.postgres import PostgresSink
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio

#: Logs the key of every row an UPDATE rewrites.
LOGGED = """
CREATE TABLE rewritten (id int);
CREATE FUNCTION log_rewrite() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO rewritten VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER logged BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION log_rewrite();
"""
REWRITTEN = "SELECT id FROM rewritten ORDER BY id"
#: Each value as its type's output writes it (a cast to text drops a bpchar's trailing spaces).
TEXT = "SELECT id, format('%s', v) FROM t ORDER BY id"


async def upsert_twice(
    dsn: str, first: list[dict[str, Any]], second: list[dict[str, Any]], **options: Any
) -> PostgresSink:
    """Write ``first``, then ``second``, through one sink; the sink, closed."""
    sink = PostgresSink(dsn, "t", key=["id"], **options)
    await sink.open()
    try:
        await sink.write(batch(first))
        await sink.write(batch(second, 1))
    finally:
        await sink.aclose()
    return sink


ORDERS = [
    {"id": 1, "name": "a", "price": 1.5, "amount": Decimal("2.50"), "paid": True},
    {"id": 2, "name": "b", "price": 2.5, "amount": None, "paid": False},
    {"id": 3, "name": "c", "price": float("nan"), "amount": Decimal("NaN"), "paid": None},
]


async def test_an_upsert_rewrites_only_the_rows_that_changed_by_default(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, name varchar(10), price float8, amount numeric, "
        "paid boolean);" + LOGGED,
    )
    again = [dict(ORDERS[0]), {**ORDERS[1], "price": 2.75}, dict(ORDERS[2])]
    sink = await upsert_twice(pg_database, ORDERS, again)
    assert await rows(pg_database, REWRITTEN) == [(2,)]
    assert (sink.rows_changed, sink.unchanged) == (4, 2)
    stored = await rows(
        pg_database, "SELECT id, name, price, amount::text, paid FROM t ORDER BY id"
    )
    assert stored[:2] == [(1, "a", 1.5, "2.50", True), (2, "b", 2.75, None, False)]
    assert stored[2][:2] == (3, "c") and stored[2][3:] == ("NaN", None)


async def test_skip_unchanged_false_rewrites_every_row_it_is_given(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, name varchar(10), price float8, amount numeric, "
        "paid boolean);" + LOGGED,
    )
    sink = await upsert_twice(pg_database, ORDERS, ORDERS, skip_unchanged=False)
    assert await rows(pg_database, REWRITTEN) == [(1,), (2,), (3,)]
    assert (sink.rows_changed, sink.unchanged) == (6, 0)


#: column type, stored value, a new value its type's equality calls equal to it, and
#: the new value's text: each must be written.
EQUAL_YET_CHANGED = {
    "float8 sign of zero": ("float8", 0.0, -0.0, "-0"),
    "real sign of zero": ("real", 0.0, -0.0, "-0"),
    "numeric scale": ("numeric", Decimal("1.0"), Decimal("1.00"), "1.00"),
    "case, nondeterministic collation": ('text COLLATE "ci"', "abc", "ABC", "ABC"),
    "case, varchar(5) nondeterministic": ('varchar(5) COLLATE "ci"', "abc", "aBc", "aBc"),
    "citext case": ("citext", "abc", "Abc", "Abc"),
    "jsonb number scale": ("jsonb", '{"a": 1.0}', '{"a": 1.00}', '{"a": 1.00}'),
    "bpchar trailing space": ("bpchar", "a", "a ", "a "),
}


@pytest.mark.parametrize("case", list(EQUAL_YET_CHANGED))
async def test_a_value_equal_by_its_type_but_not_the_same_is_written(
    case: str, pg_database: str
) -> None:
    sql_type, stored, new, text = EQUAL_YET_CHANGED[case]
    await execute(
        pg_database,
        "CREATE EXTENSION IF NOT EXISTS citext;"
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"
        f"CREATE TABLE t (id int PRIMARY KEY, v {sql_type});" + LOGGED,
    )
    sink = await upsert_twice(pg_database, [{"id": 1, "v": stored}], [{"id": 1, "v": new}])
    assert await rows(pg_database, TEXT) == [(1, text)]
    assert await rows(pg_database, REWRITTEN) == [(1,)]
    assert (sink.rows_changed, sink.unchanged) == (2, 0)


#: Values (SQL literals) of each type compared by equality or as binary, and some
#: compared as text: NULL, NaN, -0 and infinities among them.
SAME_VALUES = {
    "smallint": ["0", "-32768", "NULL"],
    "bigint": ["9223372036854775807", "NULL"],
    "float8": ["'-0'", "'NaN'", "'Infinity'", "1e-308", "NULL"],
    "real": ["'-0'", "'NaN'", "'-Infinity'", "3.5", "NULL"],
    "numeric(10,4)": ["'-0.0000'", "1.25", "'NaN'", "NULL"],
    "numeric": ["1.000", "'Infinity'", "-12e-30", "NULL"],
    "text": ["''", "E'\\u00e4\\u00a0b'", "repeat('x', 5000)", "NULL"],
    "varchar(3)": ["''", "'abc'", "NULL"],
    "bytea": ["''", "'\\x00ff'", "NULL"],
    "boolean": ["true", "false", "NULL"],
    "uuid": ["'8f1c2b1e-0000-4000-8000-000000000001'", "NULL"],
    "date": ["'2024-02-29'", "'1999-12-31'", "NULL"],
    "timestamptz(3)": ["'2024-02-29 12:00:00.123+00'", "'-infinity'", "NULL"],
    "timestamp": ["'2024-02-29 12:00:00.5'", "NULL"],
    "jsonb": ["'{\"a\": [1, 2.50]}'", "NULL"],
    "interval": ["'1 day 02:00:00'", "NULL"],
}


@pytest.mark.parametrize("sql_type", list(SAME_VALUES))
async def test_the_same_values_again_are_left_unwritten(sql_type: str, pg_database: str) -> None:
    literals = SAME_VALUES[sql_type]
    values = ", ".join(f"({i}, {literal})" for i, literal in enumerate(literals))
    await execute(
        pg_database,
        f"CREATE TABLE t (id int PRIMARY KEY, v {sql_type}); INSERT INTO t VALUES {values};"
        + LOGGED,
    )
    stored = await rows(pg_database, TEXT)
    # Each value as asyncpg reads it, written back twice.
    read = await rows(pg_database, "SELECT id, v FROM t ORDER BY id")
    records = [{"id": key, "v": value} for key, value in read]
    sink = await upsert_twice(pg_database, records, records)
    assert await rows(pg_database, REWRITTEN) == []
    assert (sink.rows_changed, sink.unchanged) == (0, 2 * len(literals))
    assert await rows(pg_database, TEXT) == stored
