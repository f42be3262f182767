"""Turning dict records into COPY rows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from asyncetl.connectors.postgres._rows import (
    hash_payload,
    json_text,
    row_hash,
    salted_hash,
    uniform_rows,
)
from asyncetl.connectors.postgres._writers.row_hash import RowHash


def test_uniform_rows_gives_names_and_tuples_whatever_the_key_order() -> None:
    records = [{"id": 1, "name": "a"}, {"name": "b", "id": 2}]
    assert uniform_rows(records) == (("id", "name"), [(1, "a"), (2, "b")])


def test_uniform_rows_refuses_records_of_other_fields_even_of_the_same_length() -> None:
    assert uniform_rows([{"id": 1, "name": "a"}, {"id": 2, "email": "b"}]) is None
    assert uniform_rows([{"id": 1, "name": "a"}, {"id": 2}]) is None
    assert uniform_rows([]) is None


def test_json_text_encodes_only_values_that_are_not_text_yet() -> None:
    rows = [(1, '{"a": 1}'), (2, None)]
    assert json_text(rows, [1]) is rows
    assert json_text([(1, {"b": [1, 2]}), (2, '"x"'), (3, None)], [1]) == [
        (1, '{"b":[1,2]}'),
        (2, '"x"'),
        (3, None),
    ]


def test_a_time_with_a_zone_is_hashed_as_its_iso_text_at_any_depth() -> None:
    zoned = time(12, 34, 56, 789000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    row = (1, zoned, [time(0, tzinfo=UTC), None], {"t": zoned})
    assert hash_payload(row) == (
        b'[1,"12:34:56.789000+05:30",["00:00:00+00:00",null],{"t":"12:34:56.789000+05:30"}]'
    )


def test_a_value_the_hash_cannot_encode_still_fails_by_name() -> None:
    with pytest.raises(orjson.JSONEncodeError, match="Integer exceeds 64-bit range"):
        hash_payload((2**64,))


#: Hashes asyncetl wrote before non-finite floats were tagged: a target holding
#: these rows sees no change in them.
ORDINARY_HASHES = [
    ((1, None, 1.5, "NaN"), "0dbf86fd7c577f42c45c7bea5b09378b", "fc9cc59b34779415f2ba1e735515473b"),
    (
        (0.0, -0.0, Decimal("1.00"), Decimal("NaN"), Decimal("Infinity")),
        "181e4c676731515d9925b96c8dfc2834",
        "bd65ec91e0ab9f9701a5fbd4079bd0a4",
    ),
    (
        ({"a": [1.25, None]}, [None, 2.0], "x"),
        "bf95c821f0947534bc135f367e589e47",
        "560ff87d6a34fad5b6b0df2979848791",
    ),
    ((None,), "776cef04829d5d743f6a1bad2a143069", "ab56c7c5f053ac19fba89dba4d1b99b7"),
    (
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), b"\x01", 1e300),
        "ec39c3c503a7e5e05538023091cdf9cf",
        "00607c54a1474cd50253984c158469b6",
    ),
]


@pytest.mark.parametrize(("row", "unsalted", "salted"), ORDINARY_HASHES)
def test_rows_without_a_non_finite_float_keep_their_hashes(
    row: tuple[Any, ...], unsalted: str, salted: str
) -> None:
    assert (row_hash(row), row_hash(row, 1)) == (unsalted, salted)


def test_non_finite_floats_and_none_hash_apart_at_any_depth() -> None:
    nan, inf = float("nan"), float("inf")
    assert [hash_payload((v,)) for v in (nan, inf, -inf, None)] == [
        b'["\\u0000nan"]',
        b'["\\u0000inf"]',
        b'["\\u0000-inf"]',
        b"[null]",
    ]
    assert hash_payload(([nan, None], {"a": -inf}, None)) == (
        b'[["\\u0000nan",null],{"a":"\\u0000-inf"},null]'
    )
    assert row_hash((nan,)) == "2fda5e9deed17248a7ac18ceda372867"


def test_identical_rows_are_numbered_by_payload() -> None:
    """NaN equals no NaN, -0.0 equals 0.0: numbered by value, two NaN rows would share
    a hash and the second be dropped as already there."""
    hashed = RowHash(("*",))
    rows = [(float("nan"),), (float("nan"),), (0.0,), (-0.0,)]
    out = hashed.append_hashes(["x"], rows, numbered=True)
    nan, zero, minus_zero = hash_payload((float("nan"),)), b"[0.0]", b"[-0.0]"
    assert [row[1] for row in out] == [
        salted_hash(nan, 0),
        salted_hash(nan, 1),
        salted_hash(zero, 0),
        salted_hash(minus_zero, 0),
    ]
