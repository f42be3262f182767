"""DuckDB checkpoint and dead-letter stores, and batches committed with their checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Checkpoint,
    CheckpointError,
    DeadLetter,
    JsonValue,
    ListSource,
    Pipeline,
    RunOutcome,
    Transform,
)
from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBDeadLetterStore, DuckDBSink
from tests.connectors.duckdb.helpers import query

pytestmark = pytest.mark.anyio


async def test_checkpoints_round_trip_and_a_broken_one_is_named(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    async with DuckDBCheckpointStore(str(db)) as store:
        assert await store.load("p", "s") is None
        await store.save(Checkpoint("p", "s", {"offset": 7, "path": "x"}))
        await store.save(Checkpoint("p", "s", {"offset": 9, "path": "x"}))
        assert await store.load("p", "s") == {"offset": 9, "path": "x"}
        await store.aclose()
        query(db, "UPDATE asyncetl_checkpoints SET position = '{oops'")
        with pytest.raises(CheckpointError) as caught:
            await store.load("p", "s")
    assert str(caught.value).startswith(
        f"the checkpoint of pipeline 'p' (source 's') in DuckDB table 'asyncetl_checkpoints' of "
        f"{db} is not valid JSON ("
    )


async def test_dead_letters_are_stored_once_per_key(tmp_path: Path) -> None:
    moment = datetime(2026, 3, 1, 12, tzinfo=UTC)
    letter = DeadLetter("p", "t", "bad", "ValueError", {"n": 1}, {"o": 1}, moment, key="k1")
    async with DuckDBDeadLetterStore(str(tmp_path / "d.duckdb")) as store:
        await store.put([letter, letter])
        await store.put([letter])
        found = await store.list("p")
        assert [(x.id, x.record, x.position, x.time) for x in found] == [
            ("1", {"n": 1}, {"o": 1}, moment)
        ]
        await store.remove("p", ["1"])
        assert await store.list("p") == []


def numbered(n: int) -> dict[str, object]:
    if n % 10 == 3:
        raise ValueError(f"no {n}")
    return {"id": n, "sq": n * n}


def pipeline(db: Path, records: list[object]) -> Pipeline:
    return Pipeline(
        "numbers",
        ListSource(records, name="numbers"),
        DuckDBSink(
            str(db), "numbers", create=True
        ),  # append: only the transaction prevents duplicates
        [Transform(numbered, name="numbered", on_error="dead_letter")],
        checkpoints=DuckDBCheckpointStore(str(db)),
        dead_letters=DuckDBDeadLetterStore(str(db)),
        max_batch_size=10,
    )


async def test_batches_commit_with_their_checkpoint_and_dead_letters(tmp_path: Path) -> None:
    db = tmp_path / "n.duckdb"
    with capture_logs():
        stats = await pipeline(db, list(range(35))).run()
    assert stats.records_out == 31
    wanted = [(n, n * n) for n in range(35) if n % 10 != 3]
    assert query(db, "SELECT id, sq FROM numbers ORDER BY id") == wanted
    letters = query(db, "SELECT stage, error, record FROM asyncetl_dead_letters ORDER BY id")
    assert letters == [("numbered", f"no {n}", str(n)) for n in (3, 13, 23, 33)]
    assert query(db, "SELECT pipeline, source, position FROM asyncetl_checkpoints") == [
        ("numbers", "numbers", _json(35))
    ]
    with capture_logs():
        again = await pipeline(db, list(range(35))).run()
    assert again.records_in == 0
    assert query(db, "SELECT id, sq FROM numbers ORDER BY id") == wanted
    assert query(db, "SELECT count(*) FROM asyncetl_dead_letters") == [(4,)]


def _json(position: JsonValue | Mapping[str, object]) -> str:
    return orjson.dumps(position).decode()


async def test_checking_the_stores_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    assert await DuckDBCheckpointStore(str(db)).check() == []
    assert await DuckDBDeadLetterStore(str(db)).check() == []
    assert not db.exists()
    missing = tmp_path / "nowhere" / "c.duckdb"
    problems = await DuckDBCheckpointStore(str(missing)).check()
    assert [(p.setting, p.message) for p in problems] == [
        ("path", f"directory {missing.parent} of {missing} does not exist")
    ]


async def test_the_save_time_is_the_rows_updated_at_and_outcomes_are_kept(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    failed = RunOutcome("failed", datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "boom")
    async with DuckDBCheckpointStore(str(db)) as store:
        assert await store.saved_at("p", "s") is None
        await store.save(Checkpoint("p", "s", 1))
        await store.save_outcome("p", failed)
        saved = await store.saved_at("p", "s")
        assert await store.load_outcome("p") == failed
    [(updated_at,)] = query(db, "SELECT updated_at FROM asyncetl_checkpoints WHERE source = 's'")
    assert saved == updated_at
