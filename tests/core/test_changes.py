"""ChangeEvent JSON and the Debezium envelope."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

import asyncetl
from asyncetl.core.batch import JsonValue
from asyncetl.core.changes import (
    JSON_NULL,
    UNCHANGED,
    ChangeEvent,
    DeclaredColumns,
    JsonText,
    decode_debezium,
    encode_debezium,
    encode_debezium_key,
    revive,
)
from asyncetl.core.deadletter import to_jsonable
from asyncetl.core.errors import ConfigError

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)


def update() -> ChangeEvent:
    return ChangeEvent(
        "u",
        "public",
        "orders",
        {"id": 7},
        {"id": 7, "total": Decimal("1.50")},
        {"id": 7, "total": Decimal("2.50"), "note": UNCHANGED, "raw": b"\x01"},
        lsn=0x16B3748,
        seq=3,
        commit_time=WHEN,
        xid=901,
        columns={"id": "integer", "total": "numeric", "note": "text", "raw": "bytea"},
        key_columns=("id",),
    )


def test_json_round_trip_keeps_the_unchanged_marker() -> None:
    event = update()
    data = orjson.loads(orjson.dumps(event.to_json()))
    back = ChangeEvent.from_json(data)
    assert back.after == {"id": 7, "total": "2.50", "note": UNCHANGED, "raw": b"\x01"}
    assert (back.op, back.key, back.lsn, back.seq, back.commit_time, back.xid) == (
        "u",
        {"id": 7},
        0x16B3748,
        3,
        WHEN,
        901,
    )
    assert back.unchanged == {"note"} and back.key_columns == ("id",)
    assert back.qualified_table == "public.orders"


def test_json_lsn_is_the_integer() -> None:
    assert update().to_json()["lsn"] == 0x16B3748
    assert ChangeEvent.from_json({"op": "c", "lsn": "23803720"}).lsn == 23803720
    assert ChangeEvent.from_json({"op": "r", "lsn": None}).lsn is None


def test_lsn_text_of_a_database_is_not_read_here() -> None:
    with pytest.raises(ConfigError, match=r"^change event has lsn '0/16B3748'; expected a number$"):
        ChangeEvent.from_json({"op": "c", "lsn": "0/16B3748"})
    message = {"op": "c", "source": {"lsn": "0/16B3748"}}
    with pytest.raises(
        ConfigError, match=r"^Debezium source block has lsn '0/16B3748'; expected a number$"
    ):
        decode_debezium(message)


def test_dead_letter_form_decodes() -> None:
    # What the dead-letter store keeps of an event (orjson's dataclass encoding) decodes again.
    raw = to_jsonable(update())
    back = ChangeEvent.from_json(raw)
    assert back.lsn == 0x16B3748 and back.after is not None and back.after["note"] is UNCHANGED


PROCESSED = dt.datetime(2024, 5, 6, 7, 8, 10, 456789, tzinfo=dt.UTC)


def test_debezium_encode() -> None:
    envelope = encode_debezium(update(), name="shop", database="sales", processed_at=PROCESSED)
    assert envelope == {
        "before": {"id": 7, "total": "1.50"},
        "after": {"id": 7, "total": "2.50", "note": "__debezium_unavailable_value", "raw": "AQ=="},
        "source": {
            "version": f"asyncetl-{asyncetl.__version__}",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 1714979289123,
            "ts_us": 1714979289123000,
            "ts_ns": 1714979289123000000,
            "snapshot": "false",
            "db": "sales",
            "sequence": '[null,"23803720"]',
            "schema": "public",
            "table": "orders",
            "txId": 901,
            "lsn": 0x16B3748,
            "xmin": None,
        },
        "transaction": None,
        "op": "u",
        "ts_ms": 1714979290456,
        "ts_us": 1714979290456789,
        "ts_ns": 1714979290456789000,
    }


#: An update event of Debezium's PostgreSQL connector (JSON converter, schemas off), as its
#: documentation shows one for a ``customers`` table.
DEBEZIUM_UPDATE: dict[str, Any] = {
    "before": {"id": 1},
    "after": {
        "id": 1,
        "first_name": "Anne Marie",
        "last_name": "Kretchmar",
        "email": "annek@noanswer.org",
    },
    "source": {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "PostgreSQL_server",
        "ts_ms": 1559033904863,
        "ts_us": 1559033904863769,
        "ts_ns": 1559033904863769000,
        "snapshot": "false",
        "db": "postgres",
        "sequence": '["24023119","24023128"]',
        "schema": "public",
        "table": "customers",
        "txId": 556,
        "lsn": 24023128,
        "xmin": None,
    },
    "transaction": None,
    "op": "u",
    "ts_ms": 1465584025523,
    "ts_us": 1465584025523514,
    "ts_ns": 1465584025523514964,
}


def _shape(value: object) -> object:
    """Field names and JSON types, recursively: what a consumer of the envelope relies on."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_an_encoded_envelope_has_every_field_of_debeziums_with_the_same_json_types() -> None:
    event = ChangeEvent(
        "u",
        "public",
        "customers",
        {"id": 1},
        {"id": 1},
        dict(DEBEZIUM_UPDATE["after"]),
        lsn=24023128,
        commit_time=dt.datetime(2019, 5, 28, 8, 58, 24, 863769, tzinfo=dt.UTC),
        xid=556,
    )
    ours: dict[str, Any] = encode_debezium(event, name="PostgreSQL_server", database="postgres")
    theirs = DEBEZIUM_UPDATE

    assert list(ours) == list(theirs)
    assert list(ours["source"]) == list(theirs["source"])
    assert _shape(ours) == _shape(theirs)
    for field in ("name", "connector", "ts_ms", "ts_us", "ts_ns", "snapshot", "db", "schema"):
        assert ours["source"][field] == theirs["source"][field], field
    for field in ("table", "txId", "lsn", "xmin"):
        assert ours["source"][field] == theirs["source"][field], field
    sequence = orjson.loads(ours["source"]["sequence"])
    assert sequence == [None, "24023128"]  # Debezium's [last commit LSN, LSN], as text
    assert (ours["before"], ours["after"], ours["op"]) == (
        theirs["before"],
        theirs["after"],
        theirs["op"],
    )


def test_a_debezium_update_decodes_to_the_exact_event() -> None:
    event = decode_debezium(orjson.dumps(DEBEZIUM_UPDATE))
    assert event == ChangeEvent(
        "u",
        "public",
        "customers",
        None,
        {"id": 1},
        DEBEZIUM_UPDATE["after"],
        lsn=24023128,
        commit_time=dt.datetime(2019, 5, 28, 8, 58, 24, 863769, tzinfo=dt.UTC),
        xid=556,
    )


def test_the_envelope_before_ts_us_still_decodes_its_sequence_and_milliseconds() -> None:
    older: dict[str, Any] = {
        "before": None,
        "after": {"id": 7},
        "source": {"schema": "public", "table": "orders", "lsn": 5, "ts_ms": 1714979289123},
        "op": "c",
        "ts_ms": 1714979289123,
    }
    older["source"]["sequence"] = "[3]"
    event = decode_debezium(older)
    assert (event.lsn, event.seq, event.commit_time) == (5, 3, WHEN)


def test_debezium_decode_with_schema_wrapper() -> None:
    message = {
        "schema": {"type": "struct"},
        "payload": {
            "before": None,
            "after": {"id": 1, "doc": "__debezium_unavailable_value"},
            "source": {
                "schema": "inventory",
                "table": "customers",
                "lsn": 33227720,
                "txId": 565,
                "ts_ms": 1559033904863,
            },
            "op": "c",
            "ts_ms": 1559033904863,
        },
    }
    event = decode_debezium(orjson.dumps(message))
    assert (event.op, event.schema, event.table, event.lsn, event.xid) == (
        "c",
        "inventory",
        "customers",
        33227720,
        565,
    )
    assert event.after == {"id": 1, "doc": UNCHANGED}
    assert event.commit_time == dt.datetime(2019, 5, 28, 8, 58, 24, 863000, tzinfo=dt.UTC)


def test_debezium_round_trip() -> None:
    event = update()
    back = decode_debezium(encode_debezium(event))
    # The ordinal within the transaction has no place in Debezium's envelope.
    assert (back.op, back.table, back.lsn, back.seq, back.xid) == ("u", "orders", event.lsn, 0, 901)
    assert back.commit_time == WHEN


def test_debezium_errors() -> None:
    with pytest.raises(
        ConfigError, match="Debezium message has op 'x'; expected one of c, u, d, r, t"
    ):
        decode_debezium({"op": "x"})
    with pytest.raises(ConfigError, match="Debezium message is not valid JSON"):
        decode_debezium(b"{nope")


def test_json_text_comes_back_from_a_dead_letter_as_json_text() -> None:
    text = JsonText('{"b": 1,  "a": 1.50}')
    event = ChangeEvent(
        "c",
        "public",
        "t",
        {"id": 1},
        None,
        {"id": 1, "j": text, "s": "plain"},
        5,
        0,
        columns={"id": "integer", "j": "json", "s": "text"},
    )
    back = ChangeEvent.from_json(orjson.loads(orjson.dumps(event.to_json())))
    assert back.after == {"id": 1, "j": '{"b": 1,  "a": 1.50}', "s": "plain"}
    assert back.after is not None
    assert type(back.after["j"]) is JsonText and type(back.after["s"]) is str


def typed_insert() -> ChangeEvent:
    return ChangeEvent(
        "c",
        "public",
        "customers",
        {"id": 1},
        None,
        {
            "id": 1,
            "born": dt.date(2019, 5, 28),
            "created": dt.datetime(2019, 5, 28, 8, 58, 24, 863769),
            "seen": dt.datetime(2019, 5, 28, 10, 58, 24, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "at": dt.time(8, 58, 24, 863769),
            "price": Decimal("19.99"),
            "debt": Decimal("-123.45"),
            "token": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "doc": {"a": [1, 2]},
            "tags": ["x", "y"],
            "raw": b"\x01\x02",
            "note": UNCHANGED,
            "gone": None,
        },
        lsn=24023128,
        commit_time=WHEN,
        xid=555,
        columns={
            "id": "integer",
            "born": "date",
            "created": "timestamp without time zone",
            "seen": "timestamp with time zone",
            "at": "time without time zone",
            "price": "numeric",
            "debt": "numeric",
            "token": "uuid",
            "doc": "jsonb",
            "tags": "text[]",
            "raw": "bytea",
            "note": "text",
            "gone": "bigint",
        },
        key_columns=("id",),
    )


def test_with_schema_values_are_written_as_debeziums_postgresql_connector_types_them() -> None:
    message: dict[str, Any] = encode_debezium(
        typed_insert(), name="shop", database="db", processed_at=PROCESSED, with_schema=True
    )
    assert message["payload"]["after"] == {
        "id": 1,
        "born": 18044,  # io.debezium.time.Date: days since the epoch
        "created": 1559033904863769,  # MicroTimestamp: microseconds since the epoch
        "seen": "2019-05-28T08:58:24Z",  # ZonedTimestamp: ISO-8601 in UTC
        "at": 32304863769,  # MicroTime: microseconds past midnight
        "price": {"scale": 2, "value": "B88="},  # VariableScaleDecimal: 1999, big-endian
        "debt": {"scale": 2, "value": "z8c="},  # -12345, two's complement
        "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "doc": '{"a":[1,2]}',  # io.debezium.data.Json: the JSON text
        "tags": ["x", "y"],
        "raw": "AQI=",  # bytes: base64
        "note": "__debezium_unavailable_value",
        "gone": None,
    }
    assert message["payload"]["before"] is None
    assert message["payload"]["source"]["lsn"] == 24023128

    schema = message["schema"]
    assert (schema["name"], schema["version"], schema["optional"]) == (
        "shop.public.customers.Envelope",
        2,
        False,
    )
    fields = {field["field"]: field for field in schema["fields"]}
    assert list(fields) == [
        "before",
        "after",
        "source",
        "transaction",
        "op",
        "ts_ms",
        "ts_us",
        "ts_ns",
    ]
    assert fields["source"]["name"] == "io.debezium.connector.postgresql.Source"
    assert [f["field"] for f in fields["source"]["fields"]] == list(
        encode_debezium(typed_insert())["source"]  # type: ignore[arg-type]
    )
    value = fields["after"]
    assert (value["name"], value["optional"]) == ("shop.public.customers.Value", True)
    assert fields["before"]["fields"] == value["fields"]
    columns = {f["field"]: {k: v for k, v in f.items() if k != "field"} for f in value["fields"]}
    assert columns == {
        "id": {"type": "int32", "optional": True},
        "born": {"type": "int32", "name": "io.debezium.time.Date", "version": 1, "optional": True},
        "created": {
            "type": "int64",
            "name": "io.debezium.time.MicroTimestamp",
            "version": 1,
            "optional": True,
        },
        "seen": {
            "type": "string",
            "name": "io.debezium.time.ZonedTimestamp",
            "version": 1,
            "optional": True,
        },
        "at": {
            "type": "int64",
            "name": "io.debezium.time.MicroTime",
            "version": 1,
            "optional": True,
        },
        "price": {
            "type": "struct",
            "name": "io.debezium.data.VariableScaleDecimal",
            "version": 1,
            "doc": "Variable scaled decimal",
            "fields": [
                {"type": "int32", "optional": False, "field": "scale"},
                {"type": "bytes", "optional": False, "field": "value"},
            ],
            "optional": True,
        },
        "debt": columns["price"],
        "token": {
            "type": "string",
            "name": "io.debezium.data.Uuid",
            "version": 1,
            "optional": True,
        },
        "doc": {"type": "string", "name": "io.debezium.data.Json", "version": 1, "optional": True},
        "tags": {"type": "array", "items": {"type": "string", "optional": True}, "optional": True},
        "raw": {"type": "bytes", "optional": True},
        "note": {"type": "string", "optional": True},
        "gone": {"type": "int64", "optional": True},
    }


def test_with_schema_the_key_is_debeziums_key_struct() -> None:
    event = typed_insert()
    assert encode_debezium_key(event, {"id": 1}, name="shop") == {
        "schema": {
            "type": "struct",
            "fields": [{"type": "int32", "optional": False, "field": "id"}],
            "optional": False,
            "name": "shop.public.customers.Key",
        },
        "payload": {"id": 1},
    }


def declared_insert() -> ChangeEvent:
    """An insert decoded from a Debezium message whose schema section declared its columns."""
    return ChangeEvent(
        "c",
        "public",
        "orders",
        {"id": 1},
        None,
        {"id": 1, "blob": b"\xde\xad", "doc": JsonText('{"b": 1}'), "nothing": JSON_NULL},
        commit_time=WHEN,
        columns=DeclaredColumns(id="integer", blob="bytea", doc="jsonb", nothing="json"),
        key_columns=("id",),
    )


def test_a_dead_letter_keeps_declared_columns_bytes_and_json_of_an_event() -> None:
    event = declared_insert()
    stored = orjson.loads(orjson.dumps(to_jsonable(event)))
    assert stored["columns_declared"] is True
    assert stored["after"] == {"id": 1, "blob": "3q0=", "doc": '{"b": 1}', "nothing": "null"}
    back = revive(stored)
    assert isinstance(back, ChangeEvent) and type(back.columns) is DeclaredColumns
    assert (back.key, back.commit_time, back.columns, back.key_columns) == (
        event.key,
        event.commit_time,
        event.columns,
        event.key_columns,
    )
    assert back.after is not None
    assert back.after["blob"] == b"\xde\xad" and type(back.after["doc"]) is JsonText
    # JSON null as its text: what a json column gets of either.
    assert back.after["nothing"] == "null" and type(back.after["nothing"]) is JsonText


def test_source_columns_stay_the_sources_through_a_dead_letter() -> None:
    back = revive(to_jsonable(update()))
    assert isinstance(back, ChangeEvent) and type(back.columns) is dict
    assert back.after is not None and back.after["raw"] == b"\x01"


def test_a_letter_stored_before_columns_declared_was_written_still_revives() -> None:
    # What to_jsonable stored of an event before: orjson's encoding of the dataclass,
    # bytes as their repr, no columns_declared (columns are then read as the source's).
    old = orjson.loads(orjson.dumps(update(), default=str))
    assert "columns_declared" not in old and old["after"]["raw"] == "b'\\x01'"
    back = revive(old)
    assert isinstance(back, ChangeEvent) and type(back.columns) is dict
    assert back.after == {"id": 7, "total": "2.50", "note": UNCHANGED, "raw": b"\x01"}
    assert (back.lsn, back.seq, back.commit_time, back.key_columns) == (
        0x16B3748,
        3,
        WHEN,
        ("id",),
    )


def test_revive_leaves_records_that_are_no_change_event_alone() -> None:
    record: dict[str, JsonValue] = {"op": "c", "schema": "public", "table": "t"}
    assert revive(record) is record
    assert revive([1, 2]) == [1, 2]
