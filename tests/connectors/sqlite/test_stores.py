from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from asyncetl import Checkpoint, CheckpointError, DeadLetter, PermanentError, RunOutcome
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteDeadLetterStore
from tests.connectors.sqlite.helpers import execute, query
from tests.unencodable import check_every_letter_is_kept

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


async def test_checkpoints_round_trip_per_pipeline_and_source(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteCheckpointStore(str(db))
    await store.open()
    assert await store.load("p", "src") is None
    await store.save(Checkpoint("p", "src", {"lsn": "0/16B3748", "n": [1, 2]}))
    await store.save(Checkpoint("p", "other", 7))
    await store.save(Checkpoint("q", "src", None))
    await store.save(Checkpoint("p", "other", 8))
    assert await store.load("p", "src") == {"lsn": "0/16B3748", "n": [1, 2]}
    assert await store.load("p", "other") == 8
    assert await store.load("q", "src") is None
    await store.aclose()

    rows = query(
        db,
        "SELECT pipeline, source, position, updated_at FROM asyncetl_checkpoints "
        "ORDER BY pipeline, source",
    )
    assert [row[:3] for row in rows] == [
        ("p", "other", "8"),
        ("p", "src", '{"lsn":"0/16B3748","n":[1,2]}'),
        ("q", "src", "null"),
    ]
    for *_, updated_at in rows:
        stamp = datetime.fromisoformat(str(updated_at))
        assert stamp.tzinfo is not None
        assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    # A new store on the same file reads what the first one saved.
    again = SqliteCheckpointStore(str(db))
    assert await again.load("p", "other") == 8
    await again.aclose()


async def test_a_corrupted_checkpoint_row_is_a_checkpoint_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteCheckpointStore(str(db), table="cp")
    await store.save(Checkpoint("orders", "jsonl", 10))
    execute(db, "UPDATE cp SET position = 'not json' WHERE pipeline = 'orders'")
    with pytest.raises(CheckpointError) as caught:
        await store.load("orders", "jsonl")
    await store.aclose()
    assert str(caught.value) == (
        f"the checkpoint of pipeline 'orders' (source 'jsonl') in SQLite table 'cp' of {db} is "
        "not valid JSON (invalid literal, expected 'null': line 1 column 1 (char 0)); fix or "
        "delete that row to start over from the beginning"
    )


def letter(pipeline: str, n: int, *, time: datetime = T0) -> DeadLetter:
    return DeadLetter(
        pipeline=pipeline,
        stage="load",
        error=f"bad {n}",
        error_type="ValueError",
        record={"n": n, "tags": ["x"]},
        position=n * 10,
        time=time,
    )


async def test_dead_letters_round_trip_with_ids_and_times(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteDeadLetterStore(str(db))
    await store.open()
    plus_two = timezone(timedelta(hours=2))
    await store.put(
        [
            letter("p", 1),
            letter("q", 2),
            letter("p", 3, time=datetime(2024, 1, 1, 12, tzinfo=plus_two)),
        ]
    )
    await store.put([letter("p", 4, time=datetime(2024, 1, 1, 12))])  # naive: taken as UTC

    listed = await store.list("p")
    assert [
        (x.id, x.pipeline, x.stage, x.error, x.error_type, x.record, x.position, x.time)
        for x in listed
    ] == [
        ("1", "p", "load", "bad 1", "ValueError", {"n": 1, "tags": ["x"]}, 10, T0),
        (
            "3",
            "p",
            "load",
            "bad 3",
            "ValueError",
            {"n": 3, "tags": ["x"]},
            30,
            datetime(2024, 1, 1, 10, tzinfo=UTC),
        ),
        (
            "4",
            "p",
            "load",
            "bad 4",
            "ValueError",
            {"n": 4, "tags": ["x"]},
            40,
            datetime(2024, 1, 1, 12, tzinfo=UTC),
        ),
    ]
    assert [x.id for x in await store.list("p", limit=2)] == ["1", "3"]
    assert [x.id for x in await store.list("q")] == ["2"]

    await store.remove("p", ["1", "4", "2", "999", "not-an-id"])  # "2" belongs to q
    assert [x.id for x in await store.list("p")] == ["3"]
    assert [x.id for x in await store.list("q")] == ["2"]
    await store.put([letter("p", 5)])
    assert [x.id for x in await store.list("p")] == ["3", "5"]  # ids are never reused
    await store.aclose()

    assert query(
        db, "SELECT id, record, position, time FROM asyncetl_dead_letters WHERE id = 3"
    ) == [
        (3, '{"n":3,"tags":["x"]}', "30", "2024-01-01T10:00:00+00:00"),
    ]


async def test_an_unreadable_dead_letter_row_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteDeadLetterStore(str(db), table="dl")
    await store.put([letter("p", 1)])
    execute(db, "UPDATE dl SET record = '{broken' WHERE id = 1")
    with pytest.raises(
        PermanentError,
        match=r"^dead letter 1 in SQLite table 'dl' of .* is "
        r"unreadable \(.*\); fix or delete that row$",
    ):
        await store.list("p")
    await store.aclose()


async def test_stores_and_sink_tables_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    checkpoints = SqliteCheckpointStore(str(db))
    dead = SqliteDeadLetterStore(str(db))
    await checkpoints.open()
    await dead.open()
    await checkpoints.save(Checkpoint("p", "s", 1))
    await dead.put([letter("p", 1)])
    await checkpoints.aclose()
    await dead.aclose()
    assert sorted(
        query(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'asyncetl%'")
    ) == [
        ("asyncetl_checkpoints",),
        ("asyncetl_dead_letters",),
    ]


async def test_a_record_json_cannot_hold_is_kept_as_its_repr_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    await check_every_letter_is_kept(SqliteDeadLetterStore(str(tmp_path / "dead.db")))


async def test_the_save_time_is_the_rows_updated_at_and_outcomes_are_kept(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite"
    failed = RunOutcome("failed", datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "boom")
    async with SqliteCheckpointStore(str(db)) as store:
        assert await store.saved_at("p", "s") is None
        await store.save(Checkpoint("p", "s", 1))
        await store.save_outcome("p", failed)
        saved = await store.saved_at("p", "s")
        assert await store.load_outcome("p") == failed
    sql = "SELECT updated_at FROM asyncetl_checkpoints WHERE source = 's'"
    assert saved == datetime.fromisoformat(str(query(db, sql)[0][0]))
