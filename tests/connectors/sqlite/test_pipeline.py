"""JSONL → transform → SQLite with the checkpoint in the sink's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    CheckpointStore,
    DeadLetterStore,
    JsonValue,
    Pipeline,
    Reject,
    Settle,
    StageError,
    TransactionalWriter,
    Transform,
)
from asyncetl.connectors.files import JsonlSource
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteSink
from tests.connectors.sqlite.helpers import execute, query

pytestmark = pytest.mark.anyio

Record = Mapping[str, object]


class SpySink(SqliteSink):
    """A real SqliteSink that notes which write method the engine called."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.plain_writes = 0
        self.checkpoints: list[Checkpoint] = []

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        self.plain_writes += 1
        return await super().write(batch)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[Record] | None:
        write = super().transactional_writer(store, dead_letters)
        if write is None:
            return None

        async def spied(
            batch: Batch[Record], checkpoint: Checkpoint, settle: Settle | None = None
        ) -> Sequence[Reject]:
            self.checkpoints.append(checkpoint)
            return await write(batch, checkpoint, settle)

        return spied


def write_orders(path: Path, n: int) -> list[JsonValue]:
    """``n`` order lines; returns the position after each line, naming ``path``."""
    offsets: list[JsonValue] = []
    total = 0
    with path.open("wb") as file:
        for i in range(n):
            line = orjson.dumps({"id": i, "sku": f"sku-{i % 7}", "qty": i % 5}) + b"\n"
            file.write(line)
            total += len(line)
            offsets.append({"path": str(path), "offset": total})
    return offsets


def priced(order: dict[str, object]) -> dict[str, object]:
    return {**order, "total": float(order["qty"]) * 2.5}  # type: ignore[arg-type]


def pipeline(source_path: Path, db: Path, sink: SqliteSink) -> Pipeline:
    return Pipeline(
        "orders",
        JsonlSource(str(source_path), name="orders_jsonl"),
        sink,
        [Transform(priced)],
        checkpoints=SqliteCheckpointStore(str(db)),
        max_batch_size=10,
        max_batch_age=5,
    )


def checkpoint_rows(db: Path) -> list[tuple[object, ...]]:
    return query(db, "SELECT pipeline, source, position, updated_at FROM asyncetl_checkpoints")


async def test_each_batch_commits_with_its_checkpoint_and_a_rerun_writes_nothing(
    tmp_path: Path,
) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 45)
    sink = SpySink(str(db), "orders", key=["id"], create=True)
    with capture_logs():
        stats = await pipeline(source, db, sink).run()

    assert sink.plain_writes == 0
    assert [c.position for c in sink.checkpoints] == [*offsets[9::10], offsets[-1]]
    assert {(c.pipeline, c.source) for c in sink.checkpoints} == {("orders", "orders_jsonl")}
    assert (stats.records_out, stats.batches_committed, stats.position) == (45, 5, offsets[-1])
    rows = checkpoint_rows(db)
    assert [row[:3] for row in rows] == [("orders", "orders_jsonl", _json(offsets[-1]))]
    loaded = query(db, "SELECT id, sku, qty, total FROM orders ORDER BY id")
    assert loaded == [(i, f"sku-{i % 7}", i % 5, (i % 5) * 2.5) for i in range(45)]

    again = SpySink(str(db), "orders", key=["id"], create=True)
    with capture_logs():
        second = await pipeline(source, db, again).run()
    assert (again.plain_writes, again.checkpoints, second.records_in) == (0, [], 0)
    assert checkpoint_rows(db) == rows  # not even rewritten
    assert query(db, "SELECT id, sku, qty, total FROM orders ORDER BY id") == loaded


async def test_a_failed_transaction_loses_batch_and_checkpoint_together(tmp_path: Path) -> None:
    """Plain inserts (no key), so only the shared transaction prevents duplicates on rerun."""
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 50)
    store = SqliteCheckpointStore(str(db))
    await store.open()
    await store.aclose()
    # A real SQLite failure inside the sink's transaction, after the batch's rows went in:
    # the checkpoint of the third batch cannot be written.
    execute(
        db,
        f"""
        CREATE TRIGGER fail_third BEFORE UPDATE ON asyncetl_checkpoints
        WHEN NEW.position = '{_json(offsets[29])}' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;
    """,
    )
    sink = SpySink(str(db), "orders", create=True)
    with capture_logs(), pytest.raises(StageError) as caught:
        await pipeline(source, db, sink).run()
    assert caught.value.stage == "sqlite_sink"
    assert "disk on fire" in str(caught.value)
    assert [c.position for c in sink.checkpoints] == [offsets[9], offsets[19], offsets[29]]
    assert [row[2] for row in checkpoint_rows(db)] == [_json(offsets[19])]
    assert query(db, "SELECT id FROM orders ORDER BY rowid") == [(i,) for i in range(20)]

    execute(db, "DROP TRIGGER fail_third")
    with capture_logs():
        stats = await pipeline(source, db, SpySink(str(db), "orders", create=True)).run()
    assert (stats.records_in, stats.position) == (30, offsets[-1])
    assert query(db, "SELECT id FROM orders ORDER BY rowid") == [(i,) for i in range(50)]
    assert [row[2] for row in checkpoint_rows(db)] == [_json(offsets[-1])]


async def test_an_empty_batch_still_moves_the_checkpoint(tmp_path: Path) -> None:
    source, db = tmp_path / "orders.jsonl", tmp_path / "orders.db"
    offsets = write_orders(source, 12)
    drop_all = Transform(lambda order: None, name="drop_all")
    sink = SpySink(str(db), "orders", key=["id"], create=True)
    run = Pipeline(
        "orders",
        JsonlSource(str(source), name="orders_jsonl"),
        sink,
        [drop_all],
        checkpoints=SqliteCheckpointStore(str(db)),
        max_batch_size=10,
    )
    with capture_logs():
        await run.run()
    assert [c.position for c in sink.checkpoints] == [offsets[9], offsets[11]]
    assert [row[2] for row in checkpoint_rows(db)] == [_json(offsets[-1])]
    # Nothing to learn the columns from, so no table was created.
    assert query(db, "SELECT name FROM sqlite_master WHERE name = 'orders'") == []


def _json(position: JsonValue) -> str:
    """``position`` as the checkpoint table stores it."""
    return orjson.dumps(position).decode()
