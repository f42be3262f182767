"""Schema contracts of PostgresSink: what a record field without a column does."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncetl import ConfigError, PermanentError
from asyncetl.connectors.postgres import PostgresSink
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio

RECORDS: list[dict[str, Any]] = [
    {"id": 1, "qty": 1},
    {"id": 2, "qty": 2, "note": "gift", "tags": {"a": [1]}},
    {"id": 3, "qty": 3, "note": None},
]
TABLE = "CREATE TABLE orders (id int PRIMARY KEY, qty int)"
COLUMNS = (
    "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 'orders'::regclass AND attnum > 0 ORDER BY attnum"
)


async def write(dsn: str, contract: str, records: list[dict[str, Any]]) -> list[Any]:
    sink = PostgresSink(dsn, "orders", schema_contract=contract)
    await sink.open()
    try:
        return list(await sink.write(batch(records)))
    finally:
        await sink.aclose()


async def test_evolve_adds_a_column_per_new_field_typed_from_its_values(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    assert await write(pg_database, "evolve", RECORDS) == []
    assert await rows(pg_database, COLUMNS) == [
        ("id", "integer"),
        ("qty", "integer"),
        ("note", "text"),
        ("tags", "jsonb"),
    ]
    assert await rows(pg_database, "SELECT row(o.*)::text FROM orders o ORDER BY id") == [
        ("(1,1,,)",),
        ('(2,2,gift,"{""a"": [1]}")',),
        ("(3,3,,)",),
    ]


async def test_freeze_refuses_the_record_naming_table_and_field(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    rejects = await write(pg_database, "freeze", RECORDS)
    assert [(r.record["id"], str(r.error)) for r in rejects] == [
        (
            2,
            "field 'note' is not a column of table public.orders; add the column, or set "
            'schema_contract = "evolve" (or "discard_value", "discard_row")',
        ),
        (
            3,
            "field 'note' is not a column of table public.orders; add the column, or set "
            'schema_contract = "evolve" (or "discard_value", "discard_row")',
        ),
    ]
    assert all(isinstance(r.error, PermanentError) for r in rejects)
    assert await rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [(1, 1)]
    assert await rows(pg_database, COLUMNS) == [("id", "integer"), ("qty", "integer")]


async def test_discard_value_loads_the_record_without_the_new_fields(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    assert await write(pg_database, "discard_value", RECORDS) == []
    assert await rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [
        (1, 1),
        (2, 2),
        (3, 3),
    ]
    assert await rows(pg_database, COLUMNS) == [("id", "integer"), ("qty", "integer")]


async def test_discard_row_leaves_the_record_out_and_says_so(pg_database: str) -> None:
    await execute(pg_database, TABLE)
    with capture_logs() as logs:
        assert await write(pg_database, "discard_row", RECORDS) == []
    assert await rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [(1, 1)]
    assert [
        (log["event"], log["table"], log["records"], log["fields"])
        for log in logs
        if log["log_level"] == "warning"
    ] == [("records left out: fields without a column", "public.orders", 2, ["note", "tags"])]


async def test_a_type_conflict_is_the_record_failure_whatever_the_contract(
    pg_database: str,
) -> None:
    await execute(pg_database, TABLE)
    rejects = await write(pg_database, "evolve", [{"id": 1, "qty": "many"}, {"id": 2, "qty": 2}])
    assert len(rejects) == 1 and rejects[0].record == {"id": 1, "qty": "many"}
    assert await rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [(2, 2)]


def test_an_unknown_contract_names_the_modes() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresSink("postgresql://u@h/d", "t", schema_contract="loose")
    assert str(caught.value) == (
        "sink postgres: schema_contract: must be one of evolve, freeze, discard_row, "
        "discard_value, not 'loose'"
    )
