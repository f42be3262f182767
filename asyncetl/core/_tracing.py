"""Per-batch stage timings for tracing, collected only while a pipeline traces its batches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asyncetl.core._meter import StageMeter
from asyncetl.core.batch import Batch
from asyncetl.core.observe import BatchTrace, StageTrace

__all__ = ["BatchTracer", "TraceBatches"]

#: What a pipeline calls with each committed batch's trace.
TraceBatches = Callable[[BatchTrace], None]


class BatchTracer:
    """Keeps each batch's stage timings from its making to its commit, then hands them on."""

    def __init__(self, pipeline: str, trace: TraceBatches) -> None:
        self._pipeline = pipeline
        self._trace = trace
        self._open: dict[int, tuple[int, int, list[StageTrace]]] = {}

    def made(self, batch: Batch[Any]) -> None:
        self._open[batch.seq] = (time.time_ns(), len(batch.records), [])

    def stage(
        self, seq: int, meter: StageMeter, start_ns: int, records_in: int, records_out: int
    ) -> None:
        """Stage ``meter`` worked on batch ``seq`` from ``start_ns`` until now."""
        found = self._open.get(seq)
        if found is not None:
            step = StageTrace(
                meter.name, meter.kind, start_ns, time.time_ns(), records_in, records_out
            )
            found[2].append(step)

    def committed(self, seq: int) -> None:
        found = self._open.pop(seq, None)
        if found is not None:
            made, records, stages = found
            self._trace(BatchTrace(self._pipeline, seq, records, made, time.time_ns(), stages))
