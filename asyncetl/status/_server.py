"""A small HTTP endpoint for a running pipeline: metrics, health, readiness, a live page.

``python -m asyncetl run SPEC --status-port 9108`` serves it; an embedding
application can run :func:`serve_status` in its own task group instead.

- ``GET /metrics`` — Prometheus text exposition (``asyncetl_records_total``…),
  rendered by ``prometheus_client`` from :meth:`Pipeline.observe` at scrape time.
- ``GET /health`` — liveness, JSON; 200 while the pipeline runs, 503 once it has stopped.
- ``GET /ready`` — readiness: 200 while the source is connected and no read batch
  has waited longer than ``ready_limit`` seconds for a commit; else 503 and why.
- ``GET /status.json`` — everything the page shows, as one JSON document.
- ``GET /`` — the live page: one self-contained HTML document that draws the
  stages and updates itself from ``/status.json`` every second.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import aiohttp
import anyio
import orjson
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, generate_latest

from asyncetl import Observation, Pipeline
from asyncetl.status._metrics import PipelineCollector
from asyncetl.status._page import PAGE

__all__ = ["read_status", "readiness", "serve_status", "status_app"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_TIMEOUT = aiohttp.ClientTimeout(total=3)


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


def readiness(seen: Observation, limit: float) -> str | None:
    """Why the pipeline is not ready, in one line; ``None`` when it is.

    Ready means running with the source connected, and no read batch waiting
    longer than ``limit`` seconds for a commit (an idle, caught-up pipeline is ready).
    """
    name = seen.pipeline
    if seen.state == "idle":
        return f"pipeline {name} is not running"
    if not seen.connected:
        return f"pipeline {name} has not connected its source and sink yet"
    if seen.stalled_s > limit:
        return (
            f"pipeline {name} has had batches waiting {seen.stalled_s:.1f} s without a commit "
            f"(limit {limit:g} s)"
        )
    return None


def status_app(pipeline: Pipeline, *, ready_limit: float = 60.0) -> web.Application:
    """The aiohttp application serving the status endpoints of ``pipeline``.

    :param ready_limit: seconds read batches may wait for a commit before ``/ready``
        answers 503.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PipelineCollector(pipeline))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": _CONTENT_TYPE})

    async def health(_: web.Request) -> web.Response:
        status = 200 if pipeline.state != "idle" else 503
        return _json(_health(pipeline), status)

    async def ready(_: web.Request) -> web.Response:
        reason = readiness(pipeline.observe(), ready_limit)
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(text=reason + "\n", status=503)

    async def status(_: web.Request) -> web.Response:
        return _json(status_document(pipeline, ready_limit), 200)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status.json", status)
    app.router.add_get("/", page)
    return app


def status_document(pipeline: Pipeline, ready_limit: float) -> dict[str, Any]:
    """What ``/status.json`` serves: the observation, the run's counters, readiness."""
    seen = pipeline.observe()
    document: dict[str, Any] = {
        **_health(pipeline),
        "records_per_s": seen.records_per_s,
        "stalled_s": seen.stalled_s,
        "ready": readiness(seen, ready_limit) or "ready",
        "stages": seen.stages,
        "queues": seen.queues,
        "progress": [{**asdict(part), "fraction": part.fraction} for part in seen.progress],
        "lag": seen.lag,
        "history": seen.history[-300:],
        "dead_letters": [
            {
                "stage": letter.stage,
                "error": f"{letter.error_type}: {letter.error}",
                "position": letter.position,
                "time": letter.time.isoformat(timespec="seconds"),
            }
            for letter in reversed(seen.dead_letters[-10:])
        ],
    }
    return document


def _json(document: object, status: int) -> web.Response:
    return web.Response(
        body=orjson.dumps(document, default=str),
        status=status,
        content_type="application/json",
    )


async def serve_status(
    pipeline: Pipeline,
    *,
    host: str = "127.0.0.1",
    port: int = 9108,
    ready_limit: float = 60.0,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :func:`status_app` until cancelled; ``task_status.started`` gets the bound port.

    :param port: 0 picks a free port.
    :param ready_limit: see :func:`status_app`.
    """
    runner = web.AppRunner(status_app(pipeline, ready_limit=ready_limit), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        task_status.started(runner.addresses[0][1])
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(5, shield=True):
            await runner.cleanup()


async def read_status(url: str) -> dict[str, Any] | None:
    """The ``/status.json`` document a running pipeline serves at ``url``, if it answers.

    :param url: the endpoint's base, e.g. ``http://127.0.0.1:9108``.
    :returns: ``None`` when nothing answers there within three seconds, or not with it.
    """
    try:
        async with (
            aiohttp.ClientSession(timeout=_READ_TIMEOUT) as session,
            session.get(url.rstrip("/") + "/status.json") as response,
        ):
            if response.status != 200:
                return None
            found: dict[str, Any] = orjson.loads(await response.read())
            return found
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None
