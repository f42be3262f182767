"""Turning dict records into COPY rows."""

from __future__ import annotations

from datetime import UTC, time, timedelta, timezone

import orjson
import pytest

from asyncetl.connectors.postgres._rows import hash_payload, json_text, uniform_rows


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
