"""Schema changes on the source while streaming: a new pgoutput Relation message mid-stream,
followed into the target or refused by the apply sink's schema contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from asyncetl import StageError
from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    replicate,
    table_text,
    wait_for,
)

pytestmark = pytest.mark.anyio

COLUMNS = (
    "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 's'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


async def test_evolve_follows_added_widened_and_dropped_columns(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE s (id int PRIMARY KEY, n int, gone text, label varchar(3));"
        "INSERT INTO s VALUES (1, 1, 'x', 'abc')",
    )
    await replicate(
        cdc_db,
        target_db,
        ["s"],
        [
            "ALTER TABLE s ADD COLUMN note text; INSERT INTO s VALUES (2, 2, 'y', 'b', 'hello')",
            "ALTER TABLE s ALTER COLUMN n TYPE bigint; UPDATE s SET n = 5000000000 WHERE id = 1",
            "ALTER TABLE s ALTER COLUMN label TYPE varchar(10);"
            "UPDATE s SET label = 'longer one' WHERE id = 2",
            "ALTER TABLE s DROP COLUMN gone; INSERT INTO s VALUES (3, 3, 'c', 'after drop')",
        ],
        schema_contract="evolve",
        columns="t.id, t.n, t.label, t.note",
    )
    assert [tuple(r) for r in await fetch(target_db, COLUMNS)] == [
        ("id", "integer"),
        ("n", "bigint"),
        ("gone", "text"),
        ("label", "character varying(10)"),
        ("note", "text"),
    ]
    # The dropped column keeps what it held; rows written after the drop leave it NULL.
    assert await table_text(target_db, "s") == [
        "(1,5000000000,x,abc,)",
        '(2,2,y,"longer one",hello)',
        '(3,3,,c,"after drop")',
    ]


def snapshot_applied(target_db: str) -> Callable[[], Awaitable[object]]:
    """Wait until the target holds the snapshot's row: the table is created without the
    columns the stream adds later."""

    async def applied() -> bool:
        return await table_text(target_db, "s", "t.id") == ["(1)"]

    async def wait() -> object:
        return await wait_for(applied)

    return wait


async def run_until_refused(cdc_db: str, target_db: str, statement: str) -> str:
    errors: list[BaseException] = []
    try:
        await replicate(
            cdc_db, target_db, ["s"], [snapshot_applied(target_db), statement], seconds=10
        )
    except* StageError as group:
        errors.extend(group.exceptions)
    assert len(errors) == 1
    return str(errors[0])


async def test_freeze_stops_at_a_new_column_naming_table_and_column(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1)")
    message = await run_until_refused(
        cdc_db, target_db, "ALTER TABLE s ADD COLUMN note text; INSERT INTO s VALUES (2, 2, 'x')"
    )
    assert (
        "column 'note' of source table public.s is missing from target table public.s; add it "
        'to the target or set schema_contract = "evolve" (or "discard_value", "discard_row")'
    ) in message
    assert await table_text(target_db, "s") == ["(1,1)"]


async def test_freeze_stops_at_a_widened_column_naming_both_types(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1)")
    message = await run_until_refused(
        cdc_db,
        target_db,
        "ALTER TABLE s ALTER COLUMN n TYPE bigint; INSERT INTO s VALUES (2, 5000000000)",
    )
    assert (
        "column 'n' of source table public.s is now bigint, wider than integer in target table "
        'public.s; alter the target column to bigint or set schema_contract = "evolve"'
    ) in message
    assert await table_text(target_db, "s") == ["(1,1)"]


@pytest.mark.parametrize(
    ("contract", "expected"), [("discard_value", ["(1,1)", "(2,2)"]), ("discard_row", ["(1,1)"])]
)
async def test_discard_modes_apply_changes_without_the_new_column(
    cdc_db: str, target_db: str, contract: str, expected: list[str]
) -> None:
    await execute(cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1)")
    await replicate(
        cdc_db,
        target_db,
        ["s"],
        [
            snapshot_applied(target_db),
            "ALTER TABLE s ADD COLUMN note text; INSERT INTO s VALUES (2, 2, 'x')",
            # a marker the wait can see: applied in both modes
            "ALTER TABLE s DROP COLUMN note; INSERT INTO s VALUES (3, 3)",
        ],
        schema_contract=contract,
        until=lambda: row_three_applied(target_db),
    )
    assert await table_text(target_db, "s") == [*expected, "(3,3)"]


async def row_three_applied(target_db: str) -> bool:
    return "(3)" in await table_text(target_db, "s", "t.id")
