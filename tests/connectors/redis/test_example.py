"""examples/redis_to_sqlite.toml, run through the CLI as its header tells users to."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from asyncetl.connectors.redis import RedisStreamSource
from asyncetl.connectors.sqlite import SqliteSink
from asyncetl.spec import build_pipeline
from tests.connectors.redis.helpers import REDIS_URL, add_entries, pending

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]
SPEC = "examples/redis_to_sqlite.toml"


def environment(stream: str, database: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "REDIS_STREAM": stream,
        "REDIS_CONSUMER": "example-worker",
        "REDIS_ORDERS_DB": str(database),
    }


def rows(database: Path) -> list[tuple[str, dict[str, str]]]:
    """The loaded entries in stream order (ids as text sort ``…-10`` before ``…-2``)."""
    with sqlite3.connect(database) as conn:
        found = conn.execute("SELECT id, fields FROM orders_stream").fetchall()
    loaded = [(entry_id, json.loads(fields)) for entry_id, fields in found]
    return sorted(loaded, key=lambda row: tuple(map(int, row[0].split("-"))))


async def test_the_example_loads_the_stream_into_sqlite_and_acknowledges_it(
    redis: aioredis.Redis, stream: str, tmp_path: Path
) -> None:
    ids = await add_entries(redis, stream, 30)
    database = tmp_path / "orders.db"
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncetl", "run", SPEC, "--stop-when-idle", "0.5"],
            cwd=REPO,
            env=environment(stream, database),
            check=False,
        )

    assert done.returncode == 0, done.stderr.decode()
    assert rows(database) == [
        (entry_id, {"n": str(i), "sku": f"sku-{i % 3}"}) for i, entry_id in enumerate(ids)
    ]
    assert await pending(redis, stream, "asyncetl") == 0


def test_the_example_builds_the_redis_source_from_the_spec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in environment("orders_x", tmp_path / "x.db").items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)
    built = build_pipeline(SPEC)

    assert isinstance(built.source, RedisStreamSource)
    assert isinstance(built.sink, SqliteSink)
    assert (built.source.stream, built.source.group, built.source.consumer) == (
        "orders_x",
        "asyncetl",
        "example-worker",
    )
