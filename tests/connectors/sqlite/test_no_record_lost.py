"""No record skipped, doubled or leaked: refused records, dead letters and checkpoints in one file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import DeadLetter, Pipeline, StageError, Transform
from asyncetl.connectors.files import JsonlSource
from asyncetl.connectors.sqlite import (
    SqliteCheckpointStore,
    SqliteDeadLetterStore,
    SqliteSink,
)
from tests.connectors.sqlite.helpers import execute, query

pytestmark = pytest.mark.anyio

#: An order the sink refuses: ``note`` is no column of the table.
BAD = {"id": 14, "qty": 1, "note": "gift"}


def write_orders(path: Path, n: int, bad: dict[int, object] | None = None) -> list[int]:
    """``n`` order lines (line ``i`` replaced by ``bad[i]``); the byte offset after each."""
    offsets, total = [], 0
    with path.open("wb") as file:
        for i in range(n):
            record = (bad or {}).get(i, {"id": i, "qty": i % 5})
            line = record if isinstance(record, bytes) else orjson.dumps(record)
            file.write(line + b"\n")
            total += len(line) + 1
            offsets.append(total)
    return offsets


def orders_pipeline(
    source: Path, db: Path, *, dead_letters: Path | None = None, sink_errors: str = "fail"
) -> Pipeline:
    return Pipeline(
        "orders",
        JsonlSource(str(source), name="orders_jsonl"),
        SqliteSink(str(db), "orders", key=["id"], columns=["id", "qty"]),
        checkpoints=SqliteCheckpointStore(str(db)),
        dead_letters=None if dead_letters is None else SqliteDeadLetterStore(str(dead_letters)),
        sink_errors=sink_errors,  # type: ignore[arg-type]
        source_errors="dead_letter" if dead_letters is not None else "fail",
        max_batch_size=10,
    )


def make_table(db: Path) -> None:
    execute(db, "CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER)")


def offset(position: object) -> str:
    """The byte offset of a stored file position (which also names its file), as text."""
    return str(orjson.loads(str(position))["offset"])


def checkpoint(db: Path) -> list[tuple[object, ...]]:
    return [(offset(p),) for (p,) in query(db, "SELECT position FROM asyncetl_checkpoints")]


def letters_in(db: Path) -> list[tuple[object, ...]]:
    rows = query(
        db, "SELECT pipeline, stage, record, position FROM asyncetl_dead_letters ORDER BY id"
    )
    return [(*row[:3], offset(row[3])) for row in rows]


async def test_a_record_the_sink_refuses_fails_the_run_and_is_not_skipped_on_rerun(
    tmp_path: Path,
) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 30, {14: BAD})
    make_table(db)
    for _ in range(2):  # the rerun meets the same record, and fails the same way
        with capture_logs(), pytest.raises(StageError) as caught:
            await orders_pipeline(source, db).run()
        assert caught.value.stage == "sqlite_sink"
        assert caught.value.position == {"path": str(source), "offset": offsets[19]}
        assert "record has column 'note'" in str(caught.value)
        assert checkpoint(db) == [(str(offsets[9]),)]
        assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(10)]

    # With a dead-letter policy the record is set aside, in the batch's transaction.
    with capture_logs():
        stats = await orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter").run()
    assert (stats.records_in, stats.records_out, stats.dead_lettered) == (20, 19, 1)
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(30) if i != 14]
    assert letters_in(db) == [
        ("orders", "sqlite_sink", orjson.dumps(BAD).decode(), str(offsets[19]))
    ]


async def test_a_dead_letter_that_fails_to_store_rolls_its_batch_back(tmp_path: Path) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 30, {14: BAD, 22: b"{not json"})
    make_table(db)
    store = SqliteDeadLetterStore(str(db))
    await store.open()
    await store.aclose()
    execute(
        db,
        "CREATE TRIGGER full BEFORE INSERT ON asyncetl_dead_letters "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    with capture_logs(), pytest.raises(StageError) as caught:
        await orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter").run()
    assert "disk full" in str(caught.value)
    assert checkpoint(db) == [(str(offsets[9]),)]
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(10)]

    execute(db, "DROP TRIGGER full")
    with capture_logs():
        await orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter").run()
    assert checkpoint(db) == [(str(offsets[-1]),)]
    assert letters_in(db) == [
        ("orders", "sqlite_sink", orjson.dumps(BAD).decode(), str(offsets[19])),
        # A source's reject carries the position of its chunk.
        ("orders", "orders_jsonl", '"{not json"', str(offsets[29])),
    ]


async def test_a_dead_letter_store_that_is_locked_keeps_the_checkpoint_before_the_batch(
    tmp_path: Path,
) -> None:
    """The dead letters live in another file, held locked by another writer."""
    source, db, other = tmp_path / "orders.jsonl", tmp_path / "orders.db", tmp_path / "dlq.db"
    offsets = write_orders(source, 30, {14: BAD})
    make_table(db)
    store = SqliteDeadLetterStore(str(other))
    await store.open()
    await store.aclose()
    locker = sqlite3.connect(other, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        run = orders_pipeline(source, db, dead_letters=other, sink_errors="dead_letter")
        assert isinstance(run.dead_letters, SqliteDeadLetterStore)
        run.dead_letters._db.busy_timeout = 0  # fail fast; the retries still take a moment
        with capture_logs(), pytest.raises(StageError) as caught:
            await run.run()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert caught.value.stage == "dead_letters"
    assert "busy" in str(caught.value)
    assert checkpoint(db) == [(str(offsets[9]),)]
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(10)]


async def test_a_refused_record_json_cannot_hold_is_dead_lettered_as_text_in_the_batch(
    tmp_path: Path,
) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    deep: object = 1
    for _ in range(300):  # deeper than JSON encoders go
        deep = [deep]
    offsets = write_orders(source, 30)
    make_table(db)

    def deepen(order: dict[str, object]) -> dict[str, object]:
        # ``note`` is no column: the sink refuses the record.
        return {**order, "note": deep} if order["id"] == 14 else order

    run = orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter")
    run.transforms = [Transform(deepen, name="deepen")]
    with capture_logs():
        stats = await run.run()
    assert (stats.records_in, stats.records_out, stats.dead_lettered) == (30, 29, 1)
    assert checkpoint(db) == [(str(offsets[29]),)]
    assert query(db, "SELECT id FROM orders ORDER BY id") == [(i,) for i in range(30) if i != 14]
    text = {"asyncetl_unencodable_record": repr({"id": 14, "qty": 4, "note": deep})}
    assert letters_in(db) == [
        (
            "orders",
            "sqlite_sink",
            orjson.dumps({**text, "reason": "Recursion limit reached"}).decode(),
            str(offsets[19]),
        )
    ]


async def test_dead_letters_are_stored_once_across_a_checkpoint_reset(tmp_path: Path) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 30, {3: b"{", 14: BAD, 15: BAD, 22: b"[oops"})
    make_table(db)
    with capture_logs():
        await orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter").run()
    expected = [
        ("orders", "orders_jsonl", '"{"', str(offsets[9])),  # its chunk's position
        ("orders", "sqlite_sink", orjson.dumps(BAD).decode(), str(offsets[19])),
        ("orders", "sqlite_sink", orjson.dumps(BAD).decode(), str(offsets[19])),
        ("orders", "orders_jsonl", '"[oops"', str(offsets[29])),
    ]
    assert letters_in(db) == expected
    execute(db, "DELETE FROM asyncetl_checkpoints")  # what `checkpoint reset` does
    with capture_logs():
        stats = await orders_pipeline(source, db, dead_letters=db, sink_errors="dead_letter").run()
    assert stats.records_in == 30
    assert letters_in(db) == expected


async def test_a_dead_letter_table_of_an_older_version_gets_keys_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "dlq.db"
    execute(
        db,
        """
        CREATE TABLE asyncetl_dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT,
            pipeline TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL,
            error_type TEXT NOT NULL, record TEXT NOT NULL, position TEXT NOT NULL,
            time TEXT NOT NULL);
        INSERT INTO asyncetl_dead_letters (pipeline, stage, error, error_type, record, position,
            time) VALUES ('p', 's', 'bad', 'ValueError', '{"a":1}', '7',
            '2024-05-01T00:00:00+00:00');
        """,
    )
    now = datetime(2024, 5, 2, tzinfo=UTC)
    letter = DeadLetter("p", "s", "worse", "ValueError", {"a": 2}, 8, now, key="k1")
    async with SqliteDeadLetterStore(str(db)) as store:
        await store.put([letter, letter])
        await store.put([letter])
        stored = await store.list("p")
    assert [(d.id, d.record, d.position, d.key) for d in stored] == [
        ("1", {"a": 1}, 7, None),
        ("2", {"a": 2}, 8, None),
    ]


async def test_a_record_without_its_key_is_refused_naming_the_key_column(tmp_path: Path) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    write_orders(source, 3, {1: {"qty": 5}, 2: {"id": None, "qty": 6}})
    run = Pipeline(
        "orders",
        JsonlSource(str(source), name="orders_jsonl"),
        SqliteSink(str(db), "orders", key=["id"], create=True),
        checkpoints=SqliteCheckpointStore(str(db)),
        dead_letters=SqliteDeadLetterStore(str(db)),
        sink_errors="dead_letter",
    )
    with capture_logs():
        stats = await run.run()
    assert (stats.records_out, stats.dead_lettered) == (1, 2)
    assert query(db, "SELECT id, qty FROM orders") == [(0, 0)]
    assert query(db, "SELECT record, error FROM asyncetl_dead_letters ORDER BY id") == [
        (
            '{"qty":5}',
            "record's key column 'id' is missing; SQLite table 'orders' is keyed by it, "
            "and a record without its key cannot be stored",
        ),
        (
            '{"id":null,"qty":6}',
            "record's key column 'id' is null; SQLite table 'orders' is keyed by it, "
            "and a record without its key cannot be stored",
        ),
    ]
