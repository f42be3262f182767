"""Debezium messages as Debezium's PostgreSQL connector writes them, decoded to exact values.

The fixtures are written by hand from Debezium's documented representation of
each type (JSON converter, ``schemas.enable`` on and off), not by asyncetl's encoder.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping

import orjson
import pytest

from asyncetl import JsonValue
from asyncetl.connectors.kafka import KafkaSource
from asyncetl.core.changes import UNCHANGED, ChangeEvent

SOURCE = {
    "version": "2.7.0.Final",
    "connector": "postgresql",
    "name": "dbserver1",
    "ts_ms": 1704110400000,
    "snapshot": "true",
    "db": "shop",
    "sequence": '[null,"24023928"]',
    "schema": "public",
    "table": "items",
    "txId": 555,
    "lsn": 24023928,
    "xmin": None,
}


def _field(field: str, kind: str, name: str | None = None, **extra: object) -> dict[str, object]:
    found: dict[str, object] = {"field": field, "type": kind, "optional": True, **extra}
    if name is not None:
        found["name"] = name
    return found


COLUMNS = [
    _field("id", "int32"),
    _field("born", "int32", "io.debezium.time.Date"),
    _field("created", "int64", "io.debezium.time.MicroTimestamp"),
    _field("updated", "string", "io.debezium.time.ZonedTimestamp"),
    _field("at", "int64", "io.debezium.time.MicroTime"),
    _field(
        "price",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        parameters={"scale": "2", "connect.decimal.precision": "7"},
    ),
    _field("refund", "bytes", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "2"}),
    _field(
        "ratio",
        "struct",
        "io.debezium.data.VariableScaleDecimal",
        fields=[_field("scale", "int32"), _field("value", "bytes")],
    ),
    _field("doc", "string", "io.debezium.data.Json"),
    _field("token", "string", "io.debezium.data.Uuid"),
    _field("flags", "bytes", "io.debezium.data.Bits", parameters={"length": "3"}),
    _field("tags", "array", items={"type": "string", "optional": True}),
    _field("blob", "bytes"),
    _field("note", "string"),
]
ROW = {
    "id": 7,
    "born": 19723,
    "created": 1704110400123456,
    "updated": "2024-01-01T12:00:00.5Z",
    "at": 45296789012,
    "price": "MDk=",
    "refund": "z8c=",
    "ratio": {"scale": 3, "value": "AQ=="},
    "doc": '{"a": 1}',
    "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "flags": "BQ==",
    "tags": ["x", "y"],
    "blob": "3q2+7w==",
    "note": "__debezium_unavailable_value",
}
TYPED = {
    "id": 7,
    "born": dt.date(2024, 1, 1),
    "created": dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
    "updated": dt.datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=dt.UTC),
    "at": dt.time(12, 34, 56, 789012),
    "price": decimal.Decimal("123.45"),
    "refund": decimal.Decimal("-123.45"),
    "ratio": decimal.Decimal("0.001"),
    "doc": '{"a": 1}',
    "token": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "flags": b"\x05",
    "tags": ["x", "y"],
    "blob": b"\xde\xad\xbe\xef",
    "note": UNCHANGED,
}


def _with_schema(payload: Mapping[str, object]) -> dict[str, object]:
    row = {
        "type": "struct",
        "optional": True,
        "name": "dbserver1.public.items.Value",
        "fields": COLUMNS,
    }
    return {
        "schema": {
            "type": "struct",
            "name": "dbserver1.public.items.Envelope",
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                {"type": "struct", "field": "source", "fields": []},
                {"type": "string", "field": "op"},
                {"type": "int64", "field": "ts_ms", "optional": True},
            ],
        },
        "payload": payload,
    }


def _decoded(value: Mapping[str, object], key: object = None) -> ChangeEvent:
    source = KafkaSource("127.0.0.1:9", ["dbserver1.public.items"], group="g", format="debezium")
    letter: JsonValue = {
        "topic": "dbserver1.public.items",
        "partition": 0,
        "offset": 0,
        "key": None if key is None else orjson.dumps(key).decode(),
        "value": orjson.dumps(value).decode(),
        "headers": {},
    }
    event = source.decode(letter)
    assert isinstance(event, ChangeEvent)
    return event


def test_values_are_typed_by_the_schema_section() -> None:
    payload = {"before": None, "after": ROW, "source": SOURCE, "op": "r", "ts_ms": 1704110400500}
    key = {"schema": {"type": "struct", "fields": [_field("id", "int32")]}, "payload": {"id": 7}}

    event = _decoded(_with_schema(payload), key)

    assert event.after == TYPED
    assert (event.op, event.schema, event.table, event.key, event.key_columns) == (
        "r",
        "public",
        "items",
        {"id": 7},
        ("id",),
    )
    assert event.commit_time == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    assert (event.xid, event.lsn) == (555, None)  # partitions, not LSNs, order Kafka's events


def test_without_a_schema_values_keep_their_json_types() -> None:
    payload = {"before": {"id": 7, "price": "MDk="}, "after": None, "source": SOURCE, "op": "d"}

    event = _decoded(payload, {"id": 7})

    assert (event.op, event.before, event.after) == ("d", {"id": 7, "price": "MDk="}, None)


def test_nanoseconds_python_cannot_hold_make_the_message_a_reject() -> None:
    columns = [_field("t", "int64", "io.debezium.time.NanoTimestamp")]
    doc = _with_schema(
        {"before": None, "after": {"t": 1704110400123456789}, "source": SOURCE, "op": "c"}
    )
    doc["schema"]["fields"][1]["fields"] = columns  # type: ignore[index]
    with pytest.raises(ValueError, match="has nanoseconds, which Python's datetime cannot hold"):
        _decoded(doc)
