"""ChangeEvent JSON and the Debezium envelope."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest

from asyncetl.core.changes import (
    UNCHANGED,
    ChangeEvent,
    JsonText,
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


def test_debezium_encode() -> None:
    assert encode_debezium(update()) == {
        "before": {"id": 7, "total": "1.50"},
        "after": {"id": 7, "total": "2.50", "note": "__debezium_unavailable_value", "raw": "AQ=="},
        "source": {
            "connector": "postgresql",
            "name": "asyncetl",
            "schema": "public",
            "table": "orders",
            "lsn": 0x16B3748,
            "txId": 901,
            "ts_ms": 1714979289123,
            "snapshot": "false",
            "sequence": "[3]",
        },
        "op": "u",
        "ts_ms": 1714979289123,
        "transaction": None,
    }


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
    assert (back.op, back.table, back.lsn, back.seq, back.xid) == ("u", "orders", event.lsn, 3, 901)
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
