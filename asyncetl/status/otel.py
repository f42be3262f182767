"""OpenTelemetry export of a pipeline's figures and batches (the ``asyncetl[otel]`` extra).

:func:`export_traces` makes a span per batch, from its making to its commit,
with a child span for each stage's work on it. :func:`export_metrics`
registers observable instruments on a meter provider;
each collection reads :meth:`Pipeline.observe <asyncetl.Pipeline.observe>`
once, so the figures are those of ``/metrics``, under OpenTelemetry's dotted
names: ``asyncetl.records`` with ``pipeline``, ``stage`` and ``direction``
attributes, ``asyncetl.queue.batches``… Point the provider's reader at an
OTLP exporter to send them to a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from asyncetl import BatchTrace, ConfigError, Observation, Pipeline

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions
    from opentelemetry.metrics import Observation as Measured
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ConfigError(
        "OpenTelemetry export needs the otel extra: pip install 'asyncetl[otel]'"
    ) from exc

__all__ = ["export_metrics", "export_traces"]

Reading = Callable[[Observation], Iterable[Measured]]


def export_metrics(pipeline: Pipeline, meter_provider: metrics.MeterProvider | None = None) -> None:
    """Report ``pipeline``'s figures through observable instruments of ``meter_provider``.

    :param meter_provider: default: the global one (``opentelemetry.metrics.get_meter_provider``).
    """
    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("asyncetl")
    seen = _Cached(pipeline)
    counters: dict[str, tuple[str, str, Reading]] = {
        "asyncetl.records": ("{record}", "records each stage took in and passed on", _records),
        "asyncetl.batches": ("{batch}", "batches through each stage", _batches),
        "asyncetl.dead_lettered": ("{record}", "records each stage set aside", _dead_lettered),
        "asyncetl.retries": ("{retry}", "retries by each stage, by the failure", _retries),
        "asyncetl.errors": ("{error}", "refused records and failures, by type", _errors),
        "asyncetl.batch.duration": ("s", "seconds stages spent on batches", _busy),
    }
    for name, (unit, description, reading) in counters.items():
        meter.create_observable_counter(
            name, callbacks=[seen.callback(reading)], unit=unit, description=description
        )
    gauges: dict[str, tuple[str, str, Reading]] = {
        "asyncetl.queue.batches": ("{batch}", "batches waiting between two stages", _queued),
        "asyncetl.queue.capacity": ("{batch}", "batches a queue can hold", _capacity),
        "asyncetl.progress.done": ("1", "units read per part", _done),
        "asyncetl.progress.total": ("1", "units in all per part", _total),
        "asyncetl.source.lag": ("1", "how far the source is behind", _lag),
        "asyncetl.since_commit": ("s", "seconds since the last commit", _since_commit),
    }
    for name, (unit, description, reading) in gauges.items():
        meter.create_observable_gauge(
            name, callbacks=[seen.callback(reading)], unit=unit, description=description
        )


def export_traces(pipeline: Pipeline, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Make a span per batch of ``pipeline``, with a child span per stage that worked on it.

    Sets the pipeline's ``trace_batches``; the spans are made after each commit,
    with the times the engine recorded, so tracing adds no wait to any stage.

    :param tracer_provider: default: the global one (``opentelemetry.trace.get_tracer_provider``).
    """
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("asyncetl")

    def spans(batch: BatchTrace) -> None:
        attributes: dict[str, str | int] = {
            "pipeline": batch.pipeline,
            "batch": batch.seq,
            "records": batch.records,
        }
        parent = tracer.start_span("batch", start_time=batch.made_ns, attributes=attributes)
        context = trace.set_span_in_context(parent)
        for step in batch.stages:
            child = tracer.start_span(
                step.stage,
                context=context,
                start_time=step.start_ns,
                attributes={
                    "pipeline": batch.pipeline,
                    "stage.kind": step.kind,
                    "records.in": step.records_in,
                    "records.out": step.records_out,
                },
            )
            child.end(end_time=step.end_ns)
        parent.end(end_time=batch.committed_ns)

    pipeline.trace_batches = spans


class _Cached:
    """One :meth:`Pipeline.observe` per collection, however many instruments read it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._seen: Observation | None = None
        self._at = 0.0

    def callback(self, reading: Reading) -> Callable[[CallbackOptions], Iterable[Measured]]:
        def observe(_: CallbackOptions) -> Iterable[Measured]:
            return list(reading(self._now()))

        return observe

    def _now(self) -> Observation:
        if self._seen is None or time.monotonic() - self._at > 0.5:
            self._seen, self._at = self._pipeline.observe(), time.monotonic()
        return self._seen


def _at(seen: Observation, **attributes: Any) -> dict[str, Any]:
    return {"pipeline": seen.pipeline, **attributes}


def _records(seen: Observation) -> Iterable[Measured]:
    for stage in seen.stages:
        yield Measured(stage.records_in, _at(seen, stage=stage.name, direction="in"))
        yield Measured(stage.records_out, _at(seen, stage=stage.name, direction="out"))


def _batches(seen: Observation) -> Iterable[Measured]:
    return (Measured(s.batches, _at(seen, stage=s.name)) for s in seen.stages)


def _dead_lettered(seen: Observation) -> Iterable[Measured]:
    return (Measured(s.dead_lettered, _at(seen, stage=s.name)) for s in seen.stages)


def _busy(seen: Observation) -> Iterable[Measured]:
    return (
        Measured(s.latency_sum, _at(seen, stage=s.name)) for s in seen.stages if s.kind != "source"
    )


def _retries(seen: Observation) -> Iterable[Measured]:
    for stage in seen.stages:
        for reason, count in stage.retries.items():
            yield Measured(count, _at(seen, stage=stage.name, reason=reason))


def _errors(seen: Observation) -> Iterable[Measured]:
    for stage in seen.stages:
        for error_type, count in stage.errors.items():
            yield Measured(count, _at(seen, stage=stage.name, type=error_type))


def _queued(seen: Observation) -> Iterable[Measured]:
    return (Measured(q.batches, _at(seen, after=q.after, before=q.before)) for q in seen.queues)


def _capacity(seen: Observation) -> Iterable[Measured]:
    return (Measured(q.capacity, _at(seen, after=q.after, before=q.before)) for q in seen.queues)


def _done(seen: Observation) -> Iterable[Measured]:
    return (Measured(p.done, _at(seen, part=p.part, unit=p.unit)) for p in seen.progress)


def _total(seen: Observation) -> Iterable[Measured]:
    return (
        Measured(p.total, _at(seen, part=p.part, unit=p.unit))
        for p in seen.progress
        if p.total is not None
    )


def _lag(seen: Observation) -> Iterable[Measured]:
    return (Measured(lag.value, _at(seen, part=lag.part, unit=lag.unit)) for lag in seen.lag)


def _since_commit(seen: Observation) -> Iterable[Measured]:
    if seen.seconds_since_commit is not None:
        yield Measured(seen.seconds_since_commit, _at(seen))
