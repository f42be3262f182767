"""DuckDBSink: exact rows per mode, schema evolution, refused records, exact error texts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import structlog.testing

from asyncetl import Batch, Checkpoint, ConfigError, PermanentError, Position
from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBSink
from asyncetl.core.changes import ChangeEvent
from tests.connectors.duckdb.helpers import orders, query, reasons, write

pytestmark = pytest.mark.anyio


async def test_append_creates_the_table_typed_from_the_first_batch(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = {
        "id": 1,
        "name": "a",
        "price": Decimal("1.25"),
        "at": moment,
        "meta": {"k": [1]},
        "ok": True,
        "raw": b"\x00",
        "none": None,
    }
    async with DuckDBSink(str(db), "t", create=True) as sink:
        assert await write(sink, [record, {**record, "id": 2}]) == []
        assert await write(sink, [{**record, "id": 2}]) == []
    types = query(
        db,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 't' ORDER BY ordinal_position",
    )
    assert types == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("price", "DECIMAL(38,2)"),
        ("at", "TIMESTAMP WITH TIME ZONE"),
        ("meta", "VARCHAR"),
        ("ok", "BOOLEAN"),
        ("raw", "BLOB"),
        ("none", "VARCHAR"),
    ]
    rows = query(db, "SELECT * FROM t ORDER BY id")
    assert rows == [
        (1, "a", Decimal("1.25"), moment, '{"k":[1]}', True, b"\x00", None),
        (2, "a", Decimal("1.25"), moment, '{"k":[1]}', True, b"\x00", None),
        (2, "a", Decimal("1.25"), moment, '{"k":[1]}', True, b"\x00", None),
    ]


async def test_upsert_keeps_the_last_row_of_each_key(tmp_path: Path) -> None:
    db = tmp_path / "u.duckdb"
    async with DuckDBSink(str(db), "t", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, orders(1, 2, 3))
        await write(sink, [*orders(2, qty=5), *orders(4), *orders(2, qty=7)])
        await write(sink, orders(4, qty=9))
    assert query(db, "SELECT id, sku, qty FROM t ORDER BY id") == [
        (1, "s1", 1),
        (2, "s2", 7),
        (3, "s3", 1),
        (4, "s4", 9),
    ]
    assert query(
        db,
        "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 't' "
        "ORDER BY constraint_type",
    ) == [("NOT NULL",), ("PRIMARY KEY",)]


async def test_replace_partition_replaces_the_partitions_of_the_batch(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    day1 = [{"day": "d1", "n": i} for i in range(3)]
    day2 = [{"day": "d2", "n": i} for i in range(2)]
    nulls = [{"day": None, "n": 0}]
    async with DuckDBSink(
        str(db), "t", mode="replace_partition", partition=["day"], create=True
    ) as sink:
        await write(sink, [*day1, *day2, *nulls])
        await write(sink, [{"day": "d2", "n": 9}, {"day": None, "n": 8}])
    assert query(db, "SELECT day, n FROM t ORDER BY day NULLS FIRST, n") == [
        (None, 8),
        ("d1", 0),
        ("d1", 1),
        ("d1", 2),
        ("d2", 9),
    ]


async def test_refresh_swap_publishes_at_the_end_of_a_scan_only(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    async with DuckDBSink(str(db), "t", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, orders(1, 2, 3))
    async with DuckDBSink(str(db), "t", mode="refresh_swap") as sink:
        await write(sink, orders(7), position={"page": 1})
        assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (2,), (3,)]
        assert query(db, "SELECT id FROM t__asyncetl_new") == [(7,)]
        await write(sink, orders(8), position=None)
        assert query(db, "SELECT id FROM t ORDER BY id") == [(7,), (8,)]
        assert query(
            db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't__asyncetl_new'"
        ) == [(0,)]
        await write(sink, orders(9), position={"page": 1})
        await sink.swap()
    assert query(db, "SELECT id FROM t ORDER BY id") == [(9,)]


async def test_refresh_swap_drops_what_a_crashed_run_left_when_it_opens(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    async with DuckDBSink(str(db), "t", mode="refresh_swap", create=True) as sink:
        await write(sink, orders(1), position={"page": 1})
    async with DuckDBSink(str(db), "t", mode="refresh_swap", create=True) as sink:
        await write(sink, orders(2), position=None)
    assert query(db, "SELECT id FROM t") == [(2,)]


async def test_evolve_adds_new_columns_and_old_rows_read_null(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    async with DuckDBSink(
        str(db), "t", mode="upsert", key=["id"], create=True, schema_contract="evolve"
    ) as sink:
        await write(sink, [{"id": 1, "a": "x"}])
        await write(sink, [{"id": 2, "a": "y", "b": 2.5, "c": {"n": 1}}])
        await write(sink, [{"id": 3}])
    assert query(db, "SELECT * FROM t ORDER BY id") == [
        (1, "x", None, None),
        (2, "y", 2.5, '{"n":1}'),
        (3, None, None, None),
    ]
    assert query(
        db,
        "SELECT data_type FROM information_schema.columns WHERE table_name = 't' "
        "ORDER BY ordinal_position",
    ) == [("BIGINT",), ("VARCHAR",), ("DOUBLE",), ("VARCHAR",)]


async def test_freeze_refuses_a_record_with_a_new_field_naming_table_and_field(
    tmp_path: Path,
) -> None:
    db = tmp_path / "x.duckdb"
    async with DuckDBSink(str(db), "t", create=True) as sink:
        await write(sink, [{"id": 1}])
        rejects = await write(sink, [{"id": 2, "new": 1}, {"id": 3}])
    assert reasons(rejects) == [
        (
            {"id": 2, "new": 1},
            "PermanentError",
            "field 'new' is not a column of table 't'; add the column, or set "
            'schema_contract = "evolve" (or "discard_value", "discard_row")',
        )
    ]
    assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]


async def test_discard_value_loads_the_record_without_the_new_field(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    async with DuckDBSink(str(db), "t", create=True) as sink:
        await write(sink, [{"id": 1, "a": "x"}])
    async with DuckDBSink(str(db), "t", schema_contract="discard_value") as sink:
        assert await write(sink, [{"id": 2, "a": "y", "new": 1}, {"id": 3, "a": "z"}]) == []
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, "x"), (2, "y"), (3, "z")]


async def test_discard_row_leaves_the_record_out_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    async with DuckDBSink(str(db), "t", create=True) as sink:
        await write(sink, [{"id": 1}])
    with structlog.testing.capture_logs() as logs:
        async with DuckDBSink(str(db), "t", schema_contract="discard_row") as sink:
            assert await write(sink, [{"id": 2, "new": 1}, {"id": 3}]) == []
    assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    assert [(e["event"], e["records"], e["fields"]) for e in logs] == [
        ("records left out: fields without a column", 1, ["new"])
    ]


async def test_discard_value_applies_change_events_without_the_new_field(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.duckdb"
    async with DuckDBSink(str(db), "t", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, [{"id": 1, "a": "x"}])
    events = [
        ChangeEvent("c", "public", "t", {"id": 2}, None, {"id": 2, "a": "y", "new": 1}, 1),
        ChangeEvent("u", "public", "t", {"id": 1}, None, {"id": 1, "a": "w", "new": 2}, 2),
    ]
    async with DuckDBSink(
        str(db), "t", mode="upsert", key=["id"], schema_contract="discard_value"
    ) as sink:
        assert await write(sink, events) == []
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, "w"), (2, "y")]


@pytest.mark.parametrize(
    ("old", "contract"),
    [("reject", "freeze"), ("ignore", "discard_value"), ("evolve", "evolve")],
)
def test_extra_columns_still_works_and_says_what_to_write_instead(old: str, contract: str) -> None:
    with structlog.testing.capture_logs() as logs:
        sink = DuckDBSink("x.duckdb", "t", extra_columns=old)
    assert sink.schema_contract == contract
    assert [e["event"] for e in logs] == [
        f'DuckDBSink duckdb_sink: extra_columns is deprecated; write schema_contract = "{contract}"'
        f' instead of extra_columns = "{old}"'
    ]


def test_schema_contract_and_extra_columns_together_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        DuckDBSink("x.duckdb", "t", schema_contract="evolve", extra_columns="evolve")
    assert str(caught.value) == (
        "DuckDBSink duckdb_sink: extra_columns: give schema_contract only: extra_columns is "
        "its old name"
    )


async def test_values_a_column_cannot_hold_exactly_refuse_their_record(tmp_path: Path) -> None:
    db = tmp_path / "v.duckdb"
    async with DuckDBSink(str(db), "t", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, [{"id": 1, "n": 1}])
        rejects = await write(
            sink, [{"id": 2, "n": 2.5}, {"id": 3, "n": "x"}, {"id": 4, "n": 4}, {"n": 5}]
        )
    assert [(r[0], r[1]) for r in reasons(rejects)] == [
        ({"n": 5}, "ValueError"),
        ({"id": 2, "n": 2.5}, "ValueError"),
        ({"id": 3, "n": "x"}, "ValueError"),
    ]
    assert str(rejects[0].error) == (
        "record's key column 'id' is missing; DuckDB table 't' is keyed by it, and a record "
        "without its key cannot be stored"
    )
    assert str(rejects[1].error).startswith(
        "column 'n' of DuckDB table 't' is int64, and value 2.5 (float) does not convert to it exactly: "
    )
    assert query(db, "SELECT id, n FROM t ORDER BY id") == [(1, 1), (4, 4)]


async def test_a_missing_table_without_create_is_refused_at_open(tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    with pytest.raises(PermanentError) as caught:
        async with DuckDBSink(str(db), "t"):
            pass
    assert str(caught.value) == (
        f"DuckDB table 't' does not exist in {db}; create it or set create = true"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"mode": "merge"},
            "DuckDBSink duckdb_sink: mode: must be one of 'append', 'upsert', "
            "'replace_partition', 'refresh_swap', not 'merge'",
        ),
        (
            {"mode": "upsert"},
            "DuckDBSink duckdb_sink: key: mode 'upsert' needs key columns, e.g. key = [\"id\"]",
        ),
        (
            {"mode": "replace_partition"},
            "DuckDBSink duckdb_sink: partition: mode "
            "'replace_partition' needs partition columns, e.g. partition = [\"id\"]",
        ),
        (
            {"extra_columns": "add"},
            "DuckDBSink duckdb_sink: extra_columns: must be one of "
            "'reject', 'ignore', 'evolve', not 'add'",
        ),
        (
            {"schema_contract": "reject"},
            "DuckDBSink duckdb_sink: schema_contract: must be one of "
            "evolve, freeze, discard_row, discard_value, not 'reject'",
        ),
        (
            {"key": ["a", "A"]},
            "DuckDBSink duckdb_sink: key: names repeat (DuckDB ignores case): ['a', 'A']",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_sentence(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DuckDBSink("x.duckdb", "t", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


async def test_check_reports_a_missing_table_without_creating_the_file(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    problems = await DuckDBSink(str(db), "t").check()
    assert [(p.setting, p.message) for p in problems] == [
        ("table", f"table 't' does not exist in {db} and create = false")
    ]
    assert not db.exists()


async def test_refresh_swap_resumes_its_staging_table_when_checkpoints_travel_with_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.duckdb"
    runs: list[tuple[list[Mapping[str, object]], Position]] = [
        (orders(1, 2), {"page": 1}),
        (orders(3), None),
    ]
    for records, position in runs:
        sink = DuckDBSink(str(db), "t", mode="refresh_swap", create=True)
        writer = sink.transactional_writer(DuckDBCheckpointStore(str(db)))
        assert writer is not None
        async with sink:
            await writer(Batch(0, records, position), Checkpoint("p", "s", position))
    assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (2,), (3,)]
    assert query(db, "SELECT position FROM asyncetl_checkpoints") == [("null",)]
