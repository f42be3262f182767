"""The Prometheus series of a pipeline, read from its live figures at scrape time.

Names follow Prometheus conventions and use the words of the run summary and
``/health``: ``asyncetl_records_total{pipeline,stage,direction}`` counts what
each stage took in and passed on, ``_seconds`` and ``_bytes`` name their units.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from asyncetl import Observation, Pipeline
from asyncetl.core.observe import LATENCY_BUCKETS

__all__ = ["PipelineCollector"]


class PipelineCollector(Collector):
    """Reads the pipeline's live statistics at scrape time; nothing is counted twice."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        seen = self.pipeline.observe()
        yield from self._totals(seen)
        yield from _stages(seen)
        yield from _queues(seen)
        yield from _source(seen, self.pipeline.source.name)

    def _totals(self, seen: Observation) -> Iterator[Metric]:
        """The whole run's counters, as the run summary names them."""
        p, stats = self.pipeline, self.pipeline.stats
        labels = [p.name]
        counters = {
            "records_in": ("records read from the source", stats.records_in),
            "records_out": ("records the sink wrote", stats.records_out),
            "unchanged": (
                "records the sink acknowledged without writing: the target held them",
                stats.unchanged,
            ),
            "dead_lettered": ("records set aside in the dead-letter store", stats.dead_lettered),
            "batches_committed": ("batches whose position was committed", stats.batches_committed),
        }
        for name, (help_text, count) in counters.items():
            counter = CounterMetricFamily(f"asyncetl_{name}", help_text, labels=["pipeline"])
            counter.add_metric(labels, count)
            yield counter
        since = seen.seconds_since_commit
        gauges: dict[str, tuple[str, float]] = {
            "in_flight_batches": ("batches read but not yet acknowledged", p.in_flight_batches),
            "running": ("1 while the pipeline runs", 1 if seen.state != "idle" else 0),
            "seconds_since_commit": (
                "seconds since the last commit (-1 before the first)",
                -1.0 if since is None else since,
            ),
            "stalled_seconds": (
                "seconds read batches have waited without a commit (0 while none waits)",
                seen.stalled_s,
            ),
        }
        for name, (help_text, value) in gauges.items():
            gauge = GaugeMetricFamily(f"asyncetl_{name}", help_text, labels=["pipeline"])
            gauge.add_metric(labels, value)
            yield gauge


def _stages(seen: Observation) -> Iterator[Metric]:
    pipeline = seen.pipeline
    records = CounterMetricFamily(
        "asyncetl_records",
        "records each stage took in and passed on",
        labels=["pipeline", "stage", "direction"],
    )
    batches = CounterMetricFamily(
        "asyncetl_batches", "batches through each stage", labels=["pipeline", "stage"]
    )
    latency = HistogramMetricFamily(
        "asyncetl_batch_duration_seconds",
        "seconds a transform or sink spent on a batch",
        labels=["pipeline", "stage"],
    )
    letters = CounterMetricFamily(
        "asyncetl_stage_dead_lettered",
        "records each stage set aside in the dead-letter store",
        labels=["pipeline", "stage"],
    )
    retries = CounterMetricFamily(
        "asyncetl_retries",
        "retries made by each stage, by the failure retried",
        labels=["pipeline", "stage", "reason"],
    )
    errors = CounterMetricFamily(
        "asyncetl_errors",
        "records refused and stage failures, by error type",
        labels=["pipeline", "stage", "type"],
    )
    for stage in seen.stages:
        at = [pipeline, stage.name]
        records.add_metric([*at, "in"], stage.records_in)
        records.add_metric([*at, "out"], stage.records_out)
        batches.add_metric(at, stage.batches)
        letters.add_metric(at, stage.dead_lettered)
        if stage.kind != "source":
            cumulative = list(accumulate(stage.latency_counts))
            bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
            latency.add_metric(
                at, list(zip(bounds, cumulative, strict=True)), sum_value=stage.latency_sum
            )
        for reason, count in sorted(stage.retries.items()):
            retries.add_metric([*at, reason], count)
        for error_type, count in sorted(stage.errors.items()):
            errors.add_metric([*at, error_type], count)
    yield from (records, batches, latency, letters, retries, errors)


def _queues(seen: Observation) -> Iterator[Metric]:
    labels = ["pipeline", "after", "before"]
    waiting = GaugeMetricFamily(
        "asyncetl_queue_batches",
        "batches waiting in the queue between two stages (the backpressure signal)",
        labels=labels,
    )
    capacity = GaugeMetricFamily(
        "asyncetl_queue_capacity_batches", "batches the queue can hold", labels=labels
    )
    for queue in seen.queues:
        at = [seen.pipeline, queue.after, queue.before]
        waiting.add_metric(at, queue.batches)
        capacity.add_metric(at, queue.capacity)
    yield waiting
    yield capacity


def _source(seen: Observation, source: str) -> Iterator[Metric]:
    """Progress per part and lag, one series per unit, as the source reports them."""
    labels = ["pipeline", "source", "part"]
    families: dict[str, GaugeMetricFamily] = {}

    def gauge(name: str, help_text: str) -> GaugeMetricFamily:
        if name not in families:
            families[name] = GaugeMetricFamily(name, help_text, labels=labels)
        return families[name]

    for part in seen.progress:
        at = [seen.pipeline, source, part.part]
        unit = part.unit
        gauge(f"asyncetl_progress_done_{unit}", f"{unit} read so far").add_metric(at, part.done)
        if part.total is not None:
            gauge(f"asyncetl_progress_total_{unit}", f"{unit} in all").add_metric(at, part.total)
        if part.eta_s is not None:
            gauge("asyncetl_progress_eta_seconds", "seconds left at the recent rate").add_metric(
                at, part.eta_s
            )
    for lag in seen.lag:
        at = [seen.pipeline, source, lag.part]
        name = f"asyncetl_source_lag_{lag.unit}"
        gauge(name, f"{lag.unit} the source is behind its upstream").add_metric(at, lag.value)
    yield from families.values()
