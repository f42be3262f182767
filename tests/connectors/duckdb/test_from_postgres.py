"""A PostgreSQL table into DuckDB and Parquet: its pages go as columns, every value exact."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from structlog.testing import capture_logs

from asyncetl import Pipeline
from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBSink
from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink
from asyncetl.connectors.postgres import TableSource
from tests.connectors.duckdb.helpers import query
from tests.connectors.postgres.helpers import execute

pytestmark = pytest.mark.anyio

TABLE = """
CREATE TABLE items (
    id bigint PRIMARY KEY, name text, price numeric(12, 2), at timestamptz,
    ref uuid, doc jsonb, tags text[]
);
INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END, g * 1.25,
    '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute',
    ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
    jsonb_build_object('g', g), ARRAY['t' || g]
FROM generate_series(1, 25) g;
"""


def expected(i: int) -> tuple[object, ...]:
    return (
        i,
        None if i % 3 == 0 else f"n{i}",
        Decimal(i) * Decimal("1.25"),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        f"00000000-0000-0000-0000-{i:012d}",
        f'{{"g": {i}}}',
        f'["t{i}"]',
    )


def utc(value: object) -> dt.datetime:
    assert isinstance(value, dt.datetime)
    return value.astimezone(dt.UTC)


async def test_a_table_lands_in_duckdb_with_every_value_and_resumes(
    pg_database: str, tmp_path: Path
) -> None:
    await execute(pg_database, TABLE)
    db = str(tmp_path / "lake.duckdb")

    def pipeline() -> Pipeline:
        return Pipeline(
            "items",
            TableSource(pg_database, "items", chunk_size=10),
            DuckDBSink(db, "items", create=True),
            checkpoints=DuckDBCheckpointStore(db),
            max_batch_size=10,
        )

    with capture_logs():
        stats = await pipeline().run()
    assert stats.records_out == 25
    rows = query(db, "SELECT * FROM items ORDER BY id")
    assert [(r[0], r[1]) for r in query(db, "DESCRIBE items")] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("price", "DECIMAL(38,2)"),
        ("at", "TIMESTAMP WITH TIME ZONE"),
        ("ref", "VARCHAR"),
        ("doc", "VARCHAR"),
        ("tags", "VARCHAR"),
    ]
    assert [(*r[:3], utc(r[3]), *r[4:]) for r in rows] == [expected(i) for i in range(1, 26)]
    await execute(pg_database, "INSERT INTO items (id, name) VALUES (26, 'late')")
    with capture_logs():
        again = await pipeline().run()
    assert again.records_out == 1
    assert query(db, "SELECT count(*), max(id) FROM items") == [(26, 26)]


async def test_a_table_lands_in_parquet_with_every_value(pg_database: str, tmp_path: Path) -> None:
    await execute(pg_database, TABLE)
    out = str(tmp_path / "lake")
    with capture_logs():
        stats = await Pipeline(
            "items",
            TableSource(pg_database, "items", chunk_size=10),
            ParquetSink(out),
            checkpoints=ParquetCheckpointStore(out),
            max_batch_size=10,
        ).run()
    assert stats.records_out == 25
    table = ds.dataset(out, format="parquet").to_table().sort_by("id")
    found = [tuple(row.values()) for row in table.to_pylist()]
    assert found == [expected(i) for i in range(1, 26)]
