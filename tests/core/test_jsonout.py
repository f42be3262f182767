"""The one rule for values JSON lacks, shared by every sink that writes JSON."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from asyncetl.core.columnar import plain_value
from asyncetl.core.jsonout import json_default, json_text


def test_bytes_are_base64_and_other_values_their_str() -> None:
    assert json_default(b"\x00\xff") == "AP8="
    assert json_default(bytearray(b"ab")) == "YWI="
    assert json_default(memoryview(b"abc")) == "YWJj"
    assert json_default(Decimal("1.50")) == "1.50"
    assert json_default(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_json_text_takes_what_orjson_refuses_with_the_same_rule() -> None:
    assert json_text({"b": b"\x00\xff", 1: date(2024, 1, 2)}) == '{"b":"AP8=","1":"2024-01-02"}'
    assert json_text({"b": b"\x00\xff", "big": 2**70}) == (
        '{"b": "AP8=", "big": 1180591620717411303424}'
    )


def test_columnar_sinks_write_containers_by_the_same_rule() -> None:
    assert plain_value({"b": b"\x00\xff"}) == '{"b":"AP8="}'
    assert plain_value(b"\x00\xff") == b"\x00\xff"  # bytes alone stay binary
