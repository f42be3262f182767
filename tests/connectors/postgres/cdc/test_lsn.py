"""PostgreSQL's LSN text, and dead-lettered change events that carry it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncetl.connectors.postgres import CdcSource
from asyncetl.connectors.postgres.cdc._lsn import format_lsn, parse_lsn
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import ConfigError


@given(st.integers(0, 2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


def test_lsn_text() -> None:
    assert format_lsn(0x16B3748) == "0/16B3748"
    assert parse_lsn("1/0") == 2**32
    with pytest.raises(ConfigError, match="'16B3748' is not an LSN; write it as two hex numbers"):
        parse_lsn("16B3748")


def test_dead_letters_with_lsn_text_or_number_decode_to_the_same_event() -> None:
    # ChangeEvent.to_json wrote X/Y text while LSN text lived in core; such letters replay.
    source = CdcSource("postgresql://postgres@127.0.0.1/db", slot="s", publication="p")
    event = ChangeEvent("c", "public", "t", {"id": 1}, None, {"id": 1}, 0x16B3748, 2, options={})
    as_text = {**event.to_json(), "lsn": "0/16B3748"}
    assert source.decode(as_text) == source.decode(event.to_json()) == event
