"""OTLP/HTTP export of a pipeline's metrics and batch spans (``run --otel-endpoint``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread

from asyncetl import ConfigError, Pipeline
from asyncetl.status.otel import export_metrics, export_traces

try:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ConfigError(
        "OpenTelemetry export needs the otel extra: pip install 'asyncetl[otel]'"
    ) from exc

__all__ = ["ENDPOINT_VARIABLE", "open_otlp_export"]

#: The standard variable naming the collector when ``--otel-endpoint`` is not given.
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


@asynccontextmanager
async def open_otlp_export(
    pipeline: Pipeline, endpoint: str, *, interval: float = 10.0
) -> AsyncIterator[None]:
    """Send ``pipeline``'s metrics every ``interval`` seconds and its batch spans to ``endpoint``.

    Posts OTLP protobuf to ``{endpoint}/v1/metrics`` and ``{endpoint}/v1/traces``
    from the SDK's own threads; leaving the block flushes what is left (in a
    worker thread, since the exporters block).

    :param endpoint: the collector's base URL, such as ``http://127.0.0.1:4318``.
    """
    base = endpoint.rstrip("/")
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
        export_interval_millis=interval * 1000,
    )
    meters = MeterProvider(metric_readers=[reader])
    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    export_metrics(pipeline, meters)
    export_traces(pipeline, tracers)
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_flush, meters, tracers)


def _flush(meters: MeterProvider, tracers: TracerProvider) -> None:
    tracers.shutdown()
    meters.shutdown()
