"""Dead-lettered Debezium events replayed with ``dlq replay`` into the apply sink, as live."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl.connectors.kafka import KafkaSource
from asyncetl.spec import build_pipeline
from tests.connectors.kafka.helpers import Topic, run_while
from tests.connectors.kafka.refusing import ACCEPT_VARIABLE
from tests.connectors.kafka.test_examples import (
    ORDER,
    ORDER_FIELDS,
    REPO,
    _cli,
    _columns,
    _field,
    _order_key,
)

# The example, with a transform that refuses a negative quantity (until fixed) and a
# sink that evolves the target as the events' schema grows.
TRANSFORM = """
[[transforms]]
function = "tests.connectors.kafka.refusing:check_quantity"
on_error = "dead_letter"

[sink]
schema_contract = "evolve"
"""


def _spec(path: Path) -> Path:
    text = (REPO / "examples/kafka_to_pg.toml").read_text()
    head, sink = text.split("[sink]\n")
    path.write_text(head + TRANSFORM + sink)
    return path


def _message(after: dict[str, object], fields: list[dict[str, object]]) -> bytes:
    row = {"type": "struct", "optional": True, "name": "shop.public.orders.Value"}
    schema = {
        "type": "struct",
        "name": "shop.public.orders.Envelope",
        "fields": [
            {**row, "fields": fields, "field": "before"},
            {**row, "fields": fields, "field": "after"},
            {"type": "struct", "field": "source", "fields": []},
            {"type": "string", "field": "op"},
        ],
    }
    source = {"schema": "public", "table": "orders", "lsn": 24023928, "ts_ms": 1704110400000}
    payload = {"op": "c", "before": None, "after": after, "source": source}
    return orjson.dumps({"schema": schema, "payload": payload})


def _row(id: int, qty: int, note: str | None) -> dict[str, object]:
    return {
        "id": id,
        "ratio": Decimal("0.001"),
        "placed": dt.date(2024, 1, 1),
        "at": dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
        "paid": dt.datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=dt.UTC),
        "total": Decimal("123.45"),
        "doc": '{"a": [1.50], "b": 1}',
        "token": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "tags": ["x", "y"],
        "blob": b"\xde\xad\xbe\xef",
        "qty": qty,
        "weight": 2.5,
        "ok": True,
        "note": note,
    }


@pytest.mark.anyio
async def test_a_replayed_debezium_event_evolves_and_fills_the_target_as_a_live_one_does(
    single: Topic, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        # Narrower than the schema section's `numeric`: the schema declares the type that
        # holds the values, not a change of the source's column, so nothing widens it.
        await conn.execute("CREATE TABLE orders (id integer PRIMARY KEY, ratio numeric(10,3))")
    finally:
        await conn.close()
    # The refused event's schema has a column more (`note`): replayed, it adds it.
    grown = [*ORDER_FIELDS, _field("note", "string")]
    await single.produce(
        [
            _message(ORDER, ORDER_FIELDS),
            _message({**ORDER, "id": 2, "qty": -1, "note": "late"}, grown),
        ],
        keys=[_order_key(1), _order_key(2)],
    )
    env = {
        "KAFKA_BOOTSTRAP": single.bootstrap,
        "TOPICS": single.name,
        "TARGET_DSN": pg_database,
        "GROUP": single.group,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(ACCEPT_VARIABLE, raising=False)
    spec = _spec(tmp_path / "kafka_to_pg.toml")
    built = build_pipeline(spec)
    assert isinstance(built.source, KafkaSource)
    built.source.session_timeout = 2.0  # the private broker joins a group in half of it

    async def committed() -> bool:
        return await single.committed() == {0: 2}

    with capture_logs():
        await run_while(built, committed)

    conn = await asyncpg.connect(pg_database)
    try:
        [letter] = await conn.fetch("SELECT stage, error FROM asyncetl_dead_letters")
        assert tuple(letter) == (
            "tests.connectors.kafka.refusing:check_quantity",
            "qty -1 is negative",
        )
        assert [r["id"] for r in await conn.fetch("SELECT id FROM orders")] == [1]
    finally:
        await conn.close()

    replayed = _cli("dlq", "replay", str(spec), "--log-level", "error", env={ACCEPT_VARIABLE: "1"})
    assert (replayed.returncode, replayed.stderr) == (0, "")
    assert (
        replayed.stdout
        == "replayed 1 dead letter: 1 loaded and removed, 0 still failing and kept\n"
    )

    conn = await asyncpg.connect(pg_database)
    try:
        assert await _columns(conn, "orders") == [
            ("id", "integer"),
            ("ratio", "numeric(10,3)"),
            ("placed", "date"),
            ("at", "timestamp without time zone"),
            ("paid", "timestamp with time zone"),
            ("total", "numeric(10,2)"),
            ("doc", "jsonb"),
            ("token", "uuid"),
            ("tags", "text[]"),
            ("blob", "bytea"),
            ("qty", "smallint"),
            ("weight", "double precision"),
            ("ok", "boolean"),
            ("note", "text"),
        ]
        rows = [dict(r) for r in await conn.fetch("SELECT * FROM orders ORDER BY id")]
        assert rows == [_row(1, 3, None), _row(2, -1, "late")]
        assert await conn.fetchval("SELECT count(*) FROM asyncetl_dead_letters") == 0
    finally:
        await conn.close()
