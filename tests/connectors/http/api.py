"""A local paged JSON API that misbehaves on purpose, for the HTTP connector tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import orjson
from aiohttp import web

from asyncetl import Chunk, Position
from asyncetl.connectors.http import HttpSource

Record = dict[str, Any]
#: Answers one request instead of the API; ``None`` lets the API answer after all.
Fault = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the server saw."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Fault:
    """Answer ``code`` with ``headers`` and ``body``."""

    async def fault(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, body=body)

    return fault


def raw_body(body: bytes, code: int = 200) -> Fault:
    """Answer ``body`` verbatim as JSON content."""

    async def fault(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, body=body, content_type="application/json")

    return fault


def delay(seconds: float) -> Fault:
    """Wait ``seconds`` before answering normally (past a short read timeout)."""

    async def fault(request: web.Request) -> None:
        await asyncio.sleep(seconds)

    return fault


def stall_body(seconds: float) -> Fault:
    """Send the headers and half a body, then go quiet for ``seconds``."""

    async def fault(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with suppress(ConnectionError):
            await response.write(b'[{"id": 1}')
            await asyncio.sleep(seconds)
            await response.write(b"]")
        return response

    return fault


def drop_mid_body() -> Fault:
    """Promise 10,000 bytes, send a few, and close the connection."""

    async def fault(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b'[{"id": 1}, {"id"')
        assert request.transport is not None
        request.transport.close()
        return response

    return fault


@dataclass
class Api:
    """Records ``1..count`` paged by ``page``/``offset``/``cursor`` query parameters.

    A request's *start* is the index of its first record; faults queued for a
    start answer the next requests for that page, one fault per request.

    :param envelope: wrap pages as ``{"data": [...], "next": cursor, "total": n}``.
    :param links: send ``Link: rel="next"`` headers (page-number requests only).
    :param total_header: send ``X-Total-Count``.
    :param max_limit: the largest page the server serves, whatever is asked.
    """

    count: int = 0
    envelope: bool = False
    links: bool = True
    total_header: bool = True
    max_limit: int = 1000
    records: list[Record] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    faults: dict[int, list[Fault]] = field(default_factory=dict)
    since_field: str = "updated_at"

    def __post_init__(self) -> None:
        if not self.records:
            self.records = [{"id": i, "updated_at": 1000 + i} for i in range(1, self.count + 1)]

    def fault(self, start: int, *faults: Fault) -> None:
        """Answer the next requests for the page starting at ``start`` with ``faults``."""
        self.faults.setdefault(start, []).extend(faults)

    def requests_for(self, start: int) -> int:
        """How many requests asked for the page starting at ``start``."""
        return sum(1 for hit in self.hits if _window(hit.query, self.max_limit)[0] == start)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = dict(request.query)
        self.hits.append(
            Hit(request.method, request.path, query, dict(request.headers), body, time.monotonic())
        )
        queue = self.faults.get(_window(query, self.max_limit)[0])
        if queue:
            response = await queue.pop(0)(request)
            if response is not None:
                return response
        return self.page(request, query)

    def page(self, request: web.Request, query: dict[str, str]) -> web.StreamResponse:
        rows = self.records
        if "since" in query:
            rows = [r for r in rows if r[self.since_field] >= int(query["since"])]
        start, limit = _window(query, self.max_limit)
        end = start + limit
        headers = {"X-Total-Count": str(len(rows))} if self.total_header else {}
        if self.links and "page" in query and end < len(rows):
            target = request.url.update_query(page=str(int(query["page"]) + 1))
            headers["Link"] = f'<{target}>; rel="next", <{request.url}>; rel="self"'
        data: Any = rows[start:end]
        if self.envelope:
            cursor = str(end) if end < len(rows) else None
            data = {"data": data, "next": cursor, "total": len(rows)}
        return web.Response(
            body=orjson.dumps(data), headers=headers, content_type="application/json"
        )


def _window(query: dict[str, str], max_limit: int) -> tuple[int, int]:
    """The start index and size of the page a query asks for."""
    limit = min(int(query.get("limit", "10")), max_limit)
    if "cursor" in query:
        return int(query["cursor"]), limit
    if "offset" in query:
        return int(query["offset"]), limit
    return (int(query.get("page", "1")) - 1) * limit, limit


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | web.Application,
) -> AsyncIterator[str]:
    """Serve ``handler`` for every path (or an application) on 127.0.0.1; yield the base URL."""
    if isinstance(handler, web.Application):
        app = handler
    else:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_api(api: Api) -> AsyncIterator[str]:
    """Serve ``api``; yield the URL of its ``/items`` endpoint."""
    async with serve(api.handle) as base:
        yield base + "/items"


def later(seconds: float, fault: Fault) -> Fault:
    """Wait ``seconds``, then answer with ``fault``."""

    async def delayed(request: web.Request) -> web.StreamResponse | None:
        await asyncio.sleep(seconds)
        return await fault(request)

    return delayed


async def collect(
    source: HttpSource, after: Position = None, *, max_chunk: int = 1000
) -> list[Chunk[dict[str, Any]]]:
    """Every chunk ``source`` produces after ``after``, with the source opened and closed."""
    chunks, error = await collect_until_error(source, after, max_chunk=max_chunk)
    if error is not None:
        raise error
    return chunks


async def collect_until_error(
    source: HttpSource, after: Position = None, *, max_chunk: int = 1000
) -> tuple[list[Chunk[dict[str, Any]]], Exception | None]:
    """The chunks ``source`` produces before it fails, and the failure (``None`` if none).

    It drives :meth:`HttpSource.produce` as the engine does, through a bounded stream.
    """
    chunks: list[Chunk[dict[str, Any]]] = []
    error: Exception | None = None
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, Any]]](4)

    async def produce() -> None:
        nonlocal error
        async with send:
            try:
                await source.produce(after, send, max_chunk=max_chunk)
            except Exception as exc:
                error = exc

    await source.open()
    try:
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(produce)
            async for chunk in receive:
                chunks.append(chunk)
    finally:
        await source.aclose()
    return chunks, error


async def read_all(
    source: HttpSource, after: Position = None, *, max_chunk: int = 1000
) -> list[Chunk[dict[str, Any]]]:
    """Every chunk ``source.read`` yields after ``after``, with the source opened and closed."""
    await source.open()
    try:
        reading = cast(
            AsyncGenerator[Chunk[dict[str, Any]], None], source.read(after, max_chunk=max_chunk)
        )
        async with aclosing(reading) as chunks:
            return [chunk async for chunk in chunks]
    finally:
        await source.aclose()


def ids(chunks: list[Chunk[dict[str, Any]]]) -> list[int]:
    """The ``id`` of every record in ``chunks``, in order."""
    return [record["id"] for chunk in chunks for record in chunk.records]
