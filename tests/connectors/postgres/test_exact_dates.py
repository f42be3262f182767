"""TableSource reads dates and times Python cannot hold as their text, never as other values.

asyncpg's own codecs read ``infinity`` as 9999-12-31 and fail on a date BC or
``24:00``; the source keeps each value exact, as change data capture does, and
reads ``timetz`` as its text (a ``time`` with an offset is no JSON value).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from asyncetl import PermanentError, Pipeline
from asyncetl.connectors.postgres import PostgresSink, TableSource
from tests.connectors.postgres.helpers import execute, rows
from tests.connectors.postgres.test_source import read_all

pytestmark = pytest.mark.anyio

TABLE = """
CREATE TABLE days (id int PRIMARY KEY, d date, t time, tz timetz);
INSERT INTO days VALUES
  (1, '2024-02-29', '10:00:00', '12:34:56.789+05:30'),
  (2, 'infinity', '24:00', '24:00:00+02'),
  (3, '-infinity', '00:00', NULL),
  (4, '4713-01-01 BC', NULL, NULL),
  (5, '9999-12-31', '23:59:59.999999', '00:00:00-12'),
  (6, '10000-01-01', NULL, NULL),
  (7, NULL, NULL, NULL);
"""


async def test_dates_and_times_python_cannot_hold_arrive_as_their_text(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    [chunk] = await read_all(TableSource(pg_database, "days"))
    assert list(chunk.records) == [
        {"id": 1, "d": date(2024, 2, 29), "t": time(10), "tz": "12:34:56.789+05:30"},
        {"id": 2, "d": "infinity", "t": "24:00:00", "tz": "24:00:00+02"},
        {"id": 3, "d": "-infinity", "t": time(0), "tz": None},
        {"id": 4, "d": "4713-01-01 BC", "t": None, "tz": None},
        {"id": 5, "d": date(9999, 12, 31), "t": time(23, 59, 59, 999999), "tz": "00:00:00-12"},
        {"id": 6, "d": "10000-01-01", "t": None, "tz": None},
        {"id": 7, "d": None, "t": None, "tz": None},
    ]


async def test_infinity_and_9999_12_31_stay_apart_from_table_to_table(pg_database: str) -> None:
    await execute(
        pg_database,
        TABLE + "CREATE TABLE copied (id int PRIMARY KEY, d date, t time, tz timetz);",
    )
    pipeline = Pipeline(
        "days",
        TableSource(pg_database, "days"),
        PostgresSink(pg_database, "copied"),
        stop_when_idle=0.05,
    )
    await pipeline.run()
    select = "SELECT id, d::text, t::text, tz::text FROM {} ORDER BY id"
    source = await rows(pg_database, select.format("days"))
    assert await rows(pg_database, select.format("copied")) == source
    assert source[1][1] == "infinity" and source[4][1] == "9999-12-31"


async def test_dates_are_parsed_whatever_date_style_the_database_sets(pg_database: str) -> None:
    database = pg_database.rsplit("/", 1)[1]
    await execute(
        pg_database,
        f"ALTER DATABASE {database} SET DateStyle = 'SQL, DMY';"
        "CREATE TABLE d (id int PRIMARY KEY, d date);"
        "INSERT INTO d VALUES (1, '2024-03-15')",
    )
    assert await rows(pg_database, "SELECT d::text FROM d") == [("15/03/2024",)]
    [chunk] = await read_all(TableSource(pg_database, "d"))
    assert list(chunk.records) == [{"id": 1, "d": date(2024, 3, 15)}]


async def test_a_timestamp_bc_fails_the_read_naming_the_table_and_the_remedy(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE old (id int PRIMARY KEY, at timestamp);"
        "INSERT INTO old VALUES (1, '0044-03-15 12:00 BC')",
    )
    with pytest.raises(PermanentError) as failed:
        await read_all(TableSource(pg_database, "old"))
    assert str(failed.value) == (
        "cannot read table old: a value has no Python equivalent (date value out of range); "
        "timestamps before year 1 or after 9999 have none: read them as text with "
        'text_types = ["timestamp", "timestamptz"]'
    )
    assert failed.value.setting == "text_types"
    [chunk] = await read_all(TableSource(pg_database, "old", text_types=["timestamp"]))
    assert list(chunk.records) == [{"id": 1, "at": "0044-03-15 12:00:00 BC"}]


async def test_an_infinity_timestamp_cursor_is_read_once(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz NOT NULL);"
        "INSERT INTO ev VALUES (1, '2024-01-01'), (2, '-infinity'), (3, 'infinity')",
    )
    source = TableSource(pg_database, "ev", cursor=["at"], chunk_size=1)
    chunks = await read_all(source)
    got: list[Any] = [(r["id"], c.position["after"]) for c in chunks for r in c.records]  # type: ignore[index, call-overload]
    assert got == [
        (2, ["-infinity", "2"]),
        (1, ["2024-01-01T00:00:00+00:00", "1"]),
        (3, ["infinity", "3"]),
    ]
    assert await read_all(TableSource(pg_database, "ev", cursor=["at"]), chunks[-1].position) == []
    assert chunks[1].records[0]["at"] == datetime(2024, 1, 1, tzinfo=UTC)
