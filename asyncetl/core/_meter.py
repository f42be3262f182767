"""Per-stage counters and the once-a-second samples that recent rates come from.

Everything here moves once per batch (or once a second), never per record, so
that watching a pipeline costs its hot path nothing it would notice.
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from asyncetl.core.observe import LATENCY_BUCKETS, PartProgress, Progress, ProgressUnit, StageView

__all__ = ["RATE_WINDOW", "Sampler", "StageMeter", "count_retry", "metering"]

#: Seconds a recent rate is measured over.
RATE_WINDOW = 10.0
#: Samples kept for the throughput history: ten minutes at one a second.
HISTORY = 600

StageKind = Literal["source", "transform", "sink"]


class StageMeter:
    """One stage's counters, each moved once per batch."""

    __slots__ = (
        "batches",
        "dead_lettered",
        "errors",
        "kind",
        "latency_counts",
        "latency_sum",
        "name",
        "records_in",
        "records_out",
        "retries",
    )

    def __init__(self, name: str, kind: StageKind) -> None:
        self.name = name
        self.kind: StageKind = kind
        self.records_in = 0
        self.records_out = 0
        self.batches = 0
        self.dead_lettered = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.retries: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def record_batch(self, records_in: int, records_out: int, seconds: float | None) -> None:
        """A batch went through: ``records_in`` taken, ``records_out`` passed on in ``seconds``."""
        self.records_in += records_in
        self.records_out += records_out
        self.batches += 1
        if seconds is not None:
            self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds

    def record_retry(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def record_error(self, error_type: str, records: int = 1) -> None:
        self.errors[error_type] = self.errors.get(error_type, 0) + records

    def view(self, per_s: float) -> StageView:
        return StageView(
            name=self.name,
            kind=self.kind,
            records_in=self.records_in,
            records_out=self.records_out,
            batches=self.batches,
            dead_lettered=self.dead_lettered,
            latency_counts=tuple(self.latency_counts),
            latency_sum=self.latency_sum,
            retries=dict(self.retries),
            errors=dict(self.errors),
            per_s=per_s,
        )


_CURRENT: ContextVar[StageMeter | None] = ContextVar("asyncetl_stage_meter", default=None)


@contextmanager
def metering(meter: StageMeter) -> Iterator[None]:
    """Count the retries made in this task (and the tasks it starts) on ``meter``."""
    token = _CURRENT.set(meter)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def count_retry(exc: BaseException) -> None:
    """Count a retry of ``exc`` on the stage whose task retries, if any.

    The reason is the failure's own type: the client's exception a connector
    mapped to a transient error, else the error's type.
    """
    meter = _CURRENT.get()
    if meter is not None:
        cause = exc.__cause__
        meter.record_retry(type(cause if cause is not None else exc).__name__)


class Sampler:
    """Samples the counters once a second; recent rates compare now with a sample of before."""

    def __init__(
        self, meters: Sequence[StageMeter], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._meters = list(meters)
        self._clock = clock
        self._samples: deque[tuple[float, tuple[int, ...], dict[tuple[str, str], int]]]
        self._samples = deque(maxlen=HISTORY)
        self.sample([])

    def sample(self, progress: Sequence[Progress]) -> None:
        """Take a sample now, with the source's ``progress``."""
        outs = tuple(meter.records_out for meter in self._meters)
        done: dict[tuple[str, str], int] = {(p.part, p.unit): p.done for p in progress}
        self._samples.append((self._clock(), outs, done))

    def stage_rates(self) -> list[float]:
        """Records out per second of each stage over the last :data:`RATE_WINDOW` seconds."""
        now = self._clock()
        then, outs, _ = self._before(now)
        span = max(now - then, 1e-9)
        pairs = zip(self._meters, outs, strict=True)
        return [(meter.records_out - out) / span for meter, out in pairs]

    def progress(self, progress: Sequence[Progress]) -> list[PartProgress]:
        """``progress`` with each part's recent rate and time left."""
        now = self._clock()
        return [_part(part, self._part_rate(part, now)) for part in progress]

    def _part_rate(self, part: Progress, now: float) -> float:
        """Units per second since the oldest sample in the window that saw ``part``."""
        key = (part.part, part.unit)
        before: tuple[float, int] | None = None
        for then, _, done in reversed(self._samples):
            if now - then > RATE_WINDOW:
                break
            if key in done:
                before = then, done[key]
        if before is None:  # first seen after the last sample (a resumed file): no rate yet
            return 0.0
        return (part.done - before[1]) / max(now - before[0], 1e-9)

    def history(self, stage: int) -> list[float]:
        """Records per second out of stage ``stage``, between consecutive samples."""
        samples = list(self._samples)
        return [
            round((b[1][stage] - a[1][stage]) / max(b[0] - a[0], 1e-9), 1)
            for a, b in itertools.pairwise(samples)
        ]

    def _before(self, now: float) -> tuple[float, tuple[int, ...], dict[tuple[str, str], int]]:
        """The oldest sample within the window (the first sample while the run is younger)."""
        chosen = self._samples[-1]
        for sample in reversed(self._samples):
            if now - sample[0] > RATE_WINDOW:
                break
            chosen = sample
        return chosen


def _part(progress: Progress, per_s: float) -> PartProgress:
    total = progress.total
    if total is not None and progress.done > total:
        total = progress.done  # an estimate that fell short
    eta = None
    if total is not None and per_s > 0:
        eta = round((total - progress.done) / per_s, 1)
    elif total is not None and progress.done >= total:
        eta = 0.0
    unit: ProgressUnit = progress.unit
    return PartProgress(progress.part, unit, progress.done, total, round(per_s, 1), eta)
