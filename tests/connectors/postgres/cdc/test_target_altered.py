"""ApplySink after its target was altered from outside while it ran: the sink reads the
target again before refusing a change it was told it could not take."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from asyncetl.connectors.postgres import ApplySink
from asyncetl.core.batch import Batch
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import PermanentError
from tests.connectors.postgres.cdc.support import execute, fetch

pytestmark = pytest.mark.anyio

BEFORE = {"id": "integer", "name": "character varying(5)", "amount": "numeric(10,2)"}
AFTER = {"id": "integer", "name": "character varying(10)", "amount": "numeric(12,4)"}
ROWS = "SELECT id, name, amount::text FROM items ORDER BY id"


def insert(key: int, lsn: int, types: dict[str, str], **values: Any) -> Batch[ChangeEvent]:
    """A batch of one insert into ``items``, its source columns of ``types``."""
    row = {"id": key, **values}
    event = ChangeEvent(
        "c", "public", "items", {"id": key}, None, row, lsn, 0,
        columns={name: types[name] for name in row}, key_columns=("id",),
    )  # fmt: skip
    return Batch(key, [event], {"lsn": f"0/{lsn:X}"})


@asynccontextmanager
async def applied_first_row(target_db: str) -> AsyncIterator[ApplySink]:
    """A sink that applied row 1 to a new ``items`` of the ``BEFORE`` types; closed after."""
    await execute(
        target_db, "CREATE TABLE items (id int PRIMARY KEY, name varchar(5), amount numeric(10,2))"
    )
    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(insert(1, 100, BEFORE, name="abc", amount=Decimal("1.25")))
        yield sink
    finally:
        await sink.aclose()


async def test_a_target_widened_ahead_of_its_source_takes_the_wider_values(
    target_db: str,
) -> None:
    """The migration order that keeps a stream running: the target first, then the source."""
    async with applied_first_row(target_db) as sink:
        await execute(
            target_db,
            "ALTER TABLE items ALTER COLUMN name TYPE varchar(10), "
            "ALTER COLUMN amount TYPE numeric(12,4)",
        )
        await sink.write(insert(2, 200, AFTER, name="abcdefgh", amount=Decimal("1.2345")))
    assert [tuple(r) for r in await fetch(target_db, ROWS)] == [
        (1, "abc", "1.2500"),
        (2, "abcdefgh", "1.2345"),
    ]


async def test_a_target_column_added_as_the_refusal_asked_takes_the_values(
    target_db: str,
) -> None:
    await execute(target_db, "CREATE TABLE items (id int PRIMARY KEY, name varchar(5))")
    sink = ApplySink(target_db)
    await sink.open()
    try:
        with pytest.raises(PermanentError) as refused:
            await sink.write(insert(1, 100, BEFORE, name="abc", amount=Decimal("1.25")))
        assert str(refused.value) == (
            "column 'amount' of source table public.items is missing from target table "
            'public.items; add it to the target or set schema_contract = "evolve" '
            '(or "discard_value", "discard_row")'
        )
        await execute(target_db, "ALTER TABLE items ADD COLUMN amount numeric(10,2)")
        await sink.write(insert(1, 100, BEFORE, name="abc", amount=Decimal("1.25")))
    finally:
        await sink.aclose()
    assert [tuple(r) for r in await fetch(target_db, ROWS)] == [(1, "abc", "1.25")]


async def test_a_target_still_narrower_than_its_source_is_refused_by_name(
    target_db: str,
) -> None:
    async with applied_first_row(target_db) as sink:
        with pytest.raises(PermanentError) as refused:
            await sink.write(insert(2, 200, AFTER, name="abcdefgh", amount=Decimal("1.2345")))
    assert str(refused.value) == (
        "column 'name' of source table public.items is now character varying(10), wider than "
        "character varying(5) in target table public.items; alter the target column to "
        'character varying(10) or set schema_contract = "evolve"'
    )
    assert [tuple(r) for r in await fetch(target_db, ROWS)] == [(1, "abc", "1.25")]
