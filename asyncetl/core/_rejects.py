"""A stage's failure policy applied to the records it refused: fail, or dead-letter them.

Dead letters travel with their batch: the ones a source or a transform makes
wait here, under the batch's sequence number, until the batch is written, and
are stored before its checkpoint can pass them (in the batch's own transaction
when the sink can take them). A crash before then loses no record: the batch
is read again, and keyed letters are never stored twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from asyncetl.core._meter import StageMeter
from asyncetl.core._stats import RunStats
from asyncetl.core.batch import Position, Reject
from asyncetl.core.deadletter import dead_letters, keyed
from asyncetl.core.errors import StageError
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore, FailurePolicy
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
        meters: Mapping[str, StageMeter] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._store = store
        self._stats = stats
        self._log = log
        self._meters = meters or {}
        self._waiting: dict[int, list[DeadLetter]] = {}
        #: The latest letters stored, newest last, for a person watching the run.
        self.latest: deque[DeadLetter] = deque(maxlen=20)

    async def handle(
        self,
        stage: str,
        policy: FailurePolicy,
        rejects: Sequence[Reject],
        position: Position,
        seq: int,
    ) -> None:
        """Apply ``policy`` to the ``rejects`` of ``stage`` in batch ``seq``, at ``position``.

        The dead letters wait for the batch to be written (see :meth:`settle`).

        :raises StageError: for the first reject, when the policy is ``fail`` (or
            there is no dead-letter store), or when a record cannot be made a letter.
        """
        self._waiting.setdefault(seq, []).extend(self._letters(stage, policy, rejects, position))

    def settle(
        self,
        seq: int,
        stage: str,
        policy: FailurePolicy,
        rejects: Sequence[Reject],
        position: Position,
    ) -> list[DeadLetter]:
        """All of batch ``seq``'s letters, keyed, once ``stage`` (the sink) refused ``rejects``.

        It may be asked again (a retried transaction): the batch's letters wait
        until :meth:`forget`.

        :raises StageError: as :meth:`handle`.
        """
        letters = self._waiting.get(seq, [])
        if rejects:
            letters = letters + self._letters(stage, policy, rejects, position)
        return keyed(letters)

    def forget(self, seq: int) -> None:
        """Drop what waits for batch ``seq``, written or failed."""
        self._waiting.pop(seq, None)

    def _letters(
        self, stage: str, policy: FailurePolicy, rejects: Sequence[Reject], position: Position
    ) -> list[DeadLetter]:
        if policy == "fail" or self._store is None:
            raise StageError(stage, position, rejects[0].error) from rejects[0].error
        try:
            return dead_letters(self._pipeline, stage, rejects, position)
        except Exception as exc:
            raise StageError(stage, position, exc) from exc

    async def store(self, letters: Sequence[DeadLetter], position: Position) -> None:
        """Durably store ``letters`` of the batch ending at ``position``.

        Count them with :meth:`stored` once the batch is written.

        :raises StageError: when the store fails; the batch must not be committed.
        """
        if not letters:
            return
        assert self._store is not None
        try:
            await self._store.put(letters)
        except StageError:
            raise
        except Exception as exc:
            raise StageError("dead_letters", position, exc) from exc

    def stored(self, letters: Sequence[DeadLetter]) -> None:
        """Count and log ``letters``, now durably stored: one log line per stage."""
        by_stage: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_stage.setdefault(letter.stage, []).append(letter)
        self.latest.extend(letters)
        for stage, theirs in by_stage.items():
            self._stats.record_dead_lettered(len(theirs))
            meter = self._meters.get(stage)
            if meter is not None:
                meter.dead_lettered += len(theirs)
                for letter in theirs:
                    meter.record_error(letter.error_type)
            self._log.warning(
                "dead-lettered",
                stage=stage,
                records=len(theirs),
                first_error=f"{theirs[0].error_type}: {theirs[0].error}",
            )
