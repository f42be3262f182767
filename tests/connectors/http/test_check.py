"""``check()`` of the HTTP source and sink: one GET of the first page; the sink sends nothing."""

from __future__ import annotations

import socket

import pytest

from asyncetl import Problem
from asyncetl.connectors.http import HttpSink, HttpSource
from tests.connectors.http.api import Api, serve_api, status

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_the_source_asks_the_first_page_once_and_the_sink_sends_nothing() -> None:
    api = Api(count=30)
    async with serve_api(api) as url:
        assert await HttpSource(url, pagination="page", page_size=10).check() == []
        assert await HttpSink(url).check() == []
    assert [(hit.method, hit.query) for hit in api.hits] == [("GET", {"page": "1", "limit": "10"})]


async def test_a_refused_first_page_is_one_problem_without_retries() -> None:
    api = Api(count=30)
    api.fault(0, status(503), status(503))
    async with serve_api(api) as url:
        problems = await HttpSource(url, pagination="page", page_size=10).check()
    assert problems == [
        Problem(
            "url",
            f"GET {url}?limit=10&page=1 answered 503 Service Unavailable; the server is "
            "failing or overloaded; try again later",
        )
    ]
    assert len(api.hits) == 1


async def test_a_closed_port_is_named_by_host_and_port() -> None:
    port = closed_port()
    url = f"http://etl:s3cret-pw@127.0.0.1:{port}/items"
    source_problems = await HttpSource(url, pagination="page").check()
    assert [p.setting for p in source_problems] == ["url"]
    assert source_problems[0].message.startswith(f"GET http://127.0.0.1:{port}/items")
    assert await HttpSink(url).check() == [
        Problem(
            "url",
            f"cannot connect to 127.0.0.1:{port} for http://127.0.0.1:{port}/items: "
            "Connection refused; check that the server is up and reachable",
        )
    ]
    assert "s3cret" not in repr(source_problems)
