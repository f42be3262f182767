"""The JSON-file checkpoint store: the one that needs no external system."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import orjson

from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.durable import fsync_directory
from asyncetl.core.errors import CheckpointError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, Problem

__all__ = ["JsonFileCheckpointStore"]

_FORMAT = 1


class JsonFileCheckpointStore(CheckpointStore):
    """Every checkpoint in one JSON file, replaced atomically on each save.

    A save writes a temporary file beside the target, fsyncs it, renames it over
    the target and fsyncs the directory, so a crash leaves either the old or the
    new file, never a torn one. A file that exists but cannot be read is an
    error, never a silent restart from the beginning. Each position's save time
    is kept beside it under ``saved_at``; files written before that key existed
    stay readable (their times are unknown until the next save).

    :param path: the JSON file; its directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, dict[str, JsonValue]] | None = None
        self._saved_at: dict[str, dict[str, JsonValue]] = {}
        self._lock = anyio.Lock()

    async def check(self) -> list[Problem]:
        """Whether the file can be replaced: its directory exists and is writable."""
        return await anyio.to_thread.run_sync(self._problems)

    def _problems(self) -> list[Problem]:
        directory = self.path.parent
        if not directory.is_dir():
            return [Problem("path", f"directory {directory} of {self.path} does not exist")]
        if not os.access(directory, os.W_OK | os.X_OK):
            return [Problem("path", f"directory {directory} of {self.path} is not writable")]
        return []

    async def load(self, pipeline: str, source: str) -> Position:
        data = await self._loaded()
        return data.get(pipeline, {}).get(source)

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        await self._loaded()
        saved = self._saved_at.get(pipeline, {}).get(source)
        return datetime.fromisoformat(saved) if isinstance(saved, str) else None

    async def save(self, checkpoint: Checkpoint) -> None:
        async with self._lock:
            data = await self._loaded()
            data.setdefault(checkpoint.pipeline, {})[checkpoint.source] = checkpoint.position
            times = self._saved_at.setdefault(checkpoint.pipeline, {})
            times[checkpoint.source] = datetime.now(UTC).isoformat()
            document = {"format": _FORMAT, "checkpoints": data, "saved_at": self._saved_at}
            await anyio.to_thread.run_sync(_write_atomically, self.path, orjson.dumps(document))

    async def _loaded(self) -> dict[str, dict[str, JsonValue]]:
        if self._data is None:
            document = await anyio.to_thread.run_sync(_read_document, self.path)
            self._data = document["checkpoints"]
            saved_at = document.get("saved_at")
            self._saved_at = saved_at if isinstance(saved_at, dict) else {}
        return self._data


def _read_document(path: Path) -> dict[str, dict[str, dict[str, JsonValue]]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"checkpoints": {}}
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint file {path}: {exc.strerror}") from exc
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"checkpoint file {path} is not valid JSON ({exc}); restore it from a backup "
            "or delete it to start over from the beginning"
        ) from exc
    checkpoints = document.get("checkpoints") if isinstance(document, dict) else None
    if not isinstance(checkpoints, dict) or document.get("format") != _FORMAT:
        raise CheckpointError(
            f"checkpoint file {path} is not an asyncetl checkpoint file (format {_FORMAT}); "
            "restore it from a backup or delete it to start over from the beginning"
        )
    return document  # type: ignore[no-any-return]


def _write_atomically(path: Path, content: bytes) -> None:
    # One fixed temporary name: a crash between write and rename leaves at most
    # this one file behind, and the next save overwrites it.
    temp_path = path.with_name(f".{path.name}.tmp")
    try:
        try:
            with temp_path.open("wb") as temp:
                temp.write(content)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_path, path)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint file {path}: {exc.strerror}") from exc
