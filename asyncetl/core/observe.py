"""What a running pipeline shows about itself: progress, lag, stages, queues, throughput.

A source that can know how much work it has says so through two questions,
:meth:`Source.progress <asyncetl.Source.progress>` (:class:`Progress`: done and
total units, per part, such as a table) and :meth:`Source.upstream_lag
<asyncetl.Source.upstream_lag>` (:class:`Lag`: how far behind its upstream it is).
:meth:`Pipeline.observe <asyncetl.Pipeline.observe>` gathers them with the
engine's own counters into one :class:`Observation`, which the progress
display, the progress log lines, ``/metrics``, ``/status.json`` and the live
page all read, under the same names as the run summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from asyncetl.core.interfaces import DeadLetter

__all__ = [
    "LATENCY_BUCKETS",
    "BatchTrace",
    "StageTrace",
    "Lag",
    "LagUnit",
    "Observation",
    "PartProgress",
    "Progress",
    "ProgressUnit",
    "QueueFill",
    "StageView",
]

#: What progress is counted in.
ProgressUnit: TypeAlias = Literal["bytes", "rows", "records", "pages", "partitions"]
#: What a lag is measured in; ``records`` for pending entries or messages.
LagUnit: TypeAlias = Literal["bytes", "seconds", "records", "pages"]

#: Upper bounds, in seconds, of the batch latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a bounded source has read one part of its work.

    :param done: units read so far in this run.
    :param total: units in all, or ``None`` when unknown (an estimate is fine:
        a table's row count from the planner's statistics).
    :param unit: what is counted.
    :param part: what the part is (a table), ``""`` for the whole source.
    """

    done: int
    total: int | None
    unit: ProgressUnit = "records"
    part: str = ""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a source is behind its upstream, as it last measured.

    :param value: the distance, in ``unit``.
    :param part: what it is measured for (a slot, a stream's group), ``""`` for the source.
    """

    value: float
    unit: LagUnit
    part: str = ""


@dataclass(frozen=True, slots=True)
class PartProgress:
    """One part's progress with its recent rate and the time left at that rate.

    :param per_s: units per second over the last seconds (not since the start).
    :param eta_s: seconds left at that rate; ``None`` without a total or a rate.
    """

    part: str
    unit: ProgressUnit
    done: int
    total: int | None
    per_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in ``[0, 1]``, or ``None`` without a total."""
        if self.total is None:
            return None
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True, slots=True)
class StageView:
    """One stage's counters.

    :param kind: ``source``, ``transform`` or ``sink``.
    :param latency_counts: batches per bucket of :data:`LATENCY_BUCKETS`, then
        those slower than the last bucket (not cumulative).
    :param per_s: records out per second over the last seconds.
    """

    name: str
    kind: Literal["source", "transform", "sink"]
    records_in: int
    records_out: int
    batches: int
    dead_lettered: int
    latency_counts: tuple[int, ...]
    latency_sum: float
    retries: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueFill:
    """The queue between two stages: batches waiting in it, out of its capacity."""

    after: str
    before: str
    batches: int
    capacity: int


@dataclass(frozen=True, slots=True)
class Observation:
    """A pipeline seen now; every figure is cheap to take (no I/O).

    :param records_per_s: records read per second over the last seconds.
    :param history: records written per second, one a second, oldest first
        (the last minutes).
    :param seconds_since_commit: ``None`` before the first commit.
    :param connected: whether the source and the other resources are open.
    :param stalled_s: seconds read batches have waited without a commit (``0``
        while none waits): what readiness limits.
    :param dead_letters: the latest dead letters of this run, newest last.
    """

    pipeline: str
    state: Literal["idle", "running", "stopping"]
    elapsed_s: float
    records_per_s: float
    stages: list[StageView]
    queues: list[QueueFill]
    progress: list[PartProgress]
    lag: list[Lag]
    history: list[float]
    seconds_since_commit: float | None
    connected: bool = False
    stalled_s: float = 0.0
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StageTrace:
    """One stage's work on one batch, in wall-clock nanoseconds (``time.time_ns``)."""

    stage: str
    kind: Literal["source", "transform", "sink"]
    start_ns: int
    end_ns: int
    records_in: int
    records_out: int


@dataclass(frozen=True, slots=True)
class BatchTrace:
    """A batch's way through the stages, from the batch closing to its commit.

    What a pipeline's ``trace_batches`` callback gets once per batch, after its
    commit (to turn into tracing spans, say).
    """

    pipeline: str
    seq: int
    records: int
    made_ns: int
    committed_ns: int
    stages: list[StageTrace]
