"""DebeziumEncoder writes exactly the bytes of encode_debezium, faster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import orjson
import pytest

from asyncetl.core.changes import (
    JSON_NULL,
    UNCHANGED,
    ChangeEvent,
    JsonText,
    encode_debezium,
    encode_debezium_key,
)
from asyncetl.core.debezium import DebeziumEncoder

WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
LATER = WHEN + dt.timedelta(seconds=1)


@dataclasses.dataclass
class Point:
    x: int


ROW = {
    "id": 7,
    "name": 'ß "quoted" \n',
    "score": 1.5,
    "nan": float("nan"),
    "flag": True,
    "none": None,
    "price": Decimal("12.340"),
    "huge": Decimal("-1E+30"),
    "at": WHEN,
    "naive": dt.datetime(1, 1, 1),
    "offset": dt.datetime(2024, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=5, seconds=15))),
    "day": dt.date(2024, 2, 29),
    "time": dt.time(23, 59, 59, 999999),
    "timetz": dt.time(1, 2, tzinfo=dt.UTC),
    "span": dt.timedelta(days=-1, microseconds=5),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xff",
    "memory": memoryview(b"ab"),
    "json": JsonText('{"b": 1, "a": [1.50]}'),
    "json_null": JSON_NULL,
    "toast": UNCHANGED,
    "array": [1, None, [Decimal("1.0"), WHEN]],
    "tuple": (dt.date(2020, 1, 1),),
    "nested": {1: {"k": Decimal("2")}},
    "point": Point(3),
}


def events() -> list[ChangeEvent]:
    common = {"schema": "public", "table": "items", "commit_time": WHEN, "xid": 9}
    return [
        ChangeEvent("c", after=dict(ROW), lsn=100, seq=0, **common),  # type: ignore[arg-type]
        ChangeEvent("u", before={"id": 7}, after=dict(ROW), lsn=101, **common),  # type: ignore[arg-type]
        ChangeEvent("d", before={"id": 7}, lsn=102, **common),  # type: ignore[arg-type]
        ChangeEvent("r", "public", "items", after={"id": 1}),
        ChangeEvent("t", "public", "items", lsn=103, commit_time=LATER),
        # Another table and transaction: nothing of the last event's envelope is kept.
        ChangeEvent("c", "sales", "orders", after={"id": 2}, lsn=104, commit_time=LATER, xid=10),
        ChangeEvent("c", "public", "items", after={"id": 3}, lsn=2**40, commit_time=LATER, xid=10),
    ]


@pytest.mark.parametrize("with_schema", [False, True])
def test_envelopes_and_keys_are_the_bytes_of_encode_debezium(with_schema: bool) -> None:
    encoder = DebeziumEncoder(name="shop", database="db1", with_schema=with_schema)
    for processed in (WHEN, LATER, LATER):  # the encoder keeps the last time's fields
        for event in events():
            if with_schema and event.after is not None:
                event = dataclasses.replace(event, after={"id": 7, "at": WHEN, "p": Decimal(1)})
            expected = encode_debezium(
                event,
                name="shop",
                database="db1",
                processed_at=processed,
                with_schema=with_schema,
            )
            assert encoder.envelope(event, processed) == orjson.dumps(expected)
            key = {"id": 7, "at": WHEN}
            expected_key: object = (
                encode_debezium_key(event, key, name="shop") if with_schema else key
            )
            assert encoder.key(event, key) == orjson.dumps(
                expected_key, default=str if not with_schema else None
            )


def test_a_value_json_cannot_hold_is_a_type_error() -> None:
    event = ChangeEvent("c", "public", "items", after={"n": 2**70}, lsn=1)

    with pytest.raises(TypeError, match="Integer exceeds 64-bit range"):
        DebeziumEncoder().envelope(event, WHEN)


class Moment(dt.datetime):
    """A datetime of another class: written by isoformat(), not as orjson would."""


@pytest.mark.parametrize(
    "value",
    [
        *ROW.values(),
        dt.datetime(1850, 7, 2, tzinfo=dt.timezone(dt.timedelta(minutes=9, seconds=21))),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        Moment(2024, 1, 2, tzinfo=dt.UTC),
        [dt.datetime(2024, 1, 2, tzinfo=dt.timezone(dt.timedelta(seconds=-15)))],
    ],
)
def test_each_value_beside_plain_ones_is_written_as_encode_debezium_writes_it(
    value: object,
) -> None:
    # Rows of plain values and UTC datetimes take a faster way than others: each kind of
    # value alone among plain ones, for each way.
    event = ChangeEvent("c", "public", "items", after={"id": 1, "at": WHEN, "value": value}, lsn=5)

    expected = encode_debezium(event, processed_at=LATER)
    assert DebeziumEncoder().envelope(event, LATER) == orjson.dumps(expected)
