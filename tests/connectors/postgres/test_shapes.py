"""Tables of every shape through pg_copy, compared row for row (``row(t.*)::text``): other
schemas, quoted and reserved names, a partitioned table, 1 MB values, 200,000 rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from asyncetl.spec import build_pipeline
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parents[3] / "examples" / "pg_copy.toml"
MEGABYTE = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 32768) g)"
SOURCE = f"""
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Lines" ("Id" int PRIMARY KEY, "select" text, "User" int, "from" date);
INSERT INTO "Sales"."Order Lines" VALUES (1, 'a', 10, '2024-01-01'), (2, NULL, 20, NULL);
CREATE TABLE events (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b');
CREATE TABLE wide (id int PRIMARY KEY, t text, b bytea);
INSERT INTO wide VALUES (1, {MEGABYTE}, decode({MEGABYTE}, 'hex'));
CREATE TABLE bulk (id int PRIMARY KEY, v text);
INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
"""
TABLES = ['"Sales"."Order Lines"', "events", "wide", "bulk"]


async def test_pg_copy_keeps_schemas_quoted_names_partitions_and_big_values(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(pg_database, SOURCE)
    target = pg_database + "_target"
    await execute(pg_database, f'CREATE DATABASE "{target.rsplit("/", 1)[1]}"')
    try:
        await execute(target, 'CREATE SCHEMA "Sales"')
        monkeypatch.setenv("SOURCE_DSN", pg_database)
        monkeypatch.setenv("TARGET_DSN", target)
        monkeypatch.setenv("TABLES", ",".join(TABLES))
        await build_pipeline(EXAMPLE).run()
        for table in TABLES:
            text = f"SELECT row(t.*)::text FROM {table} AS t ORDER BY 1"
            assert await rows(target, text) == await rows(pg_database, text), table
        assert await rows(target, 'SELECT * FROM "Sales"."Order Lines" ORDER BY 1') == [
            (1, "a", 10, date(2024, 1, 1)),
            (2, None, 20, None),
        ]
        assert await rows(target, "SELECT count(*) FROM bulk") == [(200000,)]
        assert await rows(target, "SELECT length(t), length(b) FROM wide") == [(1048576, 524288)]
        # The partitioned table arrives as one plain table holding every partition's rows.
        relkind = "SELECT relkind::text FROM pg_class WHERE relname = 'events'"
        assert await rows(target, relkind) == [("r",)]
    finally:
        await execute(
            pg_database, f'DROP DATABASE IF EXISTS "{target.rsplit("/", 1)[1]}" WITH (FORCE)'
        )
