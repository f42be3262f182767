"""What one run did: the counters every stage reports to, each through one method."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from asyncetl.core.batch import Position

__all__ = ["RunStats"]


@dataclass(slots=True)
class RunStats:
    """What one run did; updated live while it runs.

    The engine changes it only through the ``record_*`` methods, so each
    counter has one place that moves it.
    """

    records_in: int = 0
    records_out: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    batches_committed: int = 0
    position: Position = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    committed_at: float | None = None  # monotonic time of the last commit
    read_at: float | None = None  # monotonic time the source last gave records
    stopped_early: bool = False

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    def as_dict(self) -> dict[str, object]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "unchanged": self.unchanged,
            "dead_lettered": self.dead_lettered,
            "batches_committed": self.batches_committed,
            "elapsed_s": round(self.elapsed, 3),
        }

    def record_resume(self, position: Position) -> None:
        """The run starts after ``position``, the checkpoint it loaded."""
        self.position = position

    def record_read(self, records: int) -> None:
        """The source gave ``records`` records (rejects included); ``0`` is a heartbeat."""
        if records:
            self.records_in += records
            self.read_at = time.monotonic()

    def record_written(self, records: int, *, unchanged: int = 0) -> None:
        """The sink acknowledged ``records`` records; ``unchanged`` of them the target already held.

        Those are not written, so they count as ``unchanged``, not in ``records_out``.
        """
        self.records_out += records - unchanged
        self.unchanged += unchanged

    def record_dead_lettered(self, records: int) -> None:
        self.dead_lettered += records

    def record_commit(self, position: Position) -> None:
        """The low watermark moved to ``position`` and is committed."""
        self.batches_committed += 1
        self.position = position
        self.committed_at = time.monotonic()

    def record_stopped_early(self) -> None:
        """The run was cancelled before its in-flight batches drained."""
        self.stopped_early = True

    def record_finish(self) -> None:
        self.finished_at = time.monotonic()
