"""``run --otel-endpoint``: metrics and batch spans arrive at a collector over OTLP/HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.cli.helpers import FILES_SPEC, HELPERS, INPUT, cli

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def collector(received: dict[str, list[bytes]]) -> AsyncIterator[str]:
    """A local OTLP/HTTP collector keeping each posted body by path."""

    async def keep(request: web.Request) -> web.Response:
        received.setdefault(request.path, []).append(await request.read())
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/metrics", keep)
    app.router.add_post("/v1/traces", keep)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_run_sends_its_metrics_and_batch_spans_to_the_otlp_endpoint(
    tmp_path: Path,
) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "pipeline.toml").write_text(FILES_SPEC)
    (tmp_path / "in.jsonl").write_text(INPUT)
    received: dict[str, list[bytes]] = {}
    async with collector(received) as url:
        result = await anyio.to_thread.run_sync(
            lambda: cli(tmp_path, "run", "pipeline.toml", "--otel-endpoint", url)
        )
    assert result.returncode == 0, result.stderr
    records: dict[str, float] = {}
    for body in received["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "asyncetl.records":
                        for point in metric.sum.data_points:
                            at = {a.key: a.value.string_value for a in point.attributes}
                            records[f"{at['stage']}/{at['direction']}"] = point.as_int
    assert records["jsonl_sink/out"] == 2
    spans = [
        span.name
        for body in received["/v1/traces"]
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert "batch" in spans
