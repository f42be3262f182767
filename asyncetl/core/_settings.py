"""The settings one run of the engine needs, apart from the pieces it runs."""

from __future__ import annotations

from dataclasses import dataclass

from asyncetl.core.interfaces import FailurePolicy

__all__ = ["RunSettings"]


@dataclass(frozen=True, slots=True)
class RunSettings:
    """A pipeline's numbers and policies, fixed for one run (see :class:`Pipeline`)."""

    name: str
    max_batch_size: int
    max_batch_age: float
    queue_size: int
    source_errors: FailurePolicy
    sink_errors: FailurePolicy
    grace_period: float
    stop_when_idle: float | None
    summary_interval: float
    max_records_in_flight: int
    log_progress: bool = True
