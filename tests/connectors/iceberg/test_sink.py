from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from asyncetl import Batch, ConfigError, ListSource, Pipeline, Reject, RunOutcome
from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from tests.connectors.iceberg.helpers import rows, table

pytestmark = pytest.mark.anyio


async def write(sink: IcebergSink, records: Sequence[object], seq: int = 0) -> list[Reject]:
    batch: Batch[object] = Batch(seq, records, seq)
    rejects = list(await sink.write(batch))  # type: ignore[arg-type]
    await sink.flush()
    return rejects


def reasons(rejects: list[Reject]) -> list[tuple[object, str]]:
    return [(r.record, str(r.error)) for r in rejects]


async def test_append_creates_the_table_typed_from_the_first_batch(tmp_path: Path) -> None:
    moment = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    records: list[dict[str, object]] = [
        {
            "id": 1,
            "name": "ann",
            "price": Decimal("1.50"),
            "at": moment,
            "ok": True,
            "day": dt.date(2024, 5, 1),
        },
        {"id": 2, "name": None, "price": Decimal("20.25"), "at": moment, "ok": False, "day": None},
    ]
    async with IcebergSink(str(tmp_path), table="shop.orders") as sink:
        assert await write(sink, records) == []
        assert await write(sink, [{"id": 3, "name": "cy", "tags": ["a", "b"]}], 1) == []
    assert rows(tmp_path, "shop.orders") == [
        {**records[0], "tags": None},
        {**records[1], "tags": None},
        {
            "id": 3,
            "name": "cy",
            "price": None,
            "at": None,
            "ok": None,
            "day": None,
            "tags": '["a","b"]',
        },
    ]
    schema = table(tmp_path, "shop.orders").schema()
    assert [(f.name, str(f.field_type)) for f in schema.fields] == [
        ("id", "long"),
        ("name", "string"),
        ("price", "decimal(38, 2)"),
        ("at", "timestamptz"),
        ("ok", "boolean"),
        ("day", "date"),
        ("tags", "string"),
    ]


async def test_upsert_by_key_keeps_each_keys_last_row_and_replays_change_nothing(
    tmp_path: Path,
) -> None:
    async with IcebergSink(str(tmp_path), table="shop.items", key=["id"]) as sink:
        await write(sink, [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}])
        await write(sink, [{"id": 2, "v": "d"}, {"id": 3, "v": "e"}], 1)
        await write(sink, [{"id": 2, "v": "d"}, {"id": 3, "v": "e"}], 1)  # a replay
    assert rows(tmp_path, "shop.items") == [
        {"id": 1, "v": "c"},
        {"id": 2, "v": "d"},
        {"id": 3, "v": "e"},
    ]


def event(op: str, key: int, **after: object) -> ChangeEvent:
    row = {"id": key, **after}
    return ChangeEvent(
        op,  # type: ignore[arg-type]
        "public",
        "accounts",
        key={"id": key},
        after=row if op != "d" else None,
        columns={"id": "integer", "balance": "numeric(12,2)", "note": "text"},
        key_columns=("id",),
    )


async def test_change_events_are_applied_by_key_into_the_table_of_their_source(
    tmp_path: Path,
) -> None:
    async with IcebergSink(str(tmp_path)) as sink:
        await write(
            sink,
            [
                event("r", 1, balance=Decimal("10.00"), note="a"),
                event("r", 2, balance=Decimal("20.00"), note=None),
                event("c", 3, balance=Decimal("30.00"), note="c"),
                event("u", 1, balance=Decimal("11.00"), note="a2"),
                event("d", 2),
            ],
        )
        await write(sink, [event("d", 3), event("c", 2, balance=Decimal("22.50"), note="back")], 1)
    assert rows(tmp_path, "public.accounts") == [
        {"id": 1, "balance": Decimal("11.00"), "note": "a2"},
        {"id": 2, "balance": Decimal("22.50"), "note": "back"},
    ]
    schema = table(tmp_path, "public.accounts").schema()
    assert [str(f.field_type) for f in schema.fields] == ["long", "decimal(12, 2)", "string"]


async def test_unchanged_values_keep_what_the_table_holds(tmp_path: Path) -> None:

    async with IcebergSink(str(tmp_path)) as sink:
        await write(sink, [event("c", 1, balance=Decimal("1.00"), note="big text")])
        await write(sink, [event("u", 1, balance=Decimal("2.00"), note=UNCHANGED)], 1)
    assert rows(tmp_path, "public.accounts") == [
        {"id": 1, "balance": Decimal("2.00"), "note": "big text"}
    ]


async def test_a_truncate_empties_the_table_and_later_changes_stay(tmp_path: Path) -> None:
    truncate = ChangeEvent("t", "public", "accounts")
    async with IcebergSink(str(tmp_path)) as sink:
        await write(sink, [event("c", 1, balance=Decimal("1.00"), note="x")])
        await write(
            sink,
            [
                event("c", 2, balance=Decimal("2.00"), note="y"),
                truncate,
                event("c", 3, balance=Decimal("3.00"), note="z"),
            ],
            1,
        )
    assert rows(tmp_path, "public.accounts") == [{"id": 3, "balance": Decimal("3.00"), "note": "z"}]


async def test_values_that_do_not_fit_are_refused_with_the_reason_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    records = [
        {"id": 1, "n": 5},
        {"id": 2, "n": "five"},
        {"id": 3, "n": 2**70},
        {"id": None, "n": 1},
    ]
    async with IcebergSink(str(tmp_path), table="t.nums", key=["id"]) as sink:
        rejects = await write(sink, records)
    assert reasons(rejects) == [
        (records[1], "value 'five' of column 'n' does not fit its type int64"),
        (records[2], f"value {2**70} of column 'n' does not fit its type int64"),
        (
            records[3],
            "record's key column 'id' is missing or null; Iceberg table 't.nums' is keyed by it, "
            "and a record without its key cannot be stored",
        ),
    ]
    assert rows(tmp_path, "t.nums") == [{"id": 1, "n": 5}]


async def test_declared_columns_and_partitions_shape_the_new_table(tmp_path: Path) -> None:
    sink = IcebergSink(
        str(tmp_path),
        table="t.events",
        columns={"id": "long", "at": "timestamptz", "amount": "decimal(10, 2)"},
        partition_by=["day(at)", "bucket(4, id)"],
    )
    moment = dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC)
    async with sink:
        await write(sink, [{"id": 7, "at": moment, "amount": Decimal("9.99"), "extra": "x"}])
    created = table(tmp_path, "t.events")
    assert [(f.name, str(f.field_type)) for f in created.schema().fields] == [
        ("id", "long"),
        ("at", "timestamptz"),
        ("amount", "decimal(10, 2)"),
        ("extra", "string"),
    ]
    assert [(f.name, str(f.transform)) for f in created.spec().fields] == [
        ("at_day", "day"),
        ("id_bucket", "bucket[4]"),
    ]
    assert rows(tmp_path, "t.events") == [
        {"id": 7, "at": moment, "amount": Decimal("9.99"), "extra": "x"}
    ]


async def test_without_schema_evolution_a_new_column_is_refused(tmp_path: Path) -> None:
    async with IcebergSink(str(tmp_path), table="t.fixed") as sink:
        await write(sink, [{"id": 1}])
    async with IcebergSink(str(tmp_path), table="t.fixed", evolve_schema=False) as sink:
        rejects = await write(sink, [{"id": 2, "new": "x"}])
    assert reasons(rejects) == [
        (
            {"id": 2, "new": "x"},
            "column 'new' is not in Iceberg table 't.fixed'; set evolve_schema = true to add it, "
            "or drop it in a transform",
        )
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"table": "orders"},
            "IcebergSink iceberg_sink: table: 'orders' is not namespace.table (e.g. 'public.orders')",
        ),
        (
            {"partition_by": ["week(at)"]},
            "IcebergSink iceberg_sink: partition_by: 'week(at)' is not a partition field; use a column "
            "name, or year/month/day/hour(column), bucket(N, column), truncate(W, column)",
        ),
        (
            {"commit_interval": -1.0},
            "IcebergSink iceberg_sink: commit_interval: must be a number of seconds, at least 0, not -1.0",
        ),
        (
            {"catalog_uri": "mysql://x"},
            "IcebergSink iceberg_sink: catalog_uri: 'mysql://x' is not a catalog database URI; use sqlite:///path/catalog.db or postgresql://user@host/database",
        ),
    ],
)
def test_bad_settings_name_the_key(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        IcebergSink(str(tmp_path), **settings)  # type: ignore[arg-type]
    assert str(raised.value) == message


async def test_a_partition_column_the_first_records_lack_fails_naming_it(tmp_path: Path) -> None:
    from asyncetl import PermanentError

    async with IcebergSink(str(tmp_path), table="t.p", partition_by=["month(at)"]) as sink:
        with pytest.raises(PermanentError) as raised:
            await write(sink, [{"id": 1}])
    assert str(raised.value) == (
        "Iceberg table 't.p' is partitioned by column 'at', which its first records lack; "
        "declare it in columns, or fix partition_by"
    )


async def test_check_creates_nothing(tmp_path: Path) -> None:
    from asyncetl.connectors.iceberg import IcebergCheckpointStore

    warehouse = tmp_path / "new" / "warehouse"
    assert await IcebergSink(str(warehouse), table="a.b").check() == []
    assert await IcebergCheckpointStore(str(warehouse)).check() == []
    assert not (tmp_path / "new").exists()


async def test_an_update_that_changes_the_key_moves_the_row(tmp_path: Path) -> None:
    moved = event("u", 5, balance=Decimal("1.00"), note="moved")
    moved.before = {"id": 1}
    async with IcebergSink(str(tmp_path)) as sink:
        await write(sink, [event("c", 1, balance=Decimal("1.00"), note="here")])
        await write(sink, [moved], 1)
    assert rows(tmp_path, "public.accounts") == [
        {"id": 5, "balance": Decimal("1.00"), "note": "moved"}
    ]


@pytest.mark.parametrize(
    "key",
    [["sku"], ["shop", "sku"]],
    ids=["text-key", "two-column-key"],
)
async def test_upserts_by_text_and_composite_keys(tmp_path: Path, key: list[str]) -> None:
    async with IcebergSink(str(tmp_path), table="t.stock", key=key) as sink:
        await write(sink, [{"shop": "a", "sku": f"s{i}", "n": i} for i in range(5)])
        await write(
            sink, [{"shop": "a", "sku": "s1", "n": 10}, {"shop": "a", "sku": "s9", "n": 9}], 1
        )
        await write(sink, [{"shop": "a", "sku": "s3", "n": 30, "new": True}], 2)
    assert rows(tmp_path, "t.stock", order="sku") == [
        {"shop": "a", "sku": "s0", "n": 0, "new": None},
        {"shop": "a", "sku": "s1", "n": 10, "new": None},
        {"shop": "a", "sku": "s2", "n": 2, "new": None},
        {"shop": "a", "sku": "s3", "n": 30, "new": True},
        {"shop": "a", "sku": "s4", "n": 4, "new": None},
        {"shop": "a", "sku": "s9", "n": 9, "new": None},
    ]


async def test_an_outcome_goes_into_the_tables_the_pipeline_committed_to_only(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "wh"
    store = IcebergCheckpointStore(str(warehouse))
    async with store:
        first = RunOutcome("failed", dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), "boom")
        await store.save_outcome("orders", first)  # nothing committed yet: nowhere to keep it
        assert await store.load_outcome("orders") is None
        assert await store.saved_at("orders", "orders") is None
    with capture_logs():
        await Pipeline(
            "orders",
            ListSource([{"id": 1}, {"id": 2}], name="orders"),
            IcebergSink(str(warehouse), table="shop.orders", commit_interval=0),
            checkpoints=IcebergCheckpointStore(str(warehouse)),
        ).run()
    with capture_logs():
        await Pipeline(
            "other",
            ListSource([{"id": 3}], name="other"),
            IcebergSink(str(warehouse), table="shop.other", commit_interval=0),
            checkpoints=IcebergCheckpointStore(str(warehouse)),
        ).run()
    snapshot = table(warehouse, "shop.orders").current_snapshot()
    assert snapshot is not None
    async with store:
        assert await store.saved_at("orders", "orders") == dt.datetime.fromtimestamp(
            snapshot.timestamp_ms / 1000, dt.UTC
        )
        await store.save_outcome("orders", first)
        assert await store.load_outcome("orders") == first
        assert await store.load_outcome("other") is None
    assert table(warehouse, "shop.orders").properties["asyncetl.outcome.orders"] == (
        '{"state":"failed","time":"2024-05-01T12:00:00+00:00","error":"boom"}'
    )
    assert "asyncetl.outcome.orders" not in table(warehouse, "shop.other").properties
    assert table(warehouse, "shop.orders").current_snapshot() == snapshot  # no data commit
