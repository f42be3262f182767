"""HttpSink: idempotent batch delivery, retries, and per-record refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from asyncetl import (
    Batch,
    ConfigError,
    ListSource,
    MemoryDeadLetterStore,
    PermanentError,
    Pipeline,
    StageError,
)
from asyncetl.connectors.http import HttpSink, idempotency_key
from tests.connectors.http.api import Fault, Hit, serve, status

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"base_delay": 0.01, "max_tries": 3}


@dataclass
class Receiver:
    """Stores deliveries by idempotency key; refuses records ``refuse`` picks with 422."""

    refuse: Callable[[Any], bool] = lambda record: False
    faults: list[Fault] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    stored: dict[str, Any] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(
            Hit(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )
        if self.faults:
            response = await self.faults.pop(0)(request)
            if response is not None:
                return response
        document = orjson.loads(body)
        records = document if isinstance(document, list) else [document]
        if any(self.refuse(record) for record in records):
            return web.json_response({"error": "record refused"}, status=422)
        key = request.headers["Idempotency-Key"]
        if key in self.stored:
            return web.json_response({"duplicate": True})
        self.stored[key] = document
        return web.json_response({"stored": len(records)}, status=201)

    @property
    def keys(self) -> list[str]:
        return [hit.headers.get("Idempotency-Key", "") for hit in self.hits]


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "bad": i == 5} for i in range(1, n + 1)]


async def test_batches_are_posted_as_json_arrays_with_position_derived_keys() -> None:
    receiver = Receiver()
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", name="hook", **FAST)
        await Pipeline("p", ListSource(records(7), chunk_size=3), sink, max_batch_size=3).run()
    assert [orjson.loads(hit.body) for hit in receiver.hits] == [
        records(7)[0:3],
        records(7)[3:6],
        records(7)[6:7],
    ]
    assert receiver.keys == [sink.key(3), sink.key(6), sink.key(7)]
    assert sink.key(3) == idempotency_key("hook", base + "/ingest", 3)
    assert all(hit.headers["Content-Type"] == "application/json" for hit in receiver.hits)
    assert all(hit.method == "POST" and hit.path == "/ingest" for hit in receiver.hits)


async def test_a_retried_batch_keeps_its_key_and_lands_once() -> None:
    receiver = Receiver(faults=[status(503), status(502)])
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", **FAST)
        await Pipeline("p", ListSource(records(3)), sink).run()
    assert len(receiver.hits) == 3
    assert len(set(receiver.keys)) == 1
    assert list(receiver.stored.values()) == [records(3)]


async def test_a_replay_after_a_crash_sends_the_same_keys() -> None:
    receiver = Receiver()
    async with serve(receiver.handle) as base:
        for _ in range(2):  # no checkpoint store survives: the second run replays everything
            sink = HttpSink(base + "/ingest", **FAST)
            await Pipeline("p", ListSource(records(6), chunk_size=2), sink, max_batch_size=2).run()
    assert receiver.keys[:3] == receiver.keys[3:]
    assert len(receiver.stored) == 3


async def test_refused_records_are_dead_lettered_one_request_per_record() -> None:
    receiver = Receiver(refuse=lambda record: record["bad"])
    letters = MemoryDeadLetterStore()
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", per_record=True, max_concurrency=3, **FAST)
        stats = await Pipeline(
            "p", ListSource(records(8)), sink, dead_letters=letters, sink_errors="dead_letter"
        ).run()
    assert sorted(doc["id"] for doc in receiver.stored.values()) == [1, 2, 3, 4, 6, 7, 8]
    assert sorted(receiver.keys) == sorted(sink.key(8, i) for i in range(8))
    [letter] = letters.letters
    assert letter.record == {"id": 5, "bad": True}
    assert letter.stage == "http"
    assert letter.error == (
        f'POST {base}/ingest answered 422 Unprocessable Entity: \'{{"error": "record '
        "refused\"}'; check the URL, the query parameters and the request"
    )
    assert (stats.records_out, stats.dead_lettered) == (7, 1)


async def test_a_refused_batch_is_resent_record_by_record_to_find_the_refused_one() -> None:
    receiver = Receiver(refuse=lambda record: record["bad"])
    sink_records = records(6)
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", **FAST)
        await sink.open()
        try:
            rejects = await sink.write(Batch(0, sink_records, {"page": 2}))
        finally:
            await sink.aclose()
    assert [reject.record for reject in rejects] == [sink_records[4]]
    assert [orjson.loads(hit.body) for hit in receiver.hits] == [
        sink_records,
        *([record] for record in sink_records),
    ]
    assert receiver.keys == [sink.key({"page": 2}), *(sink.key({"page": 2}, i) for i in range(6))]


async def test_an_auth_failure_stops_the_run() -> None:
    receiver = Receiver(faults=[status(401, body=b"who are you")])
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", **FAST)
        with pytest.raises(StageError) as caught:
            await Pipeline("p", ListSource(records(3)), sink).run()
    assert str(caught.value) == (
        "stage 'http' failed on the batch ending at position 3: HttpStatusError: POST "
        f"{base}/ingest answered 401 Unauthorized: 'who are you'; check the credentials"
    )
    assert len(receiver.hits) == 1


async def test_a_per_record_failure_under_concurrency_raises_one_error() -> None:
    receiver = Receiver(faults=[status(404)] + [status(200)] * 10)
    async with serve(receiver.handle) as base:
        sink = HttpSink(base + "/ingest", per_record=True, max_concurrency=4, **FAST)
        await sink.open()
        try:
            with pytest.raises(PermanentError, match="answered 404 Not Found"):
                await sink.write(Batch(0, records(10), 10))
        finally:
            await sink.aclose()


async def test_retry_after_on_the_sink_is_honoured() -> None:
    receiver = Receiver(faults=[status(429, {"Retry-After": "1"})])
    async with serve(receiver.handle) as base:
        await Pipeline("p", ListSource(records(2)), HttpSink(base + "/ingest", **FAST)).run()
    assert len(receiver.hits) == 2
    assert 0.95 <= receiver.hits[1].at - receiver.hits[0].at < 2.0


def test_bad_sink_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="method: must be one of POST, PUT, PATCH, not 'GET'"):
        HttpSink("http://h/x", method="GET")
    with pytest.raises(ConfigError, match="url: must be an absolute http"):
        HttpSink("/relative")
    with pytest.raises(ConfigError, match="max_tries must be at least 1"):
        HttpSink("http://h/x", max_tries=0)
