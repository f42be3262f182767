"""The committer: the low watermark, the checkpoint, and the source's acknowledgement."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from asyncetl.core._stats import RunStats
from asyncetl.core.batch import Batch, Position, Reject
from asyncetl.core.errors import AsyncetlError, CheckpointError, StageError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetterStore,
    Settle,
    Sink,
    Source,
)
from asyncetl.core.logs import Logger
from asyncetl.core.watermark import Watermark

__all__ = ["Committer"]

AnyBatch = Batch[Any]


class Committer:
    """Commits the low watermark each time an acknowledged batch moves it.

    A commit saves the checkpoint (unless the sink wrote it in the batch's own
    transaction), records it in the run's statistics, and only then gives the
    source its upstream acknowledgement, so upstream never runs ahead of the
    checkpoint.

    :param pipeline: the pipeline's name, the first half of the checkpoint key.
    :param dead_letters: the run's dead-letter store: the sink stores letters
        in its transactions when it can (see ``Sink.stores_dead_letters_of``).
    """

    def __init__(
        self,
        *,
        pipeline: str,
        source: Source[Any],
        sink: Sink[Any],
        checkpoints: CheckpointStore,
        stats: RunStats,
        log: Logger,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._source = source
        self._checkpoints = checkpoints
        self._stats = stats
        self._log = log
        self._watermark = Watermark()
        # Asked before anything is opened: a sink may open differently when its
        # checkpoints travel in its own transactions.
        letters_too = dead_letters is not None and sink.stores_dead_letters_of(dead_letters)
        self._transactional_writer = (
            sink.transactional_writer(checkpoints, dead_letters)
            if letters_too
            else sink.transactional_writer(checkpoints)
        )
        self._letters_in_transaction = letters_too and self._transactional_writer is not None
        self._unpublished = False
        self._last_batch = (0, 0)
        #: Since when batches have waited with no commit (``None`` while none waits).
        self.waiting_since: float | None = None

    @property
    def transactional(self) -> bool:
        """Whether the sink writes each checkpoint in the transaction of its batch."""
        return self._transactional_writer is not None

    @property
    def letters_in_transaction(self) -> bool:
        """Whether the sink stores each batch's dead letters in the batch's transaction."""
        return self._letters_in_transaction

    @property
    def pending(self) -> int:
        """Batches registered but not yet folded into the committed watermark."""
        return self._watermark.pending

    @property
    def position(self) -> Position:
        """The committed position (at first, the one resumed from)."""
        return self._watermark.position

    async def resume(self) -> Position:
        """Load the committed position and start the watermark there.

        :raises CheckpointError: when the checkpoint cannot be loaded.
        """
        try:
            start = await self._checkpoints.load(self._pipeline, self._source.name)
        except AsyncetlError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"cannot load the checkpoint of pipeline {self._pipeline!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._watermark = Watermark(start)
        self._stats.record_resume(start)
        return start

    def register(self, batch: AnyBatch) -> None:
        """Expect an acknowledgement of ``batch``; batches come in sequence order."""
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        self._watermark.register(batch.seq, batch.position)

    async def write_with_checkpoint(
        self, batch: AnyBatch, settle: Settle | None = None
    ) -> Sequence[Reject]:
        """Have the sink write ``batch`` with the checkpoint its acknowledgement commits.

        Only when :attr:`transactional`; the checkpoint is the position the
        watermark will have once ``batch`` is acknowledged. The writer awaits
        ``settle`` before it commits.
        """
        assert self._transactional_writer is not None
        position = self._watermark.peek_ack(batch.seq)
        checkpoint = Checkpoint(self._pipeline, self._source.name, position)
        return await self._transactional_writer(batch, checkpoint, settle)

    async def commit(self, batch: AnyBatch) -> None:
        """Acknowledge ``batch``, durably written; commit the watermark if that moved it.

        :raises CheckpointError: when the checkpoint cannot be saved.
        :raises StageError: when the source's upstream acknowledgement fails.
        """
        self.ack(batch)
        await self.publish()

    def ack(self, batch: AnyBatch) -> None:
        """Fold ``batch`` into the watermark without committing it yet (see :meth:`publish`).

        For a sink that holds batches: the next batch's checkpoint already counts
        this one, but nothing is saved or acknowledged upstream until it is durable.
        """
        if self._watermark.ack(batch.seq):
            self._unpublished = True
        self._last_batch = (batch.seq, len(batch.records))

    async def publish(self) -> None:
        """Commit the watermark, if acknowledgements moved it since the last commit.

        :raises CheckpointError: when the checkpoint cannot be saved.
        :raises StageError: when the source's upstream acknowledgement fails.
        """
        if not self._unpublished:
            return
        self._unpublished = False
        position = self._watermark.position
        if self._transactional_writer is None:
            await self._save(position)
        self._stats.record_commit(position)
        self.waiting_since = time.monotonic() if self._watermark.pending else None
        seq, records = self._last_batch
        self._log.debug("committed", batch=seq, records=records, position=position)
        try:
            await self._source.acknowledge(position)
        except Exception as exc:
            raise StageError(self._source.name, position, exc) from exc

    async def _save(self, position: Position) -> None:
        try:
            await self._checkpoints.save(Checkpoint(self._pipeline, self._source.name, position))
        except AsyncetlError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"cannot save the checkpoint of pipeline {self._pipeline!r} at {position!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
