"""The manifest of a Parquet directory: the files committed, and the checkpoints with them.

``_asyncetl_manifest.json`` at the top of the directory lists every data file
the sink committed (paths relative to the directory) and, when checkpoints
travel with the sink's writes, each (pipeline, source)'s committed position.
It is replaced whole by an atomic rename after the data files it names were
renamed into place, so the files it lists and the position it holds always
agree. Its name starts with ``_``, which dataset readers skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
import orjson

from asyncetl.core.batch import Position
from asyncetl.core.errors import CheckpointError, PermanentError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore

__all__ = ["MANIFEST", "Manifest", "ParquetCheckpointStore", "replace_durably"]

MANIFEST = "_asyncetl_manifest.json"


@dataclass(slots=True)
class Manifest:
    """The committed files, and pipeline → source → position."""

    files: list[str] = field(default_factory=list)
    checkpoints: dict[str, dict[str, Position]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest of ``directory``; an empty one when there is none yet.

        :raises CheckpointError: when the manifest is not what this sink writes.
        """
        path = directory / MANIFEST
        try:
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CheckpointError(
                f"the manifest {path} is unreadable ({exc}); restore it, or remove the "
                "directory to start over"
            ) from exc
        files, checkpoints = document.get("files"), document.get("checkpoints")
        if not isinstance(files, list) or not isinstance(checkpoints, dict):
            raise CheckpointError(
                f"the manifest {path} lacks its 'files' list or 'checkpoints' table; restore "
                "it, or remove the directory to start over"
            )
        return cls([str(f) for f in files], checkpoints)

    def write(self, directory: Path) -> None:
        """Replace the manifest of ``directory`` atomically and durably."""
        text = orjson.dumps({"files": self.files, "checkpoints": self.checkpoints})
        replace_durably(directory / MANIFEST, text)

    def position(self, pipeline: str, source: str) -> Position:
        return self.checkpoints.get(pipeline, {}).get(source)

    def commit(self, checkpoint: Checkpoint) -> None:
        self.checkpoints.setdefault(checkpoint.pipeline, {})[checkpoint.source] = (
            checkpoint.position
        )


def replace_durably(path: Path, content: bytes) -> None:
    """Write ``content`` beside ``path``, flush it to disk, and rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ParquetCheckpointStore(CheckpointStore):
    """Committed positions in the manifest of a Parquet directory.

    A :class:`~asyncetl.connectors.parquet.ParquetSink` writing to the same
    directory commits each batch's position in the manifest update that makes
    its files part of the dataset (exactly-once); without such a sink the store
    replaces the manifest itself.

    :param path: the directory the sink writes.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.directory = Path(path)

    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when there is none.

        :raises CheckpointError: when the manifest is unreadable.
        """
        manifest = await anyio.to_thread.run_sync(Manifest.read, self.directory)
        return manifest.position(pipeline, source)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the committed position of the checkpoint's pipeline and source."""
        await anyio.to_thread.run_sync(self._save, checkpoint)

    def _save(self, checkpoint: Checkpoint) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            manifest = Manifest.read(self.directory)
            manifest.commit(checkpoint)
            manifest.write(self.directory)
        except OSError as exc:
            raise PermanentError(
                f"cannot write the manifest in {self.directory}: {exc}; check that the "
                "directory is writable"
            ) from exc
