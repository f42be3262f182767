"""The manifest of a Parquet directory: the files committed, and the checkpoints with them.

``_asyncetl_manifest.json`` at the top of the directory lists every data file
the sink committed (paths relative to the directory) and, when checkpoints
travel with the sink's writes, each (pipeline, source)'s committed position.
It is replaced whole, atomically, after the data files it names were moved
into place, so the files it lists and the position it holds always agree. Its
name starts with ``_``, which dataset readers skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio.to_thread
import orjson

from asyncetl.connectors.parquet._storage import Storage, open_storage
from asyncetl.core.batch import Position
from asyncetl.core.errors import CheckpointError, PermanentError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore

__all__ = ["MANIFEST", "Manifest", "ParquetCheckpointStore"]

MANIFEST = "_asyncetl_manifest.json"


@dataclass(slots=True)
class Manifest:
    """The committed files, and pipeline → source → position."""

    files: list[str] = field(default_factory=list)
    checkpoints: dict[str, dict[str, Position]] = field(default_factory=dict)
    #: pipeline → source → when its position was committed (ISO 8601); manifests
    #: written before this was kept have none, and read as unknown times.
    saved_at: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, storage: Storage, where: str) -> Manifest:
        """The manifest in ``storage``; an empty one when there is none yet.

        :param where: the directory, for errors.
        :raises CheckpointError: when the manifest is not what this sink writes.
        """
        try:
            content = storage.read(MANIFEST)
            document = (
                {"files": [], "checkpoints": {}} if content is None else orjson.loads(content)
            )
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CheckpointError(
                f"the manifest {MANIFEST} of {where} is unreadable ({exc}); restore it, or "
                "remove the directory to start over"
            ) from exc
        files = document.get("files") if isinstance(document, dict) else None
        checkpoints = document.get("checkpoints") if isinstance(document, dict) else None
        if not isinstance(files, list) or not isinstance(checkpoints, dict):
            raise CheckpointError(
                f"the manifest {MANIFEST} of {where} lacks its 'files' list or 'checkpoints' "
                "table; restore it, or remove the directory to start over"
            )
        saved_at = document.get("saved_at")
        return cls(
            [str(f) for f in files], checkpoints, saved_at if isinstance(saved_at, dict) else {}
        )

    def write(self, storage: Storage) -> None:
        """Replace the manifest in ``storage`` atomically and durably."""
        content = orjson.dumps(
            {"files": self.files, "checkpoints": self.checkpoints, "saved_at": self.saved_at}
        )
        storage.replace(MANIFEST, content)

    def position(self, pipeline: str, source: str) -> Position:
        return self.checkpoints.get(pipeline, {}).get(source)

    def commit(self, checkpoint: Checkpoint) -> None:
        self.checkpoints.setdefault(checkpoint.pipeline, {})[checkpoint.source] = (
            checkpoint.position
        )
        times = self.saved_at.setdefault(checkpoint.pipeline, {})
        times[checkpoint.source] = datetime.now(UTC).isoformat()

    def saved_time(self, pipeline: str, source: str) -> datetime | None:
        saved = self.saved_at.get(pipeline, {}).get(source)
        return datetime.fromisoformat(saved) if isinstance(saved, str) else None


class ParquetCheckpointStore(CheckpointStore):
    """Committed positions in the manifest of a Parquet directory.

    A :class:`~asyncetl.connectors.parquet.ParquetSink` writing to the same
    directory commits each batch's position in the manifest update that makes
    its files part of the dataset (exactly-once); without such a sink the store
    replaces the manifest itself.

    :param path: the directory the sink writes (a local path or a ``pyarrow.fs`` URL).
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """The directory's filesystem, made on first use."""
        if self._storage is None:
            self._storage = open_storage(self.path)
        return self._storage

    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when there is none.

        :raises CheckpointError: when the manifest is unreadable.
        """
        manifest = await anyio.to_thread.run_sync(Manifest.read, self.storage, self.path)
        return manifest.position(pipeline, source)

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the position was committed, as the manifest records it, or ``None``."""
        manifest = await anyio.to_thread.run_sync(Manifest.read, self.storage, self.path)
        return manifest.saved_time(pipeline, source)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the committed position of the checkpoint's pipeline and source."""
        await anyio.to_thread.run_sync(self._save, checkpoint)

    def _save(self, checkpoint: Checkpoint) -> None:
        try:
            self.storage.make_dir("")
            manifest = Manifest.read(self.storage, self.path)
            manifest.commit(checkpoint)
            manifest.write(self.storage)
        except OSError as exc:
            raise PermanentError(
                f"cannot write the manifest in {self.path}: {exc}; check that the "
                "directory is writable"
            ) from exc
