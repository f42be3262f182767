"""ApplySink against a real target: compaction, upserts, deletes, TOAST, evolution, exactly-once."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncetl.connectors.postgres import ApplySink, PostgresCheckpointStore
from asyncetl.connectors.postgres.cdc import _apply_stage
from asyncetl.connectors.postgres.cdc._compact import _compact, _compact_by, compact
from asyncetl.core.batch import Batch
from asyncetl.core.changes import UNCHANGED, ChangeEvent, Op
from asyncetl.core.errors import PermanentError
from asyncetl.core.interfaces import Checkpoint
from tests.connectors.postgres.cdc.support import execute, fetch, fetchval, wait_for

COLUMNS = {"id": "integer", "name": "text", "doc": "jsonb", "big": "text"}
DEFAULTS_OF_ITEMS = "SELECT adnum FROM pg_attrdef WHERE adrelid = 'items'::regclass"


def ev(
    op: Op,
    key: int | None = None,
    lsn: int = 100,
    seq: int = 0,
    table: str = "items",
    **after: Any,
) -> ChangeEvent:
    row = {"id": key, **after} if op in ("c", "u", "r") else None
    return ChangeEvent(
        op,
        "public",
        table,
        {"id": key} if key is not None else None,
        {"id": key} if op == "d" else None,
        row,
        lsn,
        seq,
        columns={k: COLUMNS[k] for k in ("id", *after)} if row else None,
        key_columns=("id",),
    )


def batch(events: list[ChangeEvent], seq: int = 0) -> Batch[ChangeEvent]:
    return Batch(seq, events, {"lsn": "0/1"})


@pytest.fixture(params=["arrays", "copy"])
def staged_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Rows staged as array parameters, as groups are, or COPYed into a temporary table, as a
    group too large for parameters is."""
    if request.param == "copy":
        monkeypatch.setattr(_apply_stage, "_ARRAY_CHARS", -1)
    return str(request.param)


def test_a_group_is_measured_by_its_text_and_bytes() -> None:
    staged = ["integer", "text", "bytea", "character varying(5)", "bigint"]
    values: list[list[object]] = [
        [1, None, 3],
        ["ab", None, "cde"],
        [b"x", b"yz", None],
        ["", "four", None],
        [10, 20, None],
    ]
    # 16 for each value of another type (None included); text and bytes by their length.
    assert _apply_stage._chars(staged, values, 3) == 3 * 16 + 5 + 3 + 4 + 3 * 16


async def rows(dsn: str, table: str = "items") -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await fetch(dsn, f"SELECT * FROM {table} ORDER BY 1")]


# -- compaction, as pure logic ------------------------------------------------------------


ops = st.lists(
    st.tuples(
        st.sampled_from(["c", "u", "d", "t", "k"]),
        st.integers(0, 4),
        st.integers(0, 4),
        st.booleans(),
    ),
    max_size=30,
)


def _apply_to_model(model: dict[int, dict[str, object]], event: ChangeEvent) -> None:
    if event.op == "t":
        model.clear()
    elif event.op == "d":
        model.pop(_id(event.key), None)
    else:
        assert event.after is not None
        moved_from = model.pop(_id(event.before), None) if event.before is not None else None
        previous = moved_from if moved_from is not None else model.get(_id(event.after), {})
        model[_id(event.after)] = {
            k: previous.get(k) if v is UNCHANGED else v for k, v in event.after.items()
        }


def _id(row: dict[str, object] | None) -> int:
    assert row is not None
    value = row["id"]
    assert isinstance(value, int)
    return value


def _generated(
    steps: list[tuple[str, int, int, bool]], start: dict[int, dict[str, object]]
) -> tuple[list[ChangeEvent], dict[int, dict[str, object]]]:
    """Change events from ``steps``, and the rows that applying them one by one leaves."""
    model = {k: dict(v) for k, v in start.items()}
    events = []
    for seq, (op, key, other, toast) in enumerate(steps):
        # Generate only what a source can send: an unchanged TOAST value belongs to an existing row.
        if op == "k" and other != key and other in model:
            continue  # the source would refuse: the key is taken
        if op == "k":  # an update that moves row `key` to key `other`
            event = ChangeEvent(
                "u",
                "public",
                "t",
                {"id": other},
                {"id": key},
                {"id": other, "v": UNCHANGED if toast and key in model else seq, "w": seq},
                1,
                seq,
            )
        elif op in ("c", "u"):
            value: object = UNCHANGED if toast and op == "u" and key in model else seq
            event = ChangeEvent(
                "c" if op == "c" else "u",
                "public",
                "t",
                {"id": key},
                None,
                {"id": key, "v": value, "w": seq},
                1,
                seq,
            )
        elif op == "d":
            event = ChangeEvent("d", "public", "t", {"id": key}, {"id": key}, None, 1, seq)
        else:
            event = ChangeEvent("t", "public", "t", None, None, None, 1, seq)
        events.append(event)
        _apply_to_model(model, event)
    return events, model


@given(ops)
@settings(max_examples=300, deadline=None)
def test_compaction_equals_applying_every_change_in_order(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    start: dict[int, dict[str, object]] = {k: {"id": k, "v": -1, "w": -1} for k in range(3)}
    events, model = _generated(steps, start)
    compacted = compact(events, ["id"], "t")
    result = {} if compacted.truncate else {k: dict(v) for k, v in start.items()}
    # As the sink applies it: moved rows copy unchanged values from the old key's row
    # first, then the deletes, then the other upserts.
    moved = {
        k: {
            c: result.get(_id(compacted.moved[k]), {}).get(c) if v is UNCHANGED else v
            for c, v in row.items()
        }
        for k, row in compacted.upserted.items()
        if k in compacted.moved and UNCHANGED in row.values()
    }
    for deleted in compacted.deletes:
        result.pop(_id(deleted), None)
    for k, row in compacted.upserted.items():
        old = result.get(_id(row), {})
        row = moved.get(k, row)
        result[_id(row)] = {c: old.get(c) if v is UNCHANGED else v for c, v in row.items()}
    assert result == model


@given(ops)
@settings(max_examples=200, deadline=None)
def test_the_one_column_key_shortcut_compacts_as_the_general_way(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    events, _ = _generated(steps, {k: {"id": k} for k in range(3)})
    assert _compact_by(events, "id") == _compact(events, ("id",), "t")


def test_compaction_of_unhashable_and_missing_keys() -> None:
    def change(op: Op, seq: int, key: object, **after: object) -> ChangeEvent:
        row = {"id": key, **after} if op != "d" else None
        return ChangeEvent(op, "public", "t", {"id": key}, {"id": key}, row, 1, seq)

    # Array keys are not hashable: they are compared by their text.
    compacted = compact(
        [change("c", 0, [1], v=1), change("u", 1, [1], v=2), change("d", 2, [2])], ["id"], "t"
    )
    assert compacted.upserts == [{"id": [1], "v": 2}]
    assert compacted.deletes == [{"id": [2]}]
    with pytest.raises(PermanentError) as caught:
        compact([change("c", 0, None, v=1)], ["id"], "t")
    assert str(caught.value) == (
        "a change to table t carries no value for key column 'id'; make the target's primary "
        "key match the source's replica identity (or set REPLICA IDENTITY FULL on the source "
        "table)"
    )


# -- applying to a real target ---------------------------------------------------------------


@pytest.mark.anyio
async def test_applies_inserts_updates_deletes_and_truncates(
    target_db: str, staged_by: str
) -> None:
    sink = ApplySink(target_db, create=True)
    await sink.open()
    try:
        await sink.write(
            batch(
                [
                    ev("r", 1, lsn=None, name="a", doc={"x": 1}),  # type: ignore[arg-type]
                    ev("r", 2, lsn=None, name="b", doc=None),  # type: ignore[arg-type]
                    ev("c", 3, 100, 0, name="c", doc=[1, "two"]),
                    ev("u", 1, 100, 1, name="A", doc={"x": 2}),
                    ev("d", 2, 100, 2),
                    ev("c", 2, 100, 3, name="again", doc="text"),
                ]
            )
        )
        assert await rows(target_db) == [
            (1, "A", '{"x": 2}'),
            (2, "again", '"text"'),
            (3, "c", '[1, "two"]'),
        ]
        await sink.write(batch([ev("t", None, 200, 0), ev("c", 9, 200, 1, name="z", doc=None)], 1))
        assert await rows(target_db) == [(9, "z", None)]
        assert sink.applied == (200, 1)
        marker = await fetch(target_db, "SELECT sink, lsn::text, seq FROM asyncetl_cdc_applied")
        assert [tuple(r) for r in marker] == [("apply", "0/C8", 1)]
    finally:
        await sink.aclose()


@pytest.mark.anyio
async def test_a_replayed_change_is_skipped(target_db: str) -> None:
    await execute(target_db, "CREATE TABLE items (id int PRIMARY KEY, name text, n int DEFAULT 0)")
    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(batch([ev("c", 1, 100, 0, name="a"), ev("c", 2, 100, 1, name="b")]))
        # Someone edits the target; replaying the same changes must not undo that.
        await execute(target_db, "UPDATE items SET name = 'edited' WHERE id = 1")
        await sink.write(
            batch(
                [
                    ev("c", 1, 100, 0, name="a"),
                    ev("c", 2, 100, 1, name="b"),
                    ev("c", 3, 100, 2, name="c"),
                ],
                1,
            )
        )
    finally:
        await sink.aclose()
    again = ApplySink(target_db)  # a restarted process reads the marker back
    await again.open()
    try:
        assert again.applied == (100, 2)
        await again.write(batch([ev("c", 3, 100, 2, name="x"), ev("u", 2, 101, 0, name="B")]))
    finally:
        await again.aclose()
    assert await rows(target_db) == [(1, "edited", 0), (2, "B", 0), (3, "c", 0)]


@pytest.mark.anyio
async def test_unchanged_toast_columns_are_left_alone(target_db: str, staged_by: str) -> None:
    await execute(
        target_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, big text);"
        "INSERT INTO items VALUES (1, 'a', 'large value'), (2, 'b', 'other')",
    )
    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(
            batch(
                [
                    ev("u", 1, 100, 0, name="A", big=UNCHANGED),
                    ev("c", 3, 100, 1, name="c", big="fresh"),
                    ev(
                        "u", 3, 100, 2, name="C", big=UNCHANGED
                    ),  # filled from the insert in this batch
                    ev("u", 2, 100, 3, name="B", big="new"),
                ]
            )
        )
    finally:
        await sink.aclose()
    assert await rows(target_db) == [(1, "A", "large value"), (2, "B", "new"), (3, "C", "fresh")]


@pytest.mark.anyio
async def test_new_columns_evolve_or_fail_clearly(target_db: str) -> None:
    await execute(target_db, "CREATE TABLE items (id int PRIMARY KEY, name text)")
    strict = ApplySink(target_db)
    await strict.open()
    try:
        with pytest.raises(PermanentError) as caught:
            await strict.write(batch([ev("c", 1, 100, 0, name="a", doc={"k": 1})]))
    finally:
        await strict.aclose()
    assert str(caught.value) == (
        "column 'doc' of source table public.items is missing from target table public.items; "
        'add it to the target or set schema_contract = "evolve" (or "discard_value", "discard_row")'
    )
    evolving = ApplySink(target_db, schema_contract="evolve")
    await evolving.open()
    try:
        await evolving.write(batch([ev("c", 1, 100, 0, name="a", doc={"k": 1})]))
    finally:
        await evolving.aclose()
    assert await rows(target_db) == [(1, "a", '{"k": 1}')]
    types = await fetch(
        target_db,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'items'::regclass AND attname = 'doc'",
    )
    assert [t[0] for t in types] == ["jsonb"]


@pytest.mark.anyio
async def test_a_column_added_between_two_changes_fills_the_older_rows_with_its_default(
    target_db: str, pg_database: str
) -> None:
    # The source as it stands: "big" was added after row 1 with a constant default.
    await execute(
        pg_database,
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a');"
        "ALTER TABLE items ADD COLUMN big text DEFAULT 'x y'; INSERT INTO items VALUES (2, 'b', 'z')",
    )
    sink = ApplySink(target_db, create=True, schema_contract="evolve", source_dsn=pg_database)
    await sink.open()
    try:
        # One batch: the table is created from the first change and evolved for the second.
        await sink.write(batch([ev("r", 1, name="a"), ev("c", 2, 101, 0, name="b", big="z")]))
    finally:
        await sink.aclose()
    assert await rows(target_db) == [(1, "a", "x y"), (2, "b", "z")]
    assert await fetch(target_db, DEFAULTS_OF_ITEMS) == []


@pytest.mark.anyio
async def test_missing_target_without_create_is_a_clear_error(target_db: str) -> None:
    sink = ApplySink(target_db, tables={"public.items": "copy.items"})
    await sink.open()
    try:
        with pytest.raises(
            PermanentError,
            match=r"target table copy\.items does not exist on "
            r"127\.0\.0\.1:5432/\w+; create it or set create = true",
        ):
            await sink.write(batch([ev("c", 1, 100, 0, name="a")]))
    finally:
        await sink.aclose()


@pytest.mark.anyio
async def test_soft_deletes_and_table_mapping(target_db: str) -> None:
    await execute(
        target_db,
        "CREATE SCHEMA copy; CREATE TABLE copy.items (id int PRIMARY KEY, "
        "name text, gone timestamptz)",
    )
    sink = ApplySink(target_db, tables={"items": "copy.items"}, soft_delete_column="gone")
    await sink.open()
    try:
        await sink.write(batch([ev("c", 1, 100, 0, name="a"), ev("c", 2, 100, 1, name="b")]))
        await sink.write(batch([ev("d", 1, 101, 0)], 1))
        deleted = await rows(target_db, "copy.items")
        await sink.write(batch([ev("c", 1, 102, 0, name="back")], 2))
    finally:
        await sink.aclose()
    assert [(r[0], r[2] is not None) for r in deleted] == [(1, True), (2, False)]
    assert await rows(target_db, "copy.items") == [(1, "back", None), (2, "b", None)]


@pytest.mark.anyio
async def test_tables_without_a_key(target_db: str, staged_by: str) -> None:
    await execute(target_db, "CREATE TABLE log (a int, b text)")
    sink = ApplySink(target_db)
    full = {"a": "integer", "b": "text"}

    def change(
        op: Op, seq: int, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> ChangeEvent:
        return ChangeEvent(
            op,
            "public",
            "log",
            None,
            before,
            after,
            100,
            seq,
            columns=full,
        )

    await sink.open()
    try:
        await sink.write(
            batch(
                [
                    change("c", 0, None, {"a": 1, "b": "x"}),
                    change("c", 1, None, {"a": 1, "b": "x"}),
                    change("c", 2, None, {"a": 2, "b": None}),
                    change("u", 3, {"a": 1, "b": "x"}, {"a": 1, "b": "y"}),
                    change("d", 4, {"a": 2, "b": None}, None),
                ]
            )
        )
        assert await rows(target_db, "log") == [(1, "x"), (1, "y")]
        with pytest.raises(
            PermanentError,
            match="table public.log has no primary key and the "
            "source sent no old row for an update of "
            "public.log; set REPLICA IDENTITY FULL",
        ):
            await sink.write(batch([change("u", 5, None, {"a": 1, "b": "z"})], 1))
    finally:
        await sink.aclose()


@pytest.mark.anyio
async def test_columns_null_in_every_row_are_written_as_null(
    target_db: str, staged_by: str
) -> None:
    # A column the batch leaves NULL in every row is read as a typed NULL rather than
    # sent as an array of NULLs: the target must hold NULL all the same, not the default,
    # and a row of NULLs only must still arrive as a row.
    await execute(
        target_db,
        "CREATE TABLE keyed (id int PRIMARY KEY, note text DEFAULT 'd', at timestamptz, n int);"
        "INSERT INTO keyed VALUES (1, 'old', now(), 7);"
        "CREATE TABLE loose (a int DEFAULT 5, b text DEFAULT 'd')",
    )
    keyed = {"id": "integer", "note": "text", "at": "timestamp with time zone", "n": "integer"}
    loose = {"a": "integer", "b": "text"}

    def change(table: str, seq: int, row: dict[str, Any], key: tuple[str, ...]) -> ChangeEvent:
        columns = keyed if table == "keyed" else loose
        return ChangeEvent(
            "c", "public", table, None, None, row, 100, seq, columns=columns, key_columns=key
        )

    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(
            batch(
                [
                    change("keyed", 0, {"id": 1, "note": None, "at": None, "n": None}, ("id",)),
                    change("keyed", 1, {"id": 2, "note": None, "at": None, "n": 3}, ("id",)),
                    change("loose", 2, {"a": 4, "b": None}, ()),
                ]
            )
        )
        await sink.write(batch([change("loose", 3, {"a": None, "b": None}, ())], 1))
    finally:
        await sink.aclose()
    assert await rows(target_db, "keyed") == [(1, None, None, None), (2, None, None, 3)]
    found = await fetch(target_db, "SELECT a, b FROM loose ORDER BY a NULLS FIRST")
    assert [tuple(r) for r in found] == [(None, None), (4, None)]


@pytest.mark.anyio
async def test_types_round_trip_through_text(target_db: str, staged_by: str) -> None:
    await execute(
        target_db,
        "CREATE TABLE typed (id int PRIMARY KEY, n numeric, f float8, b bool, "
        "tz timestamptz, d date, ints int[], texts text[], raw bytea, u uuid, "
        "j json)",
    )
    values = {
        "id": 1,
        "n": Decimal("1.10"),
        "f": float("inf"),
        "b": False,
        "tz": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "d": dt.date(2024, 2, 29),
        "ints": [1, None, 3],
        "texts": ['a "b"', "c\\d", None],
        "raw": b"\x00\x01",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": {"k": [1]},
    }
    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(
            batch([ChangeEvent("c", "public", "typed", {"id": 1}, None, values, 5, 0)])
        )
    finally:
        await sink.aclose()
    conn = await asyncpg.connect(target_db)
    try:
        record = await conn.fetchrow("SELECT * FROM typed")
        assert record is not None
        row = dict(record)
    finally:
        await conn.close()
    assert row == {**values, "u": uuid.UUID(str(values["u"])), "j": '{"k":[1]}'}


@pytest.mark.anyio
async def test_timestamps_arrive_exactly_across_their_range(target_db: str, staged_by: str) -> None:
    await execute(
        target_db,
        "CREATE TABLE stamps (id int PRIMARY KEY, tz timestamptz, ms timestamptz(3), "
        "naive timestamp, d date)",
    )
    utc, india = dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))
    stamps = [
        dt.datetime(1, 1, 1, tzinfo=utc),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc),  # just before the Unix epoch
        dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=utc),
        dt.datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=india),
        dt.datetime(2300, 6, 1, 0, 0, 0, 999999, tzinfo=utc),  # past 2**53 microseconds
        dt.datetime(9999, 12, 31, 23, 59, 59, 123456, tzinfo=utc),
        None,
    ]

    def change(key: int, stamp: dt.datetime | None, lsn: int = 5) -> ChangeEvent:
        naive = stamp.astimezone(utc).replace(tzinfo=None) if stamp is not None else None
        day = dt.date(2024, 1, 1)
        after: dict[str, object] = {"id": key, "tz": stamp, "ms": stamp, "naive": naive, "d": day}
        return ChangeEvent("c", "public", "stamps", {"id": key}, None, after, lsn, key)

    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(batch([change(seq, stamp) for seq, stamp in enumerate(stamps)]))
        # A value Python cannot hold comes as text: the column is staged as text instead.
        infinite = ChangeEvent(
            "c", "public", "stamps", {"id": 99}, None, {"id": 99, "tz": "infinity"}, 6, 0
        )
        await sink.write(batch([infinite, change(1, stamps[2], lsn=6)], 1))
    finally:
        await sink.aclose()
    final = [*stamps[:1], stamps[2], *stamps[2:]]  # the second batch changed row 1
    got = await fetch(
        target_db, "SELECT id, tz, ms, naive, d, tz::text AS tz_text FROM stamps ORDER BY id"
    )
    # What the server makes of each value when it rounds to milliseconds itself. (As text:
    # asyncpg would send 0001-01-01 00:00 UTC as -infinity.)
    rounded = await fetch(
        target_db,
        "SELECT s::timestamptz(3) FROM unnest($1::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n",
        [s.isoformat() if s is not None else None for s in final],
    )
    assert [r["id"] for r in got] == [*range(len(stamps)), 99]
    assert [r["tz"] for r in got[:-1]] == final
    assert [r["ms"] for r in got[:-1]] == [r[0] for r in rounded]
    assert [r["naive"] for r in got[:-1]] == [
        s.astimezone(utc).replace(tzinfo=None) if s is not None else None for s in final
    ]
    assert {r["d"] for r in got[:-1]} == {dt.date(2024, 1, 1)}
    assert (got[-1]["id"], got[-1]["tz_text"]) == (99, "infinity")


@pytest.mark.anyio
async def test_deletes_by_keys_of_every_kind(target_db: str, staged_by: str) -> None:
    await execute(
        target_db,
        "CREATE TABLE by_uuid (id uuid PRIMARY KEY, v int);"
        "CREATE TABLE by_name (id varchar(10) PRIMARY KEY, v int);"
        "CREATE TABLE by_time (id timestamptz PRIMARY KEY, v int);"
        "CREATE TABLE by_pair (a int, b text, v int, PRIMARY KEY (a, b))",
    )
    first = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    keys: dict[str, list[Any]] = {
        "by_uuid": [str(uuid.UUID(int=n)) for n in range(3)],  # text, cast to uuid in SQL
        "by_name": ["a", "b", "c"],
        "by_time": [first + dt.timedelta(microseconds=n) for n in range(3)],
    }
    events: list[ChangeEvent] = []
    for table, values in keys.items():
        for n, value in enumerate(values):
            events.append(
                ChangeEvent("c", "public", table, {"id": value}, None, {"id": value, "v": n}, 7, 0)
            )
    for n in range(3):
        pair = {"a": n, "b": str(n)}
        events.append(ChangeEvent("c", "public", "by_pair", pair, None, {**pair, "v": n}, 7, 0))
    deletes = [
        ChangeEvent("d", "public", table, {"id": values[1]}, {"id": values[1]}, None, 8, 0)
        for table, values in keys.items()
    ]
    pair = {"a": 1, "b": "1"}
    deletes.append(ChangeEvent("d", "public", "by_pair", pair, pair, None, 8, 0))
    sink = ApplySink(target_db)
    await sink.open()
    try:
        await sink.write(batch(events))
        await sink.write(batch(deletes, 1))
    finally:
        await sink.aclose()
    assert await rows(target_db, "by_uuid") == [(uuid.UUID(int=0), 0), (uuid.UUID(int=2), 2)]
    assert await rows(target_db, "by_name") == [("a", 0), ("c", 2)]
    assert await rows(target_db, "by_time") == [(keys["by_time"][0], 0), (keys["by_time"][2], 2)]
    assert await rows(target_db, "by_pair") == [(0, "0", 0), (2, "2", 2)]


@pytest.mark.anyio
async def test_checkpoint_in_the_same_transaction(target_db: str) -> None:
    await execute(target_db, "CREATE TABLE items (id int PRIMARY KEY, name text)")
    store = PostgresCheckpointStore(target_db)
    sink = ApplySink(target_db)
    assert sink.commits_to(store)
    assert not ApplySink("postgresql://postgres@127.0.0.1:5432/other").commits_to(store)
    assert (
        ApplySink("postgresql://postgres@127.0.0.1:5432/other").transactional_writer(store) is None
    )
    write = sink.transactional_writer(store)
    assert write is not None
    await store.open()
    await sink.open()
    try:
        await write(batch([ev("c", 1, 100, 0, name="a")]), Checkpoint("p", "cdc", {"lsn": "0/65"}))
        assert await store.load("p", "cdc") == {"lsn": "0/65"}
    finally:
        await sink.aclose()
        await store.aclose()


@pytest.mark.anyio
async def test_apply_connection_killed_mid_batch_is_retried(target_db: str) -> None:
    await execute(
        target_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text);INSERT INTO items VALUES (1, 'a')",
    )
    sink = ApplySink(target_db)
    await sink.open()
    blocker = await asyncpg.connect(target_db)
    try:
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE")
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                sink.write, batch([ev("c", 2, 100, 0, name="b"), ev("u", 1, 100, 1, name="A")])
            )
            pid = await wait_for(
                lambda: fetchval(
                    target_db,
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()",
                )
            )
            assert await fetchval(target_db, "SELECT pg_terminate_backend($1)", pid)
            await anyio.sleep(0.2)
            await blocking.rollback()
    finally:
        await blocker.close()
        await sink.aclose()
    assert await rows(target_db) == [(1, "A"), (2, "b")]
    assert sink.applied == (100, 1)
