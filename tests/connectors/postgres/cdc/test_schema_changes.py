"""Schema changes on the source while streaming: a new pgoutput Relation message mid-stream,
followed into the target or refused by the apply sink's schema contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import structlog.testing

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


DEFAULTS = (
    "SELECT attname::text, pg_get_expr(adbin, adrelid) FROM pg_attrdef "
    "JOIN pg_attribute ON attrelid = adrelid AND attnum = adnum WHERE adrelid = 's'::regclass"
)


async def test_evolve_gives_older_rows_the_value_of_the_source_default(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1), (2, 2)"
    )
    await replicate(
        cdc_db,
        target_db,
        ["s"],
        [
            lambda: wait_for(lambda: ids_applied(target_db, "(1)", "(2)")),
            # A row written just before the columns came, in the same batch or the one before.
            "INSERT INTO s VALUES (3, 3)",
            "ALTER TABLE s ADD COLUMN d int DEFAULT 7, ADD COLUMN note text DEFAULT 'a \"b\" \\ c',"
            " ADD COLUMN tags int[] DEFAULT '[0:1]={1,2}', ADD COLUMN day date DEFAULT '2024-02-29',"
            " ADD COLUMN plain text;"
            # Rows older than the column keep the value it had when it was added.
            "ALTER TABLE s ALTER COLUMN d SET DEFAULT 8",
            "INSERT INTO s (id, n) VALUES (4, 4); UPDATE s SET n = 20 WHERE id = 2",
        ],
        schema_contract="evolve",
        read_source=True,
    )
    older = '"a ""b"" \\\\ c","[0:1]={1,2}",2024-02-29,)'
    assert await table_text(target_db, "s") == [
        f"(1,1,7,{older}",
        f"(2,20,7,{older}",
        f"(3,3,7,{older}",
        f"(4,4,8,{older}",
    ]
    # The defaults that filled older rows are gone: the target's inserts name every column.
    assert await fetch(target_db, DEFAULTS) == []


async def test_evolve_copies_the_values_volatile_defaults_gave_older_rows_from_the_source(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1), (2, 2), (3, 3)",
    )
    with structlog.testing.capture_logs() as logs:
        await replicate(
            cdc_db,
            target_db,
            ["s"],
            [
                lambda: wait_for(lambda: ids_applied(target_db, "(1)", "(2)", "(3)")),
                # A row written just before the columns came, in the same batch or the one before.
                "INSERT INTO s VALUES (4, 4)",
                "ALTER TABLE s ADD COLUMN r float8 DEFAULT random(),"
                " ADD COLUMN at timestamptz DEFAULT clock_timestamp(),"
                " ADD COLUMN u uuid DEFAULT gen_random_uuid();"
                "INSERT INTO s (id, n) VALUES (5, 5); UPDATE s SET r = -1 WHERE id = 2",
            ],
            schema_contract="evolve",
            read_source=True,
        )
    # replicate returned: row(t.*)::text of every row is the same in source and target.
    source = await table_text(cdc_db, "s")
    assert await table_text(target_db, "s") == source
    assert len(source) == 5
    # Each older row got its own values, and the one updated since keeps its streamed one.
    assert len({row.split(",", 2)[2] for row in source}) == 5
    assert [tuple(r) for r in await fetch(target_db, "SELECT id, r FROM s WHERE id = 2")] == [
        (2, -1.0)
    ]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == []


async def test_evolve_copies_the_values_a_rewrite_left_in_older_rows(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1)")
    await replicate(
        cdc_db,
        target_db,
        ["s"],
        [
            snapshot_applied(target_db),
            # The rewrite stores 7 in every row and clears the catalog's missing value.
            "ALTER TABLE s ADD COLUMN d int DEFAULT 7; ALTER TABLE s ALTER COLUMN n TYPE bigint;"
            "ALTER TABLE s ALTER COLUMN d SET DEFAULT 8; INSERT INTO s (id, n) VALUES (2, 2)",
        ],
        schema_contract="evolve",
        read_source=True,
    )
    assert await table_text(target_db, "s") == ["(1,1,7)", "(2,2,8)"]


VOLATILE_WARNING = (
    "column 'r' of source table public.s has default random(), which is volatile, so each "
    "row got its own value: rows of target table public.s that no change has reached since "
    "hold NULL in it; copy the values from the source to keep them"
)
NO_SOURCE_WARNING = (
    "columns added; rows already in the target hold NULL in them, whatever default the source "
    "gave its rows: give the sink source_dsn to copy it"
)


@pytest.mark.parametrize(
    ("key", "read_source", "warning"),
    [("", True, VOLATILE_WARNING), (" PRIMARY KEY", False, NO_SOURCE_WARNING)],
    ids=["keyless", "no-source-dsn"],
)
async def test_evolve_warns_when_it_cannot_copy_a_volatile_default(
    cdc_db: str, target_db: str, key: str, read_source: bool, warning: str
) -> None:
    await execute(cdc_db, f"CREATE TABLE s (id int{key}, n int); INSERT INTO s VALUES (1, 1)")
    with structlog.testing.capture_logs() as logs:
        await replicate(
            cdc_db,
            target_db,
            ["s"],
            [
                snapshot_applied(target_db),
                "ALTER TABLE s ADD COLUMN r float8 DEFAULT random(); INSERT INTO s VALUES (2, 2)",
            ],
            schema_contract="evolve",
            read_source=read_source,
            until=lambda: row_two_applied(target_db),
        )
    (r,) = (row[0] for row in await fetch(cdc_db, "SELECT r::text FROM s WHERE id = 2"))
    assert await table_text(target_db, "s") == ["(1,1,)", f"(2,2,{r})"]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [warning]


async def test_evolve_warns_when_the_column_to_copy_is_gone_from_the_source(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, "CREATE TABLE s (id int PRIMARY KEY, n int); INSERT INTO s VALUES (1, 1)")
    with structlog.testing.capture_logs() as logs:
        await replicate(
            cdc_db,
            target_db,
            ["s"],
            [
                snapshot_applied(target_db),
                # One transaction: the sink sees the new column once it is already dropped.
                "ALTER TABLE s ADD COLUMN r float8 DEFAULT random(); INSERT INTO s VALUES (2, 2);"
                "ALTER TABLE s DROP COLUMN r",
            ],
            schema_contract="evolve",
            read_source=True,
            until=lambda: row_two_applied(target_db),
        )
    assert await table_text(target_db, "s", "t.id, t.r IS NULL") == ["(1,t)", "(2,f)"]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "column 'r' of source table public.s is gone from the source (dropped or renamed since "
        "it was added), so what its older rows held is unknown: rows of target table public.s "
        "that no change reached hold NULL in it"
    ]


async def ids_applied(target_db: str, *ids: str) -> bool:
    return await table_text(target_db, "s", "t.id") == list(ids)


async def row_two_applied(target_db: str) -> bool:
    return "(2)" in await table_text(target_db, "s", "t.id")
