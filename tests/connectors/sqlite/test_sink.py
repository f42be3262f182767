from __future__ import annotations

import enum
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    ConfigError,
    MemoryCheckpointStore,
    PermanentError,
    Reject,
    TransientError,
)
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteSink, quote_ident
from tests.connectors.sqlite.helpers import execute, query

pytestmark = pytest.mark.anyio


async def write(sink: SqliteSink, records: Sequence[object], seq: int = 0) -> list[Reject]:
    batch: Batch[Mapping[str, object]] = Batch(seq, records, seq)  # type: ignore[arg-type]
    return list(await sink.write(batch))


def reasons(rejects: list[Reject]) -> list[tuple[object, str, str]]:
    return [(r.record, type(r.error).__name__, str(r.error)) for r in rejects]


async def test_create_types_the_table_from_the_first_batch(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "orders", key=["id"], create=True)
    await sink.open()
    rejects = await write(
        sink,
        [
            {
                "id": 1,
                "sku": "a",
                "qty": 2.5,
                "paid": True,
                "meta": {"k": [1]},
                "note": None,
                "blob": b"\x00\x01",
                "nothing": None,
            },
            {
                "id": 2,
                "sku": "b",
                "qty": 1.0,
                "paid": False,
                "meta": [1, 2],
                "note": "x",
                "blob": None,
                "nothing": None,
            },
        ],
    )
    await sink.aclose()
    assert rejects == []
    assert query(db, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('orders')") == [
        ("id", "INTEGER", 1, 1),
        ("sku", "TEXT", 0, 0),
        ("qty", "REAL", 0, 0),
        ("paid", "INTEGER", 0, 0),
        ("meta", "TEXT", 0, 0),
        ("note", "TEXT", 0, 0),
        ("blob", "BLOB", 0, 0),
        ("nothing", "", 0, 0),
    ]
    assert query(db, "SELECT * FROM orders ORDER BY id") == [
        (1, "a", 2.5, 1, '{"k":[1]}', None, b"\x00\x01", None),
        (2, "b", 1.0, 0, "[1,2]", "x", None, None),
    ]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


async def test_a_replayed_batch_leaves_exactly_the_same_rows(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", key=["id"], create=True)
    batch = [{"id": i, "v": f"v{i}"} for i in range(5)]
    await write(sink, batch)
    before = query(db, "SELECT * FROM t ORDER BY id")
    await write(sink, batch, seq=1)
    await write(sink, batch, seq=2)
    assert query(db, "SELECT * FROM t ORDER BY id") == before
    assert len(before) == 5

    await write(sink, [{"id": 3, "v": "changed"}, {"id": 9, "v": "new"}], seq=3)
    await sink.aclose()
    assert query(db, "SELECT * FROM t ORDER BY id") == [
        (0, "v0"),
        (1, "v1"),
        (2, "v2"),
        (3, "changed"),
        (4, "v4"),
        (9, "new"),
    ]


async def test_a_key_repeated_in_one_batch_keeps_its_last_record(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", key=["id"], create=True)
    batch = [{"id": i % 7, "v": f"v{i}"} for i in range(3000)]
    await write(sink, batch)
    await sink.aclose()
    last = {record["id"]: record["v"] for record in batch}
    assert query(db, "SELECT * FROM t ORDER BY id") == sorted(last.items())
    assert last[0] == "v2996"


async def test_a_large_batch_loads_every_row_once_in_its_order(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "log", create=True)
    # 2500 rows: parts of 1024, 1024, 448 (a multiple of 64) and 4 rows
    await write(sink, [{"n": i} for i in range(2500)])
    await sink.aclose()
    assert query(db, "SELECT n FROM log ORDER BY rowid") == [(i,) for i in range(2500)]


async def test_batches_of_a_recurring_size_load_every_row_and_refuse_only_the_bad_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER CHECK (n <> -1))")
    sink = SqliteSink(str(db), "t", key=["id"])
    for seq, offset in enumerate([0, 10, 20]):  # from the second on, one statement
        await write(sink, [{"id": i, "n": i + offset} for i in range(300)], seq)
    bad = [{"id": i, "n": -1 if i == 150 else i} for i in range(300)]
    rejects = await write(sink, bad, 3)
    await sink.aclose()
    assert query(db, "SELECT id, n FROM t ORDER BY id") == [
        (i, 170 if i == 150 else i) for i in range(300)
    ]
    assert [r.record for r in rejects] == [bad[150]]


async def test_a_composite_key_of_every_column_does_nothing_on_conflict(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "pairs", key=["a", "b"], create=True)
    await write(sink, [{"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "y"}])
    await sink.aclose()
    assert query(db, "SELECT * FROM pairs ORDER BY b") == [(1, "x"), (1, "y")]


async def test_without_a_key_every_write_inserts(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "log", create=True)
    await write(sink, [{"msg": "a"}, {"msg": "b"}])
    await write(sink, [{"msg": "a"}], seq=1)
    await sink.aclose()
    assert query(db, "SELECT msg FROM log ORDER BY rowid") == [("a",), ("b",), ("a",)]


async def test_missing_columns_load_null_and_unknown_columns_are_rejects(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", key=["id"], create=True)
    extra = {"id": 3, "qty": 1, "colour": "red"}
    rejects = await write(sink, [{"id": 1, "qty": 5}, {"id": 2}, extra, [1, 2]])
    await sink.aclose()
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, 5), (2, None)]
    assert reasons(rejects) == [
        (
            extra,
            "ValueError",
            "record has column 'colour', which is not loaded into SQLite "
            "table 't'; add it to columns (and the table), or set schema_contract = "
            '"evolve" (or "discard_value", "discard_row")',
        ),
        ([1, 2], "TypeError", "a SQLite record must map column names to values, not be a list"),
    ]


async def test_a_missing_column_of_a_defaultdict_loads_null_and_is_not_added(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER)")
    sink = SqliteSink(str(db), "t", key=["id"], columns=["id", "qty"])
    record: defaultdict[str, object] = defaultdict(lambda: 7, {"id": 1})
    rejects = await write(sink, [record, {"id": 2, "qty": None, "extra": 1}])
    await sink.aclose()
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, None)]
    assert dict(record) == {"id": 1}
    assert [r.record for r in rejects] == [{"id": 2, "qty": None, "extra": 1}]


async def test_unknown_columns_can_be_discarded_and_columns_chosen(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(
        str(db),
        "t",
        key=["id"],
        create=True,
        columns=["id", "qty"],
        schema_contract="discard_value",
    )
    rejects = await write(sink, [{"name": "x", "id": 1, "qty": 5, "colour": "red"}])
    await sink.aclose()
    assert rejects == []
    assert query(db, "SELECT * FROM t") == [(1, 5)]


async def test_evolve_adds_a_column_per_new_key_in_the_batch_transaction(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", key=["id"], create=True, schema_contract="evolve")
    assert await write(sink, [{"id": 1, "qty": 5}, {"id": 2, "colour": "red"}]) == []
    assert await write(sink, [{"id": 3, "qty": 1, "weight": 2.5, "colour": None}], seq=1) == []
    await sink.aclose()
    assert query(db, "SELECT name, type FROM pragma_table_info('t') ORDER BY cid") == [
        ("id", "INTEGER"),
        ("qty", "INTEGER"),
        ("colour", "TEXT"),
        ("weight", "REAL"),
    ]
    assert query(db, "SELECT * FROM t ORDER BY id") == [
        (1, 5, None, None),
        (2, None, "red", None),
        (3, 1, None, 2.5),
    ]


async def test_discard_row_leaves_records_with_unknown_keys_out_and_says_so(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", key=["id"], create=True, schema_contract="discard_row")
    with capture_logs() as logs:
        rejects = await write(sink, [{"id": 1, "qty": 5}, {"id": 2, "qty": 1, "colour": "red"}])
    await sink.aclose()
    assert rejects == []
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, 5)]
    assert [
        (log["event"], log["table"], log["records"], log["fields"])
        for log in logs
        if log["log_level"] == "warning"
    ] == [("records left out: fields without a column", "t", 1, ["colour"])]


async def test_a_missing_table_without_create_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "orders", key=["id"])
    with pytest.raises(PermanentError) as caught:
        await sink.open()
    assert str(caught.value) == (
        f"SQLite table 'orders' does not exist in {db}; create it or set create = true"
    )
    with pytest.raises(PermanentError) as caught:  # also without open()
        await write(sink, [{"id": 1}])
    assert str(caught.value) == (
        f"SQLite table 'orders' does not exist in {db}; create it or set create = true"
    )
    await sink.aclose()


async def test_an_existing_table_missing_a_column_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER)")
    sink = SqliteSink(str(db), "t", key=["id"])
    await sink.open()
    with pytest.raises(PermanentError) as caught:
        await write(sink, [{"id": 1, "qty": 2, "price": 3.5}])
    await sink.aclose()
    assert str(caught.value) == (
        "SQLite table 't' has no column 'price'; add the column, or list the columns to load "
        "in columns"
    )


async def test_a_key_without_a_unique_constraint_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id INTEGER, qty INTEGER)")
    sink = SqliteSink(str(db), "t", key=["id"])
    with pytest.raises(PermanentError) as caught:
        await write(sink, [{"id": 1, "qty": 2}])
    await sink.aclose()
    assert str(caught.value) == (
        "SQLite table 't' has no PRIMARY KEY or UNIQUE constraint on id; add one, or leave out "
        "key to insert plainly"
    )


async def test_rows_the_table_refuses_are_rejects_and_the_rest_loads(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0))")
    sink = SqliteSink(str(db), "t", key=["id"])
    batch = [
        {"id": 1, "qty": 1},
        {"id": 2, "qty": -1},
        {"id": 3, "qty": 2**70},
        {"id": 4, "qty": None},
        {"id": 5, "qty": 5},
    ]
    rejects = await write(sink, batch)
    await sink.aclose()
    assert query(db, "SELECT * FROM t ORDER BY id") == [(1, 1), (5, 5)]
    assert reasons(rejects) == [
        (
            batch[1],
            "PermanentError",
            "SQLite table 't' refused the record: CHECK constraint failed: qty >= 0",
        ),
        (
            batch[2],
            "PermanentError",
            "SQLite table 't' refused the record: Python int too "
            "large to convert to SQLite INTEGER",
        ),
        (
            batch[3],
            "PermanentError",
            "SQLite table 't' refused the record: NOT NULL constraint failed: t.qty",
        ),
    ]


async def test_a_refused_row_in_a_later_part_of_a_batch_leaves_no_row_twice(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE log (n INTEGER NOT NULL CHECK (n <> 1500))")
    sink = SqliteSink(str(db), "log")
    batch = [{"n": i} for i in range(2000)]
    rejects = await write(sink, batch)
    await sink.aclose()
    assert query(db, "SELECT n FROM log ORDER BY rowid") == [(i,) for i in range(2000) if i != 1500]
    assert reasons(rejects) == [
        (
            batch[1500],
            "PermanentError",
            "SQLite table 'log' refused the record: CHECK constraint failed: n <> 1500",
        )
    ]


class Colour(enum.IntEnum):
    RED = 1


async def test_values_sqlite_lacks_are_bound_as_text(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(str(db), "t", create=True)
    when = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    ident = uuid.UUID(int=1)
    await write(
        sink,
        [
            {
                "when": when,
                "day": date(2024, 2, 3),
                "amount": Decimal("1.10"),
                "ident": ident,
                "pair": (1, "a"),
                "colour": Colour.RED,
                "blob": b"\x00\xff",
                "nested": {"blob": b"\x00\xff", "big": 2**70},
            }
        ],
    )
    await sink.aclose()
    assert query(db, "SELECT * FROM t") == [
        (
            "2024-02-03T04:05:06+00:00",
            "2024-02-03",
            "1.10",
            str(ident),
            '[1,"a"]',
            1,
            b"\x00\xff",  # a BLOB; inside JSON text, base64
            '{"blob": "AP8=", "big": 1180591620717411303424}',
        )
    ]


async def test_an_odd_table_name_is_only_ever_a_name(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE y (v INTEGER); INSERT INTO y VALUES (42);")
    table = 'x"; DROP TABLE y; --'
    column = "we\"ird'; col"
    sink = SqliteSink(str(db), table, key=["id"], create=True)
    await sink.open()
    await write(sink, [{"id": 1, column: "a"}, {"id": 2, column: "b"}])
    await write(sink, [{"id": 2, column: "c"}], seq=1)
    await sink.aclose()
    assert query(db, "SELECT v FROM y") == [(42,)]
    assert sorted(query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")) == [
        (table,),
        ("y",),
    ]
    assert query(db, f"SELECT * FROM {quote_ident(table)} ORDER BY id") == [(1, "a"), (2, "c")]
    assert query(db, "SELECT name FROM pragma_table_info(?)", (table,)) == [("id",), (column,)]


def test_quote_ident_doubles_quotes_and_refuses_nul() -> None:
    assert quote_ident('x"; DROP TABLE y; --') == '"x""; DROP TABLE y; --"'
    with pytest.raises(ConfigError, match=r"^'a\\x00b' is not a valid SQLite identifier$"):
        quote_ident("a\x00b")


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        SqliteSink("t.db", "t", key=["id"], columns=["qty"])
    assert (
        str(caught.value) == "SqliteSink sqlite_sink: key: key column 'id' is not among the columns"
    )
    with pytest.raises(ConfigError) as caught:
        SqliteSink("t.db", "t", schema_contract="drop")
    assert str(caught.value) == (
        "SqliteSink sqlite_sink: schema_contract: must be one of evolve, freeze, discard_row, "
        "discard_value, not 'drop'"
    )
    with pytest.raises(ConfigError) as caught:
        SqliteSink("t.db", "")
    assert str(caught.value) == "SqliteSink sqlite_sink: table: '' is not a valid SQLite identifier"


async def test_commits_to_a_checkpoint_store_on_the_same_file_only(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    sink = SqliteSink(str(tmp_path / "t.db"), "t", create=True)
    assert sink.commits_to(SqliteCheckpointStore(str(tmp_path / "sub" / ".." / "t.db")))
    assert not sink.commits_to(SqliteCheckpointStore(str(tmp_path / "other.db")))
    assert not sink.commits_to(MemoryCheckpointStore())
    memory = SqliteSink(":memory:", "t", create=True)
    assert not memory.commits_to(SqliteCheckpointStore(":memory:"))


async def test_the_transactional_writer_saves_a_batch_and_its_checkpoint_together(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    store = SqliteCheckpointStore(str(db))
    sink = SqliteSink(str(db), "t", key=["id"], create=True)
    assert sink.transactional_writer(MemoryCheckpointStore()) is None
    assert sink.transactional_writer(SqliteCheckpointStore(str(tmp_path / "other.db"))) is None
    write = sink.transactional_writer(store)
    assert write is not None
    await store.open()
    await sink.open()
    try:
        assert await write(Batch(0, [{"id": 1}, {"id": 2}], 2), Checkpoint("p", "s", 2)) == []
        assert await write(Batch(1, [], 3), Checkpoint("p", "s", 3)) == []
        assert await store.load("p", "s") == 3
    finally:
        await sink.aclose()
        await store.aclose()
    assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (2,)]


async def test_a_locked_database_is_waited_for_and_retried(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);")
    sink = SqliteSink(str(db), "t", key=["id"], busy_timeout=0.05)
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(write, sink, [{"id": 1}])
                await anyio.sleep(0.15)
                other.execute("COMMIT")
    await sink.aclose()
    assert query(db, "SELECT id FROM t") == [(1,)]
    assert logs and all(entry["event"] == "retrying" for entry in logs)


async def test_a_database_locked_for_good_is_a_transient_error(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    execute(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);")
    sink = SqliteSink(str(db), "t", key=["id"], busy_timeout=0.01)
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with capture_logs(), pytest.raises(TransientError) as caught:
            await write(sink, [{"id": 1}])
        other.execute("ROLLBACK")
    await sink.aclose()
    assert str(caught.value) == (
        f"SQLite database {db} is busy (database is locked) during write to table 't'"
    )


async def test_a_batch_of_records_shaped_alike_still_refuses_each_bad_one_alone(
    tmp_path: Path,
) -> None:
    # Every record has as many keys as there are columns: the batch is taken whole
    # unless one of them has a NULL key, a key outside the columns or a value to adapt.
    db = tmp_path / "t.db"
    execute(db, "CREATE TABLE t (id TEXT PRIMARY KEY, qty INTEGER, at TEXT)")
    sink = SqliteSink(str(db), "t", key=["id"], columns=["id", "qty", "at"])
    first = await write(sink, [{"id": "a", "qty": 1, "at": "x"}])
    keyless = {"id": None, "qty": 2, "at": "y"}
    other = {"id": "c", "qty": 3, "colour": "red"}
    null_key = await write(sink, [{"id": "b", "qty": 2, "at": "y"}, keyless], seq=1)
    outside = await write(sink, [other, {"id": "d", "qty": 4, "at": "z"}], seq=2)
    adapted = await write(sink, [{"at": date(2024, 5, 6), "qty": {"n": 1}, "id": "e"}], seq=3)
    await sink.aclose()
    assert query(db, "SELECT * FROM t ORDER BY id") == [
        ("a", 1, "x"),
        ("b", 2, "y"),
        ("d", 4, "z"),
        ("e", '{"n":1}', "2024-05-06"),
    ]
    assert (first, adapted) == ([], [])
    assert reasons(null_key) == [
        (
            keyless,
            "ValueError",
            "record's key column 'id' is null; SQLite table 't' is keyed by it, and a record "
            "without its key cannot be stored",
        )
    ]
    assert [r.record for r in outside] == [other]
