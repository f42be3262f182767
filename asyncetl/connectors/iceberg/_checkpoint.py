"""Checkpoints read back from the snapshot summaries an IcebergSink commits.

How a pipeline's last run ended is kept in a property of each table it
committed to (``asyncetl.outcome.<pipeline>``), a metadata commit that adds
no snapshot and so no data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import anyio.to_thread
import orjson
from pyiceberg.catalog.sql import SqlCatalog

from asyncetl.connectors.iceberg._catalog import CatalogSettings, describe
from asyncetl.connectors.iceberg._ledger import (
    Mark,
    belongs_to,
    marks_in,
    resume_point,
    resume_time,
    tables_in,
)
from asyncetl.core.batch import Position
from asyncetl.core.errors import AsyncetlError, CheckpointError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, Problem, RunOutcome

T = TypeVar("T")

#: The table property that holds a pipeline's last run outcome, before the pipeline's name.
OUTCOME: str = "asyncetl.outcome."

__all__ = ["IcebergCheckpointStore"]


class IcebergCheckpointStore(CheckpointStore):
    """The position an :class:`~asyncetl.connectors.iceberg.IcebergSink` committed with its data.

    It keeps nothing of its own: the sink writes each position into the summary
    of the snapshots that hold the data up to it, in the same commit, and
    :meth:`load` reads it back from the latest such snapshot of the pipeline's
    source in every table of the catalog (as the Kafka Connect Iceberg sink
    does). Use it with an ``IcebergSink`` on the same catalog, which then
    commits the checkpoints itself. :meth:`saved_at` is the commit time of
    that snapshot; a run's outcome is kept in a property of every table the
    pipeline committed to (none is kept before its first commit).

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
        return resume_point(await self._marks(pipeline, source))[0]

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the snapshot holding the position :meth:`load` gives was committed (UTC).

        :raises CheckpointError: when the catalog or a table cannot be read.
        """
        return resume_time(await self._marks(pipeline, source))

    async def save_outcome(self, pipeline: str, outcome: RunOutcome) -> None:
        """Record the outcome in a property of each table ``pipeline`` committed to.

        A pipeline that never committed to a table of the catalog has nowhere
        to keep it, and it is not recorded.

        :raises CheckpointError: when the catalog or a table cannot be read or written.
        """
        text = orjson.dumps(outcome.to_json()).decode()

        def body(catalog: SqlCatalog) -> None:
            for _, table in tables_in(catalog):
                if belongs_to(table, pipeline):
                    with table.transaction() as change:
                        change.set_properties({OUTCOME + pipeline: text})

        await self._call(body, f"save the run outcome of pipeline {pipeline!r} in")

    async def load_outcome(self, pipeline: str) -> RunOutcome | None:
        """The latest outcome of ``pipeline`` recorded in any table of the catalog.

        :raises CheckpointError: when the catalog or a table cannot be read.
        """

        def body(catalog: SqlCatalog) -> list[str]:
            return [
                table.properties[OUTCOME + pipeline]
                for _, table in tables_in(catalog)
                if OUTCOME + pipeline in table.properties
            ]

        found = await self._call(body, f"read the run outcome of pipeline {pipeline!r} from")
        outcomes = []
        for text in found:
            try:
                outcome = RunOutcome.from_json(orjson.loads(text))
            except orjson.JSONDecodeError:
                outcome = None  # a property another writer spoiled: the other tables tell
            if outcome is not None:
                outcomes.append(outcome)
        return max(outcomes, key=lambda outcome: outcome.time, default=None)

    async def _marks(self, pipeline: str, source: str) -> list[Mark]:
        return await self._call(
            lambda catalog: marks_in(catalog, pipeline, source),
            f"read the checkpoint of pipeline {pipeline!r} from",
        )

    async def _call(self, body: Callable[[SqlCatalog], T], what: str) -> T:
        """``body(catalog)`` in a worker thread; a failure becomes a :class:`CheckpointError`."""
        await self.open()
        catalog = self._catalog
        assert catalog is not None
        try:
            return await anyio.to_thread.run_sync(body, catalog)
        except AsyncetlError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"cannot {what} Iceberg catalog {self.catalog.name!r}: {describe(exc)}"
            ) from exc

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
