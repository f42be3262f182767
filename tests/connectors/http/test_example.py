"""examples/http_to_pg.toml against examples/demo_api.py, into a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
import pytest

from asyncetl import spec
from examples.demo_api import create_app, make_records
from tests.connectors.http.api import serve

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "http_to_pg.toml"
TYPES = [
    ("source", "http", "asyncetl.connectors.http:HttpSource"),
    ("sink", "postgres", "asyncetl.connectors.postgres:PostgresSink"),
    ("checkpoints", "postgres", "asyncetl.connectors.postgres:PostgresCheckpointStore"),
    ("dead_letters", "postgres", "asyncetl.connectors.postgres:PostgresDeadLetterStore"),
]


@pytest.fixture(autouse=True)
def _spec_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec types the example uses, for as long as the registry lacks them."""
    for kind, name, target in TYPES:
        if name not in spec.REGISTRY[kind]:
            monkeypatch.setitem(spec.REGISTRY[kind], name, target)
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    ("pagination", "path", "records_path"),
    [
        ("", "/records", ""),
        ("page", "/records", ""),
        ("offset", "/records", ""),
        ("cursor", "/feed", "data"),
    ],
)
async def test_the_example_loads_the_demo_api_into_postgres(
    monkeypatch: pytest.MonkeyPatch,
    pg_database: str,
    pagination: str,
    path: str,
    records_path: str,
) -> None:
    expected = make_records(230)
    async with serve(create_app(expected)) as base:
        monkeypatch.setenv("API_URL", base + path)
        monkeypatch.setenv("TARGET_DSN", pg_database)
        monkeypatch.setenv("PAGINATION", pagination)  # empty: the default, link
        monkeypatch.setenv("RECORDS_PATH", records_path)
        monkeypatch.setenv("PAGE_SIZE", "50")
        monkeypatch.setenv("TARGET_TABLE", "api_records")
        first = await spec.build_pipeline(EXAMPLE).run()
        again = await spec.build_pipeline(EXAMPLE).run()
    assert (first.records_out, first.dead_lettered) == (230, 0)
    assert again.records_out == 0  # resumed after the last page: nothing new
    conn = await asyncpg.connect(pg_database)
    try:
        rows = await conn.fetch("SELECT id, doc::text AS doc FROM api_records ORDER BY id")
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'api_records' ORDER BY ordinal_position"
        )
    finally:
        await conn.close()
    assert [(r["id"], orjson.loads(r["doc"])) for r in rows] == [(r["id"], r) for r in expected]
    assert [(c["column_name"], c["data_type"]) for c in columns] == [
        ("id", "bigint"),
        ("doc", "jsonb"),
    ]
