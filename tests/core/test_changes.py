"""ChangeEvent JSON and the Debezium envelope."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest

from asyncetl.core.changes import (
    UNCHANGED,
    ChangeEvent,
    decode_debezium,
    encode_debezium,
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
    assert back.after == {"id": 7, "total": "2.50", "note": UNCHANGED, "raw": "AQ=="}
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
            "version": "asyncetl-0.1.0",
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
