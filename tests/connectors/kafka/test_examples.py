"""The Kafka examples, built and run as the README and their headers say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl.connectors.kafka import KafkaSink, KafkaSource
from asyncetl.connectors.postgres import ApplySink, CdcSource
from asyncetl.spec import build_pipeline
from tests.connectors.kafka.helpers import Topic, run_while

REPO = Path(__file__).resolve().parents[3]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_pg_cdc_to_kafka_routes_each_table_to_its_debezium_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DSN", "postgresql://postgres@127.0.0.1/src")
    monkeypatch.setenv("TOPIC_PREFIX", "shop")
    built = build_pipeline(REPO / "examples/pg_cdc_to_kafka.toml")

    assert isinstance(built.source, CdcSource)
    assert isinstance(built.sink, KafkaSink)
    assert built.sink.client.servers == ["127.0.0.1:9092"]
    assert (built.sink.topic.text, built.sink.topic_prefix) == ("{prefix}.{schema}.{table}", "shop")


@pytest.mark.anyio
async def test_kafka_to_pg_validates_applies_a_debezium_topic_and_shows_its_position(
    single: Topic, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
    finally:
        await conn.close()
    source = {"schema": "public", "table": "customers", "lsn": 10, "ts_ms": 0}
    await single.produce(
        [
            orjson.dumps(
                {"op": "c", "before": None, "after": {"id": 1, "name": "Ada"}, "source": source}
            ),
            b"not debezium",
        ],
        keys=[b'{"id": 1}', None],
    )
    env = {
        "KAFKA_BOOTSTRAP": single.bootstrap,
        "TOPICS": single.name,
        "TARGET_DSN": pg_database,
        "GROUP": single.group,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    checked = _cli("validate", "--connect", "examples/kafka_to_pg.toml", env=env)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout.startswith("ok: kafka_to_pg: connected and checked ")

    built = build_pipeline(REPO / "examples/kafka_to_pg.toml")
    assert isinstance(built.source, KafkaSource) and isinstance(built.sink, ApplySink)
    built.source.session_timeout = 2.0  # the private broker joins a group in half of it

    async def committed() -> bool:
        return await single.committed() == {0: 2}

    with capture_logs():
        await run_while(built, committed)

    conn = await asyncpg.connect(pg_database)
    try:
        assert [tuple(r) for r in await conn.fetch("SELECT id, name FROM customers")] == [
            (1, "Ada")
        ]
        [letter] = await conn.fetch("SELECT record FROM asyncetl_dead_letters")
        assert orjson.loads(letter["record"])["value"] == "not debezium"
    finally:
        await conn.close()
    shown = _cli("checkpoint", "show", "--json", "examples/kafka_to_pg.toml", env=env)
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["position"] == {
        "group": single.group,
        "offsets": {single.name: {"0": 2}},
    }
