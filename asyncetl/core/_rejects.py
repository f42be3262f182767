"""A stage's failure policy applied to the records it refused: fail, or dead-letter them."""

from __future__ import annotations

from collections.abc import Sequence

from asyncetl.core._stats import RunStats
from asyncetl.core.batch import Position, Reject
from asyncetl.core.deadletter import dead_letters
from asyncetl.core.errors import StageError
from asyncetl.core.interfaces import DeadLetterStore, FailurePolicy
from asyncetl.core.logs import Logger

__all__ = ["RejectHandler"]


class RejectHandler:
    """Fails the run on a refused record, or sets the records aside as dead letters."""

    def __init__(
        self,
        pipeline: str,
        store: DeadLetterStore | None,
        stats: RunStats,
        log: Logger,
    ) -> None:
        self._pipeline = pipeline
        self._store = store
        self._stats = stats
        self._log = log

    async def handle(
        self, stage: str, policy: FailurePolicy, rejects: Sequence[Reject], position: Position
    ) -> None:
        """Apply ``policy`` to the ``rejects`` of ``stage`` in the batch ending at ``position``.

        :raises StageError: for the first reject, when the policy is ``fail`` (or
            there is no dead-letter store).
        """
        if policy == "fail" or self._store is None:
            raise StageError(stage, position, rejects[0].error) from rejects[0].error
        letters = dead_letters(self._pipeline, stage, rejects, position)
        await self._store.put(letters)
        self._stats.record_dead_lettered(len(letters))
        self._log.warning(
            "dead-lettered",
            stage=stage,
            records=len(letters),
            first_error=f"{letters[0].error_type}: {letters[0].error}",
        )
