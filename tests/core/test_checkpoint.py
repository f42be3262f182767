from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from asyncetl import Checkpoint, CheckpointError, JsonFileCheckpointStore, RunOutcome

pytestmark = pytest.mark.anyio


async def test_round_trip_and_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    store = JsonFileCheckpointStore(path)
    assert await store.load("p", "s") is None
    await store.save(Checkpoint("p", "s", {"offset": 10}))
    await store.save(Checkpoint("p", "other", 3))
    before = datetime.now(UTC)
    await store.save(Checkpoint("p", "s", {"offset": 20}))
    after = datetime.now(UTC)
    document = orjson.loads(path.read_bytes())
    saved = document.pop("saved_at")
    assert document == {
        "format": 1,
        "checkpoints": {"p": {"s": {"offset": 20}, "other": 3}},
    }
    assert sorted(saved["p"]) == ["other", "s"]
    assert before <= datetime.fromisoformat(saved["p"]["s"]) <= after
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.json"]  # no temp files left
    reopened = JsonFileCheckpointStore(path)
    assert await reopened.load("p", "s") == {"offset": 20}
    assert await reopened.saved_at("p", "s") == datetime.fromisoformat(saved["p"]["s"])
    assert await reopened.saved_at("p", "unsaved") is None


async def test_a_file_written_before_save_times_were_kept_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_bytes(b'{"format": 1, "checkpoints": {"p": {"s": 7}}}')
    store = JsonFileCheckpointStore(path)
    assert (await store.load("p", "s"), await store.saved_at("p", "s")) == (7, None)
    await store.save(Checkpoint("p", "other", 1))
    assert await store.saved_at("p", "s") is None
    assert await JsonFileCheckpointStore(path).load("p", "s") == 7


async def test_the_last_run_outcome_is_kept_beside_the_positions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    store = JsonFileCheckpointStore(path)
    assert await store.load_outcome("p") is None
    failed = RunOutcome("failed", datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "stage 'x' failed")
    await store.save_outcome("p", failed)
    assert await JsonFileCheckpointStore(path).load_outcome("p") == failed
    assert await store.load("p", "s") is None


async def test_corrupted_file_is_an_error_not_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_bytes(b'{"format": 1, "checkpoints": {"p": ')
    with pytest.raises(CheckpointError) as info:
        await JsonFileCheckpointStore(path).load("p", "s")
    assert str(info.value).startswith(f"checkpoint file {path} is not valid JSON (")
    assert str(info.value).endswith(
        "restore it from a backup or delete it to start over from the beginning"
    )


async def test_foreign_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_bytes(b"[1, 2, 3]")
    with pytest.raises(CheckpointError, match="is not an asyncetl checkpoint file"):
        await JsonFileCheckpointStore(path).load("p", "s")


async def test_unwritable_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    store = JsonFileCheckpointStore(tmp_path / "missing" / "checkpoints.json")
    with pytest.raises(CheckpointError, match="^cannot write checkpoint file .*missing"):
        await store.save(Checkpoint("p", "s", 1))
