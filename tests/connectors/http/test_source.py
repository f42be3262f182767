"""HttpSource in pipelines: bad pages, shared pauses, pacing, and kill-and-resume."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest

from asyncetl import (
    Batch,
    Chunk,
    JsonFileCheckpointStore,
    Lag,
    ListSink,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    PermanentError,
    Pipeline,
    Progress,
    Reject,
    StageError,
)
from asyncetl.connectors.http import HttpSource
from asyncetl.connectors.http._client import HttpStatusError
from tests.connectors.http.api import (
    Api,
    collect,
    collect_until_error,
    delay,
    ids,
    later,
    raw_body,
    serve_api,
    status,
)

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"base_delay": 0.01, "max_tries": 3}
Record = dict[str, Any]


def source(url: str, pagination: str = "page", **options: Any) -> HttpSource:
    return HttpSource(url, pagination=pagination, page_size=10, **{**FAST, **options})


def at(url: str, position: dict[str, Any], *, page_size: int = 10) -> dict[str, Any]:
    """``position`` as a source reading ``url`` writes it: naming the endpoint it is for."""
    return {**position, "endpoint": f"{url}?limit={page_size}"}


async def run(pipeline: Pipeline) -> list[int]:
    await pipeline.run()
    sink = pipeline.sink
    assert isinstance(sink, ListSink)
    return [record["id"] for record in sink.records]


# -- bad pages --------------------------------------------------------------------------


async def test_a_non_json_page_is_dead_lettered_with_url_status_and_body() -> None:
    api = Api(30)
    api.fault(10, raw_body(b"<html>maintenance</html>"))
    letters = MemoryDeadLetterStore()
    async with serve_api(api) as url:
        pipeline = Pipeline(
            "p", source(url), ListSink(), dead_letters=letters, source_errors="dead_letter"
        )
        loaded = await run(pipeline)
    assert loaded == [*range(1, 11), *range(21, 31)]
    [letter] = letters.letters
    page_url = f"{url}?limit=10&page=2"
    assert letter.record == {"url": page_url, "status": 200, "body": "<html>maintenance</html>"}
    assert letter.stage == "http"
    assert letter.error_type == "asyncetl.core.errors.PermanentError"
    assert letter.error.startswith(
        f"GET {page_url} answered 200 with a body that is not valid JSON (unexpected character"
    )
    assert letter.error.endswith(
        "line 1 column 1 (char 0)); check records_path, or set retry_bad_body = true if the "
        "server recovers on retry"
    )
    assert letter.position == at(url, {"page": 3, "skip": 0})
    assert api.requests_for(10) == 1


async def test_a_page_whose_records_path_changed_is_dead_lettered() -> None:
    api = Api(30, envelope=True)
    moved = orjson.dumps({"items": [{"id": 21}], "next": None, "total": 30})
    api.fault(20, raw_body(moved))
    letters = MemoryDeadLetterStore()
    async with serve_api(api) as url:
        pipeline = Pipeline(
            "p",
            source(url, records_path="data"),
            ListSink(),
            dead_letters=letters,
            source_errors="dead_letter",
        )
        loaded = await run(pipeline)
    assert loaded == list(range(1, 21))
    [letter] = letters.letters
    assert letter.record == {"url": f"{url}?limit=10&page=3", "status": 200, "body": moved.decode()}
    assert "has nothing at records_path 'data' (its keys: items, next, total)" in letter.error


async def test_a_truncated_body_fails_the_run_under_the_fail_policy() -> None:
    api = Api(30)
    api.fault(10, raw_body(b'[{"id": 11}, {"id": 1'))
    async with serve_api(api) as url:
        pipeline = Pipeline("p", source(url), ListSink(), max_batch_size=10)
        with pytest.raises(StageError) as caught:
            await pipeline.run()
    assert str(caught.value).startswith(
        "stage 'http' failed on the batch ending at position "
        f"{at(url, {'page': 3, 'skip': 0})}: "
        f"PermanentError: GET {url}?limit=10&page=2 answered 200 with a body that is not "
        "valid JSON"
    )
    assert pipeline.checkpoints is not None
    assert await pipeline.checkpoints.load("p", "http") == at(url, {"page": 2, "skip": 0})
    assert isinstance(pipeline.source, HttpSource)
    assert not pipeline.source.client.is_open  # closed on the failure path too


async def test_retry_bad_body_retries_until_the_page_is_good() -> None:
    api = Api(30)
    api.fault(10, raw_body(b"oops"), raw_body(b'{"unexpected": true}'))
    async with serve_api(api) as url:
        chunks = await collect(source(url, retry_bad_body=True))
    assert ids(chunks) == list(range(1, 31))
    assert api.requests_for(10) == 3
    assert all(not chunk.rejects for chunk in chunks)


async def test_retry_bad_body_rejects_the_page_once_retries_run_out() -> None:
    api = Api(30)
    api.fault(10, *[raw_body(b"oops")] * 5)
    async with serve_api(api) as url:
        chunks = await collect(source(url, retry_bad_body=True))
    assert ids(chunks) == [*range(1, 11), *range(21, 31)]
    [reject] = [r for chunk in chunks for r in chunk.rejects]
    assert reject.record == {"url": f"{url}?limit=10&page=2", "status": 200, "body": "oops"}
    assert api.requests_for(10) == 3


async def test_items_that_are_not_objects_are_rejected_one_by_one() -> None:
    api = Api(0, records=[{"id": 1}, 7, {"id": 3}])  # type: ignore[list-item]
    async with serve_api(api) as url:
        chunks = await collect(source(url))
    assert ids(chunks) == [1, 3]
    [reject] = chunks[0].rejects
    assert reject.record == 7
    assert str(reject.error) == (
        f"item 1 of the page at {url}?limit=10&page=1 is a JSON number, not an object; "
        "check records_path"
    )


async def test_a_bad_cursor_page_stops_the_walk_even_under_dead_letter() -> None:
    api = Api(30, envelope=True)
    api.fault(10, raw_body(b"not json"))
    async with serve_api(api) as url:
        with pytest.raises(PermanentError) as caught:
            await collect(source(url, "cursor", records_path="data", cursor_path="next"))
    assert str(caught.value).startswith(
        f"the page at {url}?limit=10&cursor=10 has no usable body, so the cursor to the next "
        "page is unknown and the extraction cannot go on; GET "
    )


async def test_decode_turns_a_dead_lettered_record_back_and_refuses_a_page() -> None:
    src = source("http://127.0.0.1:9/x")
    assert src.decode({"id": 1}) == {"id": 1}
    with pytest.raises(PermanentError, match="the dead letter is the whole page http://h/x"):
        src.decode({"url": "http://h/x", "status": 200, "body": "x"})


async def test_a_large_page_is_decoded_off_the_event_loop_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threaded: list[int] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(len(args[0]))
        return await run_sync(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    api = Api(40_000, max_limit=40_000)  # about 1.2 MB of JSON
    async with serve_api(api) as url:
        chunks = await collect(
            HttpSource(url, pagination="page", page_size=40_000, **FAST), max_chunk=15_000
        )
    assert ids(chunks) == list(range(1, 40_001))
    assert [c.position for c in chunks] == [
        at(url, {"page": 1, "skip": 15_000}, page_size=40_000),
        at(url, {"page": 1, "skip": 30_000}, page_size=40_000),
        at(url, {"page": 1, "skip": 40_000}, page_size=40_000),
    ]
    assert len(threaded) == 1 and threaded[0] > 1 << 20


def test_repr_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    src = HttpSource(
        "https://user:pw@api.example/items?access_token=abc&q=1",
        headers={"X-Secret-Token": "t0k", "Accept": "application/json"},
    )
    assert repr(src) == (
        "HttpSource('https://api.example/items?access_token=***&q=1', name='http', "
        "pagination='link', headers={'X-Secret-Token': '***', 'Accept': 'application/json'})"
    )


# -- sharing a host ---------------------------------------------------------------------


async def test_retry_after_pauses_every_task_of_the_source_for_that_host() -> None:
    api = Api(80)
    api.fault(20, status(429, {"Retry-After": "1"}))  # page 3
    api.fault(30, later(0.1, status(500)))  # page 4: retried after a tiny backoff…
    async with serve_api(api) as url:
        chunks = await collect(source(url, max_concurrency=4))
    assert ids(chunks) == list(range(1, 81))
    paused_at = next(hit.at for hit in api.hits if hit.query["page"] == "3")
    retry_of_4 = [hit.at for hit in api.hits if hit.query["page"] == "4"][1]
    # …yet it waited for the pause page 3 was told about, as did every later page.
    assert retry_of_4 - paused_at >= 0.95
    later_hits = [hit for hit in api.hits if hit.at > paused_at + 0.5]
    assert later_hits and all(hit.at - paused_at >= 0.95 for hit in later_hits)
    assert len(api.hits) == 10  # 8 pages, a 429 and a 500


async def test_rate_limit_paces_requests_per_host() -> None:
    api = Api(100)
    async with serve_api(api) as url:
        await collect(source(url, max_concurrency=4, rate_limit=40))
    times = sorted(hit.at for hit in api.hits)
    assert len(times) == 10
    # From the second request on (the first one also opened a connection), 1/40 s apart.
    assert times[-1] - times[1] >= 8 / 40 - 0.02
    assert max(sum(1 for t in times if start <= t < start + 0.1) for start in times) <= 5


async def test_cancelling_a_parallel_read_stops_every_fetch_in_flight_at_once() -> None:
    api = Api(100)
    for start in range(10, 100, 10):
        api.fault(start, delay(1.0))  # every page but the first is slow
    received: list[Chunk[Record]] = []
    async with serve_api(api) as url:
        src = source(url, max_concurrency=4)
        await src.open()
        started = time.monotonic()
        try:
            with anyio.move_on_after(0.3):
                send, receive = anyio.create_memory_object_stream[Chunk[Record]](4)
                async with anyio.create_task_group() as tg, receive:

                    async def produce() -> None:
                        async with send:
                            await src.produce(None, send, max_chunk=1000)

                    tg.start_soon(produce)
                    async for chunk in receive:
                        received.append(chunk)
        finally:
            await src.aclose()
        elapsed = time.monotonic() - started
    assert elapsed < 0.8  # the four slow fetches did not hold the cancellation up
    assert ids(received) == list(range(1, 11))
    assert sorted(int(hit.query["page"]) for hit in api.hits) == [1, 2, 3, 4, 5]
    assert not src.client.is_open


# -- kill and resume --------------------------------------------------------------------


class KillingSink(ListSink[Record]):
    """Stops its pipeline at once while writing batch number ``kill_at``; it never lands."""

    def __init__(self, kill_at: int) -> None:
        super().__init__(name="sink")
        self.kill_at = kill_at
        self.pipeline: Pipeline | None = None

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        if len(self.batches) == self.kill_at and self.pipeline is not None:
            self.pipeline.stop(immediate=True)
            await anyio.sleep_forever()
        return await super().write(batch)


@pytest.mark.parametrize(
    ("pagination", "options"),
    [
        ("link", {}),
        ("page", {"max_concurrency": 4}),
        ("offset", {"max_concurrency": 3}),
        ("cursor", {"records_path": "data", "cursor_path": "next"}),
    ],
)
async def test_kill_and_resume_loads_every_record_exactly_once(
    tmp_path: Path, pagination: str, options: dict[str, Any]
) -> None:
    api = Api(95, envelope=pagination == "cursor")
    store = JsonFileCheckpointStore(tmp_path / "checkpoints.json")
    async with serve_api(api) as url:
        killer = KillingSink(kill_at=6)
        first = Pipeline(
            "p", source(url, pagination, **options), killer, checkpoints=store, max_batch_size=4
        )
        killer.pipeline = first
        stats = await first.run()
        assert stats.stopped_early
        committed = await JsonFileCheckpointStore(tmp_path / "checkpoints.json").load("p", "http")
        # Chunks of 4, 4, 2 per page make batches of 4, 4, 6, 4, 6, 4 records; the
        # seventh never lands, so the commit is 28 records in: 8 into page 3.
        assert isinstance(committed, dict) and committed["skip"] == 8
        rest: ListSink[Record] = ListSink(name="sink")
        second = Pipeline(
            "p",
            source(url, pagination, **options),
            rest,
            checkpoints=JsonFileCheckpointStore(tmp_path / "checkpoints.json"),
            max_batch_size=4,
        )
        await second.run()
    first_ids = [r["id"] for r in killer.records]
    assert first_ids == list(range(1, 29))
    assert first_ids + [r["id"] for r in rest.records] == list(range(1, 96))


async def test_a_run_that_fails_mid_way_resumes_at_the_failed_page() -> None:
    api = Api(60)
    api.fault(40, status(404, body=b"gone"))
    store = MemoryCheckpointStore()
    async with serve_api(api) as url:
        failed = Pipeline("p", source(url), ListSink(), checkpoints=store, max_batch_size=10)
        with pytest.raises(StageError, match="answered 404 Not Found: 'gone'"):
            await failed.run()
        assert store.positions[("p", "http")] == at(url, {"page": 5, "skip": 0})
        resumed = Pipeline("p", source(url), ListSink(), checkpoints=store, max_batch_size=10)
        loaded = await run(resumed)
    assert loaded == list(range(41, 61))
    assert api.requests_for(40) == 2


async def test_a_failed_page_in_a_parallel_window_delivers_the_pages_before_it() -> None:
    api = Api(80)
    api.fault(40, status(404, body=b"gone"))  # page 5, in the window of pages 2-8
    async with serve_api(api) as url:
        chunks, error = await collect_until_error(source(url, max_concurrency=4))
        rest = await collect(source(url, max_concurrency=4), chunks[-1].position)
    assert isinstance(error, HttpStatusError)
    assert "answered 404 Not Found: 'gone'" in str(error)
    assert ids(chunks) == list(range(1, 41))
    assert chunks[-1].position == at(url, {"page": 5, "skip": 0})
    assert ids(rest) == list(range(41, 81))
    # No fetch started once page 5 failed, none ran more than three pages past it, and
    # the second run fetched pages 5-8.
    assert {int(hit.query["page"]) for hit in api.hits} == set(range(1, 9))


async def test_a_failure_past_the_last_page_of_a_speculative_window_is_ignored() -> None:
    api = Api(95, total_header=False)
    for start in range(100, 200, 10):
        api.fault(start, status(404, body=b"no such page"))
    async with serve_api(api) as url:
        chunks = await collect(source(url, "offset", max_concurrency=4))
    assert ids(chunks) == list(range(1, 96))
    assert chunks[-1].position == at(url, {"offset": 90, "skip": 5})


# -- progress ---------------------------------------------------------------------------


async def test_progress_counts_records_of_the_told_total_and_the_pages_left() -> None:
    async with serve_api(Api(35)) as url:
        src = source(url)
        async with src, aclosing(src.read(None, max_chunk=10)) as chunks:  # type: ignore[type-var]
            assert (list(src.progress()), list(src.upstream_lag())) == (
                [Progress(0, None, "records")],
                [],
            )
            await chunks.__anext__()
            assert list(src.progress()) == [Progress(10, 35, "records")]
            assert list(src.upstream_lag()) == [Lag(3.0, "pages")]
            async for _ in chunks:
                pass
        assert list(src.progress()) == [Progress(35, 35, "records")]
        assert list(src.upstream_lag()) == [Lag(0.0, "pages")]


async def test_without_a_total_there_is_no_total_nor_pages_left() -> None:
    async with serve_api(Api(15, total_header=False)) as url:
        sink = ListSink[Record]()
        src = source(url)
        await Pipeline("p", src, sink).run()
    assert (list(src.progress()), list(src.upstream_lag())) == ([Progress(15, None, "records")], [])
