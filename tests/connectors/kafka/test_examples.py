"""The Kafka examples, built and run as the README and their headers say."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from decimal import Decimal
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


def _field(name: str, kind: str, semantic: str | None = None, **more: object) -> dict[str, object]:
    found: dict[str, object] = {"field": name, "type": kind, "optional": True, **more}
    if semantic is not None:
        found["name"] = semantic
    return found


# As Debezium's PostgreSQL connector describes these columns (JSON converter, schemas.enable).
ORDER_FIELDS = [
    _field("id", "int32", optional=False),
    _field("placed", "int32", "io.debezium.time.Date"),
    _field("at", "int64", "io.debezium.time.MicroTimestamp"),
    _field("paid", "string", "io.debezium.time.ZonedTimestamp"),
    _field(
        "total",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        parameters={"scale": "2", "connect.decimal.precision": "10"},
    ),
    _field(
        "ratio",
        "struct",
        "io.debezium.data.VariableScaleDecimal",
        fields=[_field("scale", "int32"), _field("value", "bytes")],
    ),
    _field("doc", "string", "io.debezium.data.Json"),
    _field("token", "string", "io.debezium.data.Uuid"),
    _field("tags", "array", items={"type": "string", "optional": True}),
    _field("blob", "bytes"),
    _field("qty", "int16"),
    _field("weight", "float64"),
    _field("ok", "boolean"),
]
ORDER = {
    "id": 1,
    "placed": 19723,
    "at": 1704110400123456,
    "paid": "2024-01-01T12:00:00.5Z",
    "total": "MDk=",
    "ratio": {"scale": 3, "value": "AQ=="},
    "doc": '{"b": 1, "a": [1.50]}',
    "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "tags": ["x", "y"],
    "blob": "3q2+7w==",
    "qty": 3,
    "weight": 2.5,
    "ok": True,
}


def _order(op: str, before: object, after: object) -> bytes:
    row = {"type": "struct", "optional": True, "name": "shop.public.orders.Value"}
    schema = {
        "type": "struct",
        "name": "shop.public.orders.Envelope",
        "fields": [
            {**row, "fields": ORDER_FIELDS, "field": "before"},
            {**row, "fields": ORDER_FIELDS, "field": "after"},
            {"type": "struct", "field": "source", "fields": []},
            {"type": "string", "field": "op"},
        ],
    }
    source = {"schema": "public", "table": "orders", "lsn": 24023928, "ts_ms": 1704110400000}
    payload = {"op": op, "before": before, "after": after, "source": source}
    return orjson.dumps({"schema": schema, "payload": payload})


def _order_key(id: int) -> bytes:
    schema = {"type": "struct", "name": "shop.public.orders.Key", "fields": [_field("id", "int32")]}
    return orjson.dumps({"schema": schema, "payload": {"id": id}})


def _item(op: str, before: object, after: object) -> bytes:
    source = {"schema": "public", "table": "items", "lsn": 24023930, "ts_ms": 1704110400000}
    return orjson.dumps({"op": op, "before": before, "after": after, "source": source})


async def _columns(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        table,
    )
    return [(r[0], r[1]) for r in rows]


async def _primary_key(conn: asyncpg.Connection, table: str) -> list[str]:
    key: list[str] = await conn.fetchval(
        "SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = $1::regclass AND i.indisprimary",
        table,
    )
    return key


@pytest.mark.anyio
async def test_kafka_to_pg_creates_missing_tables_from_the_schema_section_or_the_values(
    cdc_topics: tuple[str, Topic, Topic], pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, orders, items = cdc_topics
    second = {**ORDER, "id": 2, "tags": None}
    changed = {**ORDER, "tags": ["z"], "total": "AQ=="}
    keys = [_order_key(1), _order_key(2), _order_key(1), _order_key(2), _order_key(2)]
    # One row's changes in one partition, as Debezium keys them.
    for partition, picked in ((0, [0, 2]), (1, [1, 3, 4])):
        messages = [
            _order("c", None, ORDER),
            _order("c", None, second),
            _order("u", ORDER, changed),
            _order("d", second, None),
            None,  # the tombstone after the delete
        ]
        await orders.produce(
            [messages[i] for i in picked], keys=[keys[i] for i in picked], partition=partition
        )
    ada = {"id": 1, "name": "Ada", "score": 1.5, "ok": True, "tags": ["a", 1], "note": None}
    bob = {"id": 2, "name": "Bob", "score": 2.0, "ok": False, "tags": {"k": [1]}, "note": "x"}
    await items.produce(
        [_item("c", None, ada), _item("c", None, bob)], keys=[b'{"id": 1}', b'{"id": 2}']
    )
    env = {
        "KAFKA_BOOTSTRAP": orders.bootstrap,
        "TOPICS": f"{orders.name},{items.name}",
        "TARGET_DSN": pg_database,
        "GROUP": orders.group,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    built = build_pipeline(REPO / "examples/kafka_to_pg.toml")
    assert isinstance(built.source, KafkaSource)
    built.source.session_timeout = 2.0  # the private broker joins a group in half of it

    async def committed() -> bool:
        done = await orders.committed(orders.group), await items.committed(orders.group)
        return done == ({0: 2, 1: 3}, {0: 2})

    with capture_logs():
        await run_while(built, committed)

    conn = await asyncpg.connect(pg_database)
    try:
        assert await _columns(conn, "orders") == [
            ("id", "integer"),
            ("placed", "date"),
            ("at", "timestamp without time zone"),
            ("paid", "timestamp with time zone"),
            ("total", "numeric(10,2)"),
            ("ratio", "numeric"),
            ("doc", "jsonb"),
            ("token", "uuid"),
            ("tags", "text[]"),
            ("blob", "bytea"),
            ("qty", "smallint"),
            ("weight", "double precision"),
            ("ok", "boolean"),
        ]
        assert await _primary_key(conn, "orders") == ["id"]
        [row] = await conn.fetch("SELECT * FROM orders")
        assert dict(row) == {
            "id": 1,
            "placed": dt.date(2024, 1, 1),
            "at": dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
            "paid": dt.datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=dt.UTC),
            "total": Decimal("0.01"),
            "ratio": Decimal("0.001"),
            "doc": '{"a": [1.50], "b": 1}',
            "token": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "tags": ["z"],
            "blob": b"\xde\xad\xbe\xef",
            "qty": 3,
            "weight": 2.5,
            "ok": True,
        }
        assert await _columns(conn, "items") == [
            ("id", "bigint"),
            ("name", "text"),
            ("score", "double precision"),
            ("ok", "boolean"),
            ("tags", "jsonb"),
            ("note", "text"),
        ]
        assert await _primary_key(conn, "items") == ["id"]
        rows = await conn.fetch(
            "SELECT id, name, score, ok, tags::text, note FROM items ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "Ada", 1.5, True, '["a", 1]', None),
            (2, "Bob", 2.0, False, '{"k": [1]}', "x"),
        ]
    finally:
        await conn.close()
