"""A small HTTP endpoint for a running pipeline: Prometheus metrics, health, a status page.

``python -m asyncetl run SPEC --status-port 9108`` serves it; an embedding
application can run :func:`serve_status` in its own task group instead.

- ``GET /metrics`` — Prometheus text exposition (``asyncetl_records_in_total``…),
  rendered by ``prometheus_client`` from the pipeline's live :class:`RunStats`.
- ``GET /health`` — JSON; 200 while the pipeline runs, 503 once it has stopped.
- ``GET /`` — a plain page that refreshes itself, for a person at a browser.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator

import anyio
import orjson
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from asyncetl import Pipeline

__all__ = ["serve_status", "status_app"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _PipelineCollector(Collector):
    """Reads the pipeline's live statistics at scrape time; nothing is counted twice."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
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
        gauges: dict[str, tuple[str, float]] = {
            "in_flight_batches": ("batches read but not yet acknowledged", p.in_flight_batches),
            "running": ("1 while the pipeline runs", 1 if p.state != "idle" else 0),
            "seconds_since_commit": ("seconds since the last commit", _since_commit(p)),
        }
        for name, (help_text, value) in gauges.items():
            gauge = GaugeMetricFamily(f"asyncetl_{name}", help_text, labels=["pipeline"])
            gauge.add_metric(labels, value)
            yield gauge


def _since_commit(pipeline: Pipeline) -> float:
    committed = pipeline.stats.committed_at
    return -1.0 if committed is None else round(time.monotonic() - committed, 3)


def _health(pipeline: Pipeline) -> dict[str, object]:
    stats = pipeline.stats
    return {
        "pipeline": pipeline.name,
        "state": pipeline.state,
        "position": stats.position,
        "in_flight_batches": pipeline.in_flight_batches,
        "seconds_since_commit": _since_commit(pipeline),
        **stats.as_dict(),
    }


def status_app(pipeline: Pipeline) -> web.Application:
    """The aiohttp application serving ``/metrics``, ``/health`` and ``/`` for ``pipeline``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_PipelineCollector(pipeline))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": _CONTENT_TYPE})

    async def health(_: web.Request) -> web.Response:
        status = 200 if pipeline.state != "idle" else 503
        return web.Response(
            body=orjson.dumps(_health(pipeline), default=str),
            status=status,
            content_type="application/json",
        )

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=_page(pipeline), content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/", page)
    return app


async def serve_status(
    pipeline: Pipeline,
    *,
    host: str = "127.0.0.1",
    port: int = 9108,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :func:`status_app` until cancelled; ``task_status.started`` gets the bound port.

    :param port: 0 picks a free port.
    """
    runner = web.AppRunner(status_app(pipeline), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        task_status.started(runner.addresses[0][1])
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(5, shield=True):
            await runner.cleanup()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>asyncetl · {name}</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #1d2430; }}
h1 {{ font-size: 1.3rem; margin-bottom: .2rem; }}
.state {{ display: inline-block; padding: .1rem .5rem; border-radius: .3rem; color: #fff;
          background: {colour}; }}
table {{ border-collapse: collapse; margin-top: 1rem; }}
td {{ padding: .3rem 1.2rem .3rem 0; border-bottom: 1px solid #e3e6ea; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
footer {{ margin-top: 1rem; color: #6b7280; font-size: .85rem; }}
</style></head><body>
<h1>pipeline {name} <span class="state">{state}</span></h1>
<table>{rows}</table>
<footer>refreshes every 2 s ·
<a href="/metrics">/metrics</a> · <a href="/health">/health</a></footer>
</body></html>
"""
_COLOURS = {"running": "#16803c", "stopping": "#b45309", "idle": "#6b7280"}


def _page(pipeline: Pipeline) -> str:
    stats = pipeline.stats
    elapsed = max(stats.elapsed, 1e-9)
    since = _since_commit(pipeline)
    rows = [
        ("records_in", f"{stats.records_in:,}"),
        ("records_out", f"{stats.records_out:,}"),
        ("unchanged", f"{stats.unchanged:,}"),
        ("dead_lettered", f"{stats.dead_lettered:,}"),
        ("batches_committed", f"{stats.batches_committed:,}"),
        ("batches in flight", f"{pipeline.in_flight_batches:,}"),
        ("records per second (average)", f"{stats.records_in / elapsed:,.0f}"),
        ("last commit", "none yet" if since < 0 else f"{since:.1f} s ago"),
        ("committed position", orjson.dumps(stats.position, default=str).decode()),
        ("elapsed", f"{stats.elapsed:.1f} s"),
    ]
    cells = "".join(
        f'<tr><td>{html.escape(label)}</td><td class="n">{html.escape(value)}</td></tr>'
        for label, value in rows
    )
    return _PAGE.format(
        name=html.escape(pipeline.name),
        state=pipeline.state,
        colour=_COLOURS[pipeline.state],
        rows=cells,
    )
