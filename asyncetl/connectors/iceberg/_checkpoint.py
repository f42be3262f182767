"""Checkpoints read back from the snapshot summaries an IcebergSink commits."""

from __future__ import annotations

import anyio.to_thread
from pyiceberg.catalog.sql import SqlCatalog

from asyncetl.connectors.iceberg._catalog import CatalogSettings, describe
from asyncetl.connectors.iceberg._ledger import marks_in, resume_point
from asyncetl.core.batch import Position
from asyncetl.core.errors import AsyncetlError, CheckpointError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, Problem, RunOutcome

__all__ = ["IcebergCheckpointStore"]


class IcebergCheckpointStore(CheckpointStore):
    """The position an :class:`~asyncetl.connectors.iceberg.IcebergSink` committed with its data.

    It keeps nothing of its own: the sink writes each position into the summary
    of the snapshots that hold the data up to it, in the same commit, and
    :meth:`load` reads it back from the latest such snapshot of the pipeline's
    source in every table of the catalog (as the Kafka Connect Iceberg sink
    does). Use it with an ``IcebergSink`` on the same catalog, which then
    commits the checkpoints itself.

    :param warehouse: the warehouse directory.
    :param catalog: the catalog's name.
    :param catalog_uri: the catalog database (``sqlite:///…`` or ``postgresql://…``);
        ``catalog.db`` in the warehouse by default.
    :raises ConfigError: for an empty warehouse or an unknown catalog URI scheme.
    """

    def __init__(
        self, warehouse: str, *, catalog: str = "asyncetl", catalog_uri: str | None = None
    ) -> None:
        self.catalog = CatalogSettings(str(warehouse), catalog_uri, catalog)
        self.catalog.check("IcebergCheckpointStore")
        self._catalog: SqlCatalog | None = None

    async def open(self) -> None:
        """Connect to the catalog.

        :raises PermanentError: when the catalog database cannot be opened.
        """
        if self._catalog is None:
            self._catalog = await anyio.to_thread.run_sync(self.catalog.open)

    async def check(self) -> list[Problem]:
        """Whether the warehouse can be made and the catalog database answers; creates nothing."""
        return await anyio.to_thread.run_sync(self.catalog.problems)

    async def aclose(self) -> None:
        catalog, self._catalog = self._catalog, None
        if catalog is not None:
            await anyio.to_thread.run_sync(catalog.engine.dispose)

    async def load(self, pipeline: str, source: str) -> Position:
        """The position of the latest complete commit of ``pipeline``'s ``source``, or ``None``.

        :raises CheckpointError: when the catalog or a table cannot be read.
        """
        await self.open()
        catalog = self._catalog
        assert catalog is not None
        try:
            marks = await anyio.to_thread.run_sync(marks_in, catalog, pipeline, source)
        except AsyncetlError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"cannot read the checkpoint of pipeline {pipeline!r} from Iceberg catalog "
                f"{self.catalog.name!r}: {describe(exc)}"
            ) from exc
        return resume_point(marks)[0]

    async def save_outcome(self, pipeline: str, outcome: RunOutcome) -> None:
        """Not recorded: this store keeps nothing but what the sink commits with its data."""

    async def save(self, checkpoint: Checkpoint) -> None:
        """Refused: positions reach Iceberg only in the commits of the data up to them.

        :raises CheckpointError: always, saying what to use instead.
        """
        if checkpoint.position is None:  # a reset: no position of its own can be moved
            raise CheckpointError(
                f"IcebergCheckpointStore cannot reset pipeline {checkpoint.pipeline!r}: its "
                "position is kept in the snapshots of the tables its IcebergSink committed; to "
                "start over, drop those tables or run under another pipeline name"
            )
        raise CheckpointError(
            f"IcebergCheckpointStore cannot save position {checkpoint.position!r} of pipeline "
            f"{checkpoint.pipeline!r} on its own: positions are committed with the data by an "
            "IcebergSink on the same catalog; use that sink, or another checkpoint store"
        )
