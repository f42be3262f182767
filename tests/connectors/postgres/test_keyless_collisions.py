"""Rows of a table without a key that differ only where their row hashes do not look:
numbers by their scale (1.0, 1.00), unbounded ``bpchar`` by its trailing spaces.

Row hashes digest a canonical form of each row (numbers normalised), so such rows
hash alike. Numbered apart within a batch, they must be numbered apart across
batches too, and a replay of any batch must write nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import PostgresSink, TableSource
from asyncetl.connectors.postgres._rows import row_hash
from asyncetl.connectors.postgres._writers.hash_numbers import hashed_exactly
from tests.connectors.postgres.helpers import batch, execute, rows
from tests.connectors.postgres.test_keyless_values import page_by_page
from tests.connectors.postgres.test_source import read_all
from tests.connectors.postgres.test_type_fidelity import drop, make_target

pytestmark = pytest.mark.anyio

#: Each column's odd values in rows otherwise NULL, so only that value tells them apart;
#: each row is its own page, so values that hash alike fall in different batches. An
#: interval is staged as text and cast (asyncpg's codec loses its months).
HASHED_ALIKE = r"""
CREATE TABLE t (n numeric, j json, b bpchar, c char(3), i interval);
INSERT INTO t (n) VALUES ('1.0'), ('1.00'), ('1'), ('1.00'), ('1.000'), ('100'), ('100.0');
INSERT INTO t (j) VALUES ('{"a":1.0}'), ('{"a": 1.0}'), ('{"a": 1.0}'), ('{ "a":1.0 }');
INSERT INTO t (b) VALUES ('a'), ('a '), ('a  '), ('a '), (''), (' ');
INSERT INTO t (c) VALUES ('a'), ('a '), ('a  ');
INSERT INTO t (n, i) VALUES ('2.0', '1 mon'), ('2.00', '1 mon');
"""
#: Every row as its exact text, duplicates included.
ROWS = "SELECT row(n, j, b, c, i)::text FROM t ORDER BY 1"
VERSIONS = "SELECT xmin::text, _row_hash FROM t ORDER BY 2"
#: How many rows HASHED_ALIKE holds.
COUNT = 22


def one_page_a_batch(source_dsn: str, target: str) -> Pipeline:
    """A copy of table ``t``: one distinct row a read, one read a batch."""
    return page_by_page(source_dsn, target, batch_size=1)


async def test_rows_that_hash_alike_arrive_from_different_batches(pg_database: str) -> None:
    """1.0 and 1.00, json spaced apart, 'a' and 'a ': each its own batch, each arrives."""
    await execute(pg_database, HASHED_ALIKE)
    target = await make_target(pg_database)
    try:
        stats = await one_page_a_batch(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (COUNT, 0)
        source_rows = await rows(pg_database, ROWS)
        assert len(source_rows) == COUNT
        assert await rows(target, ROWS) == source_rows
        # Their text drops trailing spaces; concat keeps them.
        bpchars = "SELECT concat(b, '|') FROM t WHERE b IS NOT NULL"
        assert sorted(await rows(target, bpchars)) == [
            (" |",),
            ("a  |",),
            ("a |",),
            ("a |",),
            ("a|",),
            ("|",),
        ]
        written = await rows(target, VERSIONS)
        stats = await one_page_a_batch(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (0, COUNT)
        assert await rows(target, VERSIONS) == written
    finally:
        await drop(pg_database, target)


async def test_a_rerun_adds_only_new_rows_that_hash_like_copied_ones(pg_database: str) -> None:
    """A row added after a copy, hashing like rows copied, is appended once on the rerun."""
    await execute(pg_database, HASHED_ALIKE)
    target = await make_target(pg_database)
    try:
        await one_page_a_batch(pg_database, target).run()
        await execute(
            pg_database,
            "INSERT INTO t (n) VALUES ('1.0000'), ('1.0'); INSERT INTO t (b) VALUES ('a   ')",
        )
        stats = await one_page_a_batch(pg_database, target).run()
        assert (stats.records_out, stats.unchanged) == (3, COUNT)
        assert await rows(target, ROWS) == await rows(pg_database, ROWS)
    finally:
        await drop(pg_database, target)


def numbered(*values: str) -> list[dict[str, Any]]:
    return [{"id": 1, "n": Decimal(v)} for v in values]


#: The table's rows as text, hash included, so that the numbers taken are seen.
STORED = "SELECT n::text, _row_hash FROM t ORDER BY 2"


async def test_append_numbers_rows_that_hash_alike_past_those_stored(pg_database: str) -> None:
    """Batches in any order, each replayed: every value once, each under its own number."""
    await execute(pg_database, "CREATE TABLE t (id integer, n numeric, _row_hash text UNIQUE)")
    batches = [numbered("1.0"), numbered("1.00", "1.00", "1"), numbered("1.0", "1.000")]
    sink = PostgresSink(pg_database, "t", mode="append", row_hash=["*"])
    await sink.open()
    try:
        assert await sink.write(batch(batches[1], 1)) == []
        assert await sink.write(batch(batches[0], 0)) == []
        assert await sink.write(batch(batches[2], 2)) == []
        stored = await rows(pg_database, STORED)
        for seq in (0, 1, 2, 1, 0):
            assert await sink.write(batch(batches[seq], seq)) == []
    finally:
        await sink.aclose()
    assert await rows(pg_database, STORED) == stored
    # Batch 1 took the first numbers; each other value the next free one, as it came.
    numbers = {row_hash([1, Decimal("1")], salt): salt for salt in range(5)}
    assert sorted((numbers[h], n) for n, h in stored) == [
        (0, "1.00"),
        (1, "1.00"),
        (2, "1"),
        (3, "1.0"),
        (4, "1.000"),
    ]


async def test_keyless_bpchar_is_grouped_and_resumed_with_its_trailing_spaces(
    pg_database: str,
) -> None:
    """Unbounded ``bpchar`` (and a domain over it) by its output, which keeps trailing
    spaces: 'a', 'a ' and 'a  ' are three groups, and a position holds the spaces;
    ``character(2)`` pads its values, which its text drops."""
    await execute(
        pg_database,
        "CREATE DOMAIN spaced AS bpchar; CREATE TABLE t (b bpchar, d spaced, c char(2));"
        "INSERT INTO t VALUES ('a', 'a ', 'a'), ('a ', 'a', 'a '), ('a  ', NULL, NULL),"
        "('a ', 'a', 'a '), (NULL, ' ', '')",
    )
    chunks = await read_all(TableSource(pg_database, "t", chunk_size=1))
    afters = [c.position["after"] for c in chunks if isinstance(c.position, dict)]
    assert list(zip([c.records for c in chunks], afters, strict=True)) == [
        ([{"b": "a", "d": "a ", "c": "a "}], ["a", "a ", "a"]),
        ([{"b": "a ", "d": "a", "c": "a "}] * 2, ["a ", "a", "a"]),
        ([{"b": "a  ", "d": None, "c": None}], ["a  ", None, None]),
        ([{"b": None, "d": " ", "c": "  "}], [None, " ", ""]),
    ]


async def test_append_keeps_every_copy_of_a_row_whose_first_number_is_taken(
    pg_database: str,
) -> None:
    """1.00 twice after 1.0: the first copy's number is taken, the second's free. Each copy
    counts once: the first is not taken for the second, landed under the next number."""
    await execute(pg_database, "CREATE TABLE t (id integer, n numeric, _row_hash text UNIQUE)")
    sink = PostgresSink(pg_database, "t", mode="append", row_hash=["*"])
    await sink.open()
    try:
        assert await sink.write(batch(numbered("1.0"), 0)) == []
        assert await sink.write(batch(numbered("1.00", "1.00"), 1)) == []
        stored = await rows(pg_database, STORED)
        assert await sink.write(batch(numbered("1.00", "1.00"), 1)) == []
        assert await sink.write(batch(numbered("1.0"), 0)) == []
    finally:
        await sink.aclose()
    assert await rows(pg_database, STORED) == stored
    numbers = {row_hash([1, Decimal("1")], salt): salt for salt in range(3)}
    assert sorted((numbers[h], n) for n, h in stored) == [(0, "1.0"), (1, "1.00"), (2, "1.00")]


@pytest.mark.parametrize(
    ("types", "exact"),
    [
        (["integer", "timestamp(3) without time zone", "character(22)", "numeric(10,2)"], True),
        (["text", "double precision", "jsonb", "bytea", "numeric(5)"], True),
        (["integer", "numeric"], False),
        (["integer[]"], False),
        (["citext"], False),
    ],
)
def test_rows_skipped_are_compared_only_where_values_can_hash_alike(
    types: list[str], exact: bool
) -> None:
    """``numeric`` without a scale normalises in the hash; arrays, domains and extension
    types are compared rather than trusted."""
    assert hashed_exactly(types) is exact
