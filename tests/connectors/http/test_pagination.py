"""The five pagination styles, resuming, parallel pages and incremental reads."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from asyncetl import Chunk, ConfigError, PermanentError
from asyncetl.connectors.http import HttpSource
from asyncetl.connectors.http._walk import Since, Walk, lagged
from asyncetl.connectors.http.pagination import (
    MISSING,
    Page,
    PaginationConfig,
    lookup,
    make_paginator,
)
from asyncetl.core.batch import Position
from tests.connectors.http.api import (
    Api,
    collect,
    collect_until_error,
    delay,
    ids,
    raw_body,
    read_all,
    serve_api,
)

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"base_delay": 0.01, "max_tries": 3}


def source(url: str, pagination: str, **options: Any) -> HttpSource:
    return HttpSource(url, pagination=pagination, page_size=10, **{**FAST, **options})


def at(url: str, position: dict[str, Any]) -> dict[str, Any]:
    """``position`` as ``source(url, ...)`` writes it: naming the endpoint it is for."""
    return {**position, "endpoint": f"{url}?limit=10"}


# -- each style -------------------------------------------------------------------------


async def test_link_follows_next_headers_and_ends_on_the_last_page() -> None:
    api = Api(25)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "link"))
    assert ids(chunks) == list(range(1, 26))
    assert [hit.query for hit in api.hits] == [
        {"limit": "10", "page": "1"},
        {"limit": "10", "page": "2"},
        {"limit": "10", "page": "3"},
    ]
    assert [c.position for c in chunks] == [
        at(url, {"url": f"{url}?limit=10&page=2", "skip": 0}),
        at(url, {"url": f"{url}?limit=10&page=3", "skip": 0}),
        at(url, {"url": f"{url}?limit=10&page=3", "skip": 5}),
    ]


async def test_link_rerun_after_the_end_reads_only_what_was_appended() -> None:
    api = Api(25)
    async with serve_api(api) as url:
        first = await collect(source(url, "link"))
        again = await collect(source(url, "link"), first[-1].position)
        api.records += [{"id": i, "updated_at": 1000 + i} for i in range(26, 33)]
        more = await collect(source(url, "link"), first[-1].position)
    assert ids(again) == []
    assert again[-1].position == first[-1].position
    assert ids(more) == list(range(26, 33))
    assert more[-1].position == at(url, {"url": f"{url}?limit=10&page=4", "skip": 2})


async def test_cursor_sends_the_token_from_the_body() -> None:
    api = Api(25, envelope=True)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "cursor", records_path="data", cursor_path="next"))
    assert ids(chunks) == list(range(1, 26))
    assert [hit.query.get("cursor") for hit in api.hits] == [None, "10", "20"]
    assert chunks[-1].position == at(url, {"cursor": "20", "skip": 5})


async def test_page_ends_at_the_known_total_without_an_extra_request() -> None:
    api = Api(30)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page"))
    assert ids(chunks) == list(range(1, 31))
    assert len(api.hits) == 3
    assert chunks[-1].position == at(url, {"page": 3, "skip": 10})


async def test_page_without_a_total_ends_at_a_short_or_empty_page() -> None:
    short, exact = Api(25, total_header=False), Api(30, total_header=False)
    async with serve_api(short) as url:
        assert ids(await collect(source(url, "page"))) == list(range(1, 26))
    async with serve_api(exact) as url:
        chunks = await collect(source(url, "page"))
    assert ids(chunks) == list(range(1, 31))
    assert (len(short.hits), len(exact.hits)) == (3, 4)
    assert chunks[-1].position == at(url, {"page": 4, "skip": 0})


async def test_offset_pages_by_offset_and_limit() -> None:
    api = Api(25, total_header=False)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "offset"))
    assert ids(chunks) == list(range(1, 26))
    assert [hit.query for hit in api.hits] == [
        {"limit": "10", "offset": "0"},
        {"limit": "10", "offset": "10"},
        {"limit": "10", "offset": "20"},
    ]
    assert chunks[-1].position == at(url, {"offset": 20, "skip": 5})


async def test_until_empty_reads_past_short_pages_until_an_empty_one() -> None:
    api = Api(25, total_header=False, max_limit=7)  # the server serves 7 however many we ask
    async with serve_api(api) as url:
        chunks = await collect(source(url, "until_empty"))
    assert ids(chunks) == list(range(1, 26))
    assert len(api.hits) == 5  # 7 + 7 + 7 + 4, then the empty page
    assert chunks[-1].position == at(url, {"page": 5, "skip": 0})


async def test_a_server_that_caps_the_page_size_fails_instead_of_losing_records() -> None:
    api = Api(25, max_limit=7)
    async with serve_api(api) as url:
        with pytest.raises(PermanentError) as caught:
            await collect(source(url, "page"))
    assert str(caught.value) == (
        f"the page at {url}?limit=10&page=1 held 7 records, fewer than page_size 10, though "
        "the server's total of 25 says more follow; lower page_size to the server's maximum "
        "page size"
    )


# -- resuming ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "position"),
    [
        ("page", {"page": 2, "skip": 3}),
        ("offset", {"offset": 10, "skip": 3}),
        ("until_empty", {"page": 2, "skip": 3}),
    ],
)
async def test_resume_mid_page_skips_exactly_what_was_delivered(
    style: str, position: dict[str, Any]
) -> None:
    api = Api(25)
    async with serve_api(api) as url:
        chunks = await collect(source(url, style), position)
    assert ids(chunks) == list(range(14, 26))


async def test_pages_split_into_chunks_carry_mid_page_positions() -> None:
    api = Api(25)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page"), max_chunk=4)
    assert [c.position for c in chunks][:4] == [
        at(url, {"page": 1, "skip": 4}),
        at(url, {"page": 1, "skip": 8}),
        at(url, {"page": 2, "skip": 0}),
        at(url, {"page": 2, "skip": 4}),
    ]
    assert ids(chunks) == list(range(1, 26))


async def test_a_position_from_other_settings_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        await collect(source("http://127.0.0.1:9/x", "page"), {"url": "http://h/x", "skip": 0})
    assert str(caught.value) == (
        "HttpSource 'http': position: cannot resume from the committed position "
        "{'url': 'http://h/x', 'skip': 0}, which pagination 'page' did not write; restore the "
        "settings that wrote it or reset the checkpoint"
    )


async def test_a_link_position_of_another_server_is_refused_rather_than_followed() -> None:
    """The position is the next page's URL: resuming it would ignore a changed url."""
    api = Api(30)
    async with serve_api(api) as url:
        old: Position = {"url": "http://127.0.0.1:9/records?page=3", "skip": 0}
        with pytest.raises(ConfigError) as caught:
            await collect(source(url, "link"), old)
        same_server: Position = {"url": f"{url}?page=3&limit=10", "skip": 0}
        chunks = await collect(source(url, "link"), same_server)
    assert str(caught.value) == (
        f"HttpSource 'http': position: cannot resume from the committed position {old!r}: "
        f"it is a page of http://127.0.0.1:9, another server than url {URL(url).origin()}; "
        "to read from the new server, reset the checkpoint"
    )
    assert ids(chunks) == list(range(21, 31))
    assert [hit.query["page"] for hit in api.hits] == ["3"]


@pytest.mark.parametrize(
    ("style", "path", "query"),
    [
        ("page", "/other", ""),  # another path on the same server
        ("link", "/items", "region=eu"),  # the same path with another query
        ("cursor", "/items", "region=eu"),
    ],
)
async def test_a_position_written_for_another_endpoint_is_refused(
    style: str, path: str, query: str
) -> None:
    api = Api(30, envelope=style == "cursor")
    options = {"records_path": "data", "cursor_path": "next"} if style == "cursor" else {}
    async with serve_api(api) as url:
        [first, *_] = await collect(source(url, style, **options))
        moved = str(URL(url).with_path(path).with_query(query))
        with pytest.raises(ConfigError) as caught:
            await collect(source(moved, style, **options), first.position)
    assert first.position is not None
    written_for = f"{url}?limit=10"
    now = f"{moved}&limit=10" if query else f"{moved}?limit=10"
    assert str(caught.value) == (
        "HttpSource 'http': position: cannot resume from the committed position "
        f"{first.position!r}: it was written for {written_for!r}, not for url {now}; "
        f"point url back there, or to read {now} from the start, reset the checkpoint "
        "(python -m asyncetl checkpoint reset SPEC)"
    )
    assert len(api.hits) == 3  # the first run's pages only: the refused run asked nothing


async def test_a_since_position_written_for_another_endpoint_is_refused() -> None:
    options = {"since_param": "since", "since_field": "updated_at"}
    async with serve_api(Api(5)) as url:
        chunks = await collect(source(url, "page", **options))
        moved = source(url + "?region=eu", "page", **options)
        with pytest.raises(ConfigError, match="it was written for .*, not for url") as caught:
            await collect(moved, chunks[-1].position)
        with pytest.raises(ConfigError) as asked:
            moved.check_position(chunks[-1].position)  # the same answer, without a request
        assert str(asked.value) == str(caught.value)
        moved.check_position({"since": 1005, "endpoint": moved.endpoint})
    assert chunks[-1].position == at(url, {"since": 1005})


async def test_a_position_written_before_endpoints_were_recorded_is_taken_as_before() -> None:
    options = {"since_param": "since", "since_field": "updated_at"}
    api = Api(25)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page", **options), {"since": 1020})
    assert ids(chunks) == list(range(20, 26))
    assert chunks[-1].position == at(url, {"since": 1025})


# -- parallel pages ---------------------------------------------------------------------


async def test_parallel_pages_with_a_known_total_make_no_wasted_request() -> None:
    api = Api(95)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page", max_concurrency=4))
    assert ids(chunks) == list(range(1, 96))
    assert sorted(int(hit.query["page"]) for hit in api.hits) == list(range(1, 11))


async def test_parallel_pages_without_a_total_fetch_ahead_and_stop_at_the_short_page() -> None:
    api = Api(95, total_header=False)
    async with serve_api(api) as url:
        chunks = await collect(source(url, "offset", max_concurrency=4))
    assert ids(chunks) == list(range(1, 96))
    # The first page alone, then four in flight: pages 2-13, the last three past the end.
    assert len(api.hits) == 13


async def test_parallel_pages_arrive_in_order_whatever_order_they_finish_in() -> None:
    api = Api(60)
    for start, seconds in ((10, 0.3), (20, 0.2), (30, 0.1)):
        api.fault(start, delay(seconds))
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page", max_concurrency=3))
    assert ids(chunks) == list(range(1, 61))
    assert [c.position for c in chunks][:3] == [
        at(url, {"page": 2, "skip": 0}),
        at(url, {"page": 3, "skip": 0}),
        at(url, {"page": 4, "skip": 0}),
    ]


async def test_parallel_pages_stay_in_flight_while_records_are_handed_on() -> None:
    """While the consumer holds page k, pages up to k + 4 are requested, and no more."""
    api = Api(100)
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, Any]]](0)
    requested_while_held: list[int] = []

    def highest_requested() -> int:
        return max(int(hit.query["page"]) for hit in api.hits)

    async with serve_api(api) as url:
        src = source(url, "page", max_concurrency=4)
        await src.open()
        try:
            async with anyio.create_task_group() as tg, receive:

                async def produce() -> None:
                    async with send:
                        await src.produce(None, send, max_chunk=1000)

                tg.start_soon(produce)
                async for chunk in receive:
                    held = int(chunk.records[0]["id"]) // 10 + 1
                    with anyio.fail_after(5):
                        while highest_requested() < min(held + 4, 10):
                            await anyio.sleep(0.005)
                    await anyio.sleep(0.05)  # time for a request too many to show up
                    requested_while_held.append(highest_requested())
        finally:
            await src.aclose()
    assert requested_while_held == [5, 6, 7, 8, 9, 10, 10, 10, 10, 10]
    assert len(api.hits) == 10


async def test_read_fetches_one_page_at_a_time_even_with_max_concurrency() -> None:
    api = Api(30)
    api.fault(10, delay(0.2))
    async with serve_api(api) as url:
        chunks = await read_all(source(url, "page", max_concurrency=4))
    assert ids(chunks) == list(range(1, 31))
    assert [hit.query["page"] for hit in api.hits] == ["1", "2", "3"]
    assert api.hits[2].at - api.hits[1].at >= 0.2


async def test_a_page_past_a_short_last_page_that_holds_records_fails_the_read() -> None:
    api = Api(95, total_header=False)
    api.fault(20, raw_body(orjson.dumps([{"id": 21}])))  # a short page, yet more follow
    async with serve_api(api) as url:
        chunks, error = await collect_until_error(source(url, "offset", max_concurrency=4))
    assert ids(chunks) == list(range(1, 22))
    assert str(error) == (
        f"the page at {url}?limit=10&offset=20 ended the pagination, yet the later page "
        f"{url}?limit=10&offset=30 holds 10 records; use pagination 'until_empty' or a "
        "smaller page_size"
    )


def test_parallel_link_or_cursor_pages_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_concurrency: must be 1 with pagination 'link'"):
        HttpSource("http://h/x", max_concurrency=2)


# -- incremental ------------------------------------------------------------------------


async def test_since_reads_only_changes_after_the_committed_bound_minus_the_lag() -> None:
    api = Api(25)
    options = {"since_param": "since", "since_field": "updated_at", "lag": 2}
    async with serve_api(api) as url:
        first = await collect(source(url, "page", **options))
        api.records += [{"id": i, "updated_at": 1000 + i} for i in range(26, 29)]
        second = await collect(source(url, "page", **options), first[-1].position)
        third = await collect(source(url, "page", **options), second[-1].position)
    assert ids(first) == list(range(1, 26))
    assert first[-1].position == at(url, {"since": 1023})
    assert ids(second) == [23, 24, 25, 26, 27, 28]  # the lag window reads 23-25 again
    assert second[-1].position == at(url, {"since": 1026})
    assert ids(third) == [26, 27, 28]
    assert third[-1].position == at(url, {"since": 1026})  # never moves backwards
    assert [hit.query.get("since") for hit in api.hits] == [None] * 3 + ["1023", "1026"]


async def test_since_resumes_mid_walk_with_the_same_bound() -> None:
    api = Api(25)
    options = {"since_param": "since", "since_field": "updated_at"}
    async with serve_api(api) as url:
        chunks = await collect(source(url, "page", **options), max_chunk=4)
        middle = chunks[3].position
        rest = await collect(source(url, "page", **options), middle)
    assert middle == at(url, {"since": None, "max": 1014, "page": 2, "skip": 4})
    assert ids(rest) == list(range(15, 26))
    assert rest[-1].position == at(url, {"since": 1025})


def test_since_needs_both_param_and_field() -> None:
    with pytest.raises(ConfigError, match="since_param and since_field go together"):
        HttpSource("http://h/x", since_param="since")


def test_lag_moves_numbers_and_iso_times_back() -> None:
    assert lagged(100, 5) == 95
    assert lagged(1.5, 0.5) == 1.0
    assert lagged("2024-03-01T00:00:10Z", 60) == "2024-02-29T23:59:10Z"
    assert lagged("2024-03-01T00:00:10+02:00", 10) == "2024-03-01T00:00:00+02:00"
    assert lagged("2024-03-01T00:00:10", 10) == "2024-03-01T00:00:00"
    assert lagged("not a time", 10) == "not a time"
    assert lagged(100, 0) == 100


# -- pure logic -------------------------------------------------------------------------


def test_lookup_follows_dotted_paths() -> None:
    document: Any = {"data": {"items": [{"id": 1}]}, "meta": {"next": "c2"}}
    assert lookup(document, "") == document
    assert lookup(document, "$.meta.next") == "c2"
    assert lookup(document, "data.items.0.id") == 1
    assert lookup(document, "data.missing") is MISSING
    assert lookup(document, "data.items.5") is MISSING


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6),
    max_chunk=st.integers(min_value=1, max_value=7),
    cut=st.integers(min_value=0, max_value=200),
)
def test_resuming_from_any_chunk_position_yields_exactly_the_rest(
    sizes: list[int], max_chunk: int, cut: int
) -> None:
    """until_empty pages of these sizes, then an empty one, read in chunks and resumed."""
    pages = [*sizes, 0]
    numbered = []
    next_id = 0
    for size in pages:
        numbered.append(list(range(next_id, next_id + size)))
        next_id += size
    config = PaginationConfig(style="until_empty", page_size=12)
    pager = make_paginator(config, URL("http://h/x"), where="t")

    def run(after: Any) -> list[tuple[list[int], Any]]:
        walk = Walk(pager, None, after, endpoint="http://h/x", where="t")
        out = []
        while not walk.done:
            state = walk.state
            assert isinstance(state, int)
            items: list[Any] = (
                [{"id": i} for i in numbered[state - 1]] if state <= len(numbered) else []
            )
            for chunk in walk.take(Page(state, "u", 200, items), max_chunk):
                out.append(([int(str(r["id"])) for r in chunk.records], chunk.position))
        return out

    full = run(None)
    delivered = [i for records, _ in full for i in records]
    assert delivered == list(range(next_id))
    records_before, position = [], None
    for records, chunk_position in full[: cut % (len(full) + 1)]:
        records_before += records
        position = chunk_position
    rest = [i for records, _ in run(position) for i in records]
    assert records_before + rest == delivered


def test_cursor_style_needs_the_cursor_path() -> None:
    with pytest.raises(ConfigError, match="cursor_path: pagination 'cursor' needs cursor_path"):
        HttpSource("http://h/x", pagination="cursor")


def test_unknown_style_and_bad_page_size() -> None:
    with pytest.raises(ConfigError, match="pagination: must be one of link, cursor, page"):
        HttpSource("http://h/x", pagination="pages")
    with pytest.raises(ConfigError, match="page_size: must be a positive integer, not 0"):
        HttpSource("http://h/x", page_size=0)


def test_since_keeps_the_lag_setting() -> None:
    assert HttpSource("http://h/x", since_param="s", since_field="f", lag=3).since == Since(
        "s", "f", 3.0
    )


@pytest.mark.parametrize(
    ("url", "style", "param"),
    [
        ("http://api.test/items", "page", "page"),
        ("http://api.test/items?sort=id&q=a%20b", "page", "p g"),
        ("http://api.test/items?page=9", "page", "page"),  # the base's own number is replaced
        ("http://api.test/items#top", "offset", "offset"),
        ("http://api.test/items?from=%C3%A9", "offset", "start&end"),
    ],
)
def test_numbered_page_urls_are_those_update_query_builds(url: str, style: str, param: str) -> None:
    src = HttpSource(url, pagination=style, page_size=10, page_param=param, offset_param=param)
    for state in (0, 1, 7, 1230):
        expected = src.pager.base.update_query({param: str(state)})
        built = src.pager.url(state, {})
        assert (str(built), built.query) == (str(expected), expected.query)
