"""OpenTelemetry export: the figures of /metrics and a span per batch, read by the SDK itself."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncetl import ListSink, ListSource, MemoryDeadLetterStore, Pipeline, Transform
from asyncetl.status.otel import export_metrics, export_traces

pytestmark = pytest.mark.anyio


def odd_only(record: int) -> int:
    if record % 2:
        return record
    raise ValueError(f"even record {record}")


def points(reader: InMemoryMetricReader) -> dict[str, set[tuple[Any, ...]]]:
    """Each metric's points as (sorted attributes..., value)."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, set[tuple[Any, ...]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    attributes = tuple(sorted((point.attributes or {}).items()))
                    found.setdefault(metric.name, set()).add((*attributes, point.value))
    return found


async def test_the_pipelines_figures_reach_an_opentelemetry_reader() -> None:
    pipeline = Pipeline(
        "otel",
        ListSource(range(30), chunk_size=10, name="numbers"),
        ListSink(name="out"),
        [Transform(odd_only, name="odd", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=10,
    )
    reader = InMemoryMetricReader()
    export_metrics(pipeline, MeterProvider(metric_readers=[reader]))
    await pipeline.run()
    found = points(reader)
    p = ("pipeline", "otel")
    assert found["asyncetl.records"] == {
        (("direction", "in"), p, ("stage", "numbers"), 30),
        (("direction", "out"), p, ("stage", "numbers"), 30),
        (("direction", "in"), p, ("stage", "odd"), 30),
        (("direction", "out"), p, ("stage", "odd"), 15),
        (("direction", "in"), p, ("stage", "out"), 15),
        (("direction", "out"), p, ("stage", "out"), 15),
    }
    assert found["asyncetl.dead_lettered"] == {
        (p, ("stage", "numbers"), 0),
        (p, ("stage", "odd"), 15),
        (p, ("stage", "out"), 0),
    }
    assert found["asyncetl.errors"] == {(p, ("stage", "odd"), ("type", "ValueError"), 15)}
    assert found["asyncetl.queue.capacity"] == {
        (("after", "numbers"), ("before", "odd"), p, 2),
        (("after", "odd"), ("before", "out"), p, 2),
    }
    assert found["asyncetl.progress.done"] == {(("part", ""), p, ("unit", "records"), 30)}
    assert found["asyncetl.progress.total"] == {(("part", ""), p, ("unit", "records"), 30)}


async def test_each_batch_is_a_span_with_a_child_span_per_stage() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(
        "traced",
        ListSource(range(20), chunk_size=10, name="numbers"),
        ListSink(name="out"),
        [Transform(odd_only, name="odd", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=10,
    )
    export_traces(pipeline, provider)
    await pipeline.run()
    spans = exporter.get_finished_spans()
    batches = [s for s in spans if s.name == "batch"]
    assert [dict(s.attributes or {}) for s in batches] == [
        {"pipeline": "traced", "batch": 0, "records": 10},
        {"pipeline": "traced", "batch": 1, "records": 10},
    ]
    for batch in batches:
        assert batch.context is not None
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == batch.context.span_id
        ]
        assert [
            (s.name, (s.attributes or {})["records.in"], (s.attributes or {})["records.out"])
            for s in children
        ] == [
            ("odd", 10, 5),
            ("out", 5, 5),
        ]
        assert batch.start_time is not None and batch.end_time is not None
        assert all(
            batch.start_time <= (s.start_time or 0) <= (s.end_time or 0) <= batch.end_time
            for s in children
        )
