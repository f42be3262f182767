from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from asyncetl import Checkpoint, CheckpointError, JsonFileCheckpointStore

pytestmark = pytest.mark.anyio


async def test_round_trip_and_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    store = JsonFileCheckpointStore(path)
    assert await store.load("p", "s") is None
    await store.save(Checkpoint("p", "s", {"offset": 10}))
    await store.save(Checkpoint("p", "other", 3))
    await store.save(Checkpoint("p", "s", {"offset": 20}))
    assert orjson.loads(path.read_bytes()) == {
        "format": 1,
        "checkpoints": {"p": {"s": {"offset": 20}, "other": 3}},
    }
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.json"]  # no temp files left
    assert await JsonFileCheckpointStore(path).load("p", "s") == {"offset": 20}


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
