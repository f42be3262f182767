"""Credentials in URLs and headers go with every request and into no output or store."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from yarl import URL

from asyncetl import (
    Batch,
    ConfigError,
    ListSink,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    Pipeline,
    Position,
)
from asyncetl.connectors.http import HttpSink, HttpSource, idempotency_key
from asyncetl.connectors.http._client import HttpStatusError
from tests.connectors.http.api import Api, collect, ids, raw_body, serve

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"base_delay": 0.01, "max_tries": 2}
PASSWORD = "pw-s3cr3t"
BASIC = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()


def guarded(api: Api, expected: str = BASIC) -> Any:
    """``api`` behind basic auth: a request without the right credentials gets 401."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="who are you?")
        return await api.handle(request)

    return handle


def with_userinfo(url: str) -> str:
    return str(URL(url).with_user("reader").with_password(PASSWORD))


# -- a password in the URL ----------------------------------------------------------------


async def test_the_url_password_goes_with_every_page_and_into_no_position() -> None:
    api = Api(25)
    async with serve(guarded(api)) as base:
        url = base + "/items"
        chunks = await collect(HttpSource(with_userinfo(url), page_size=10, **FAST))
    assert ids(chunks) == list(range(1, 26))
    assert [hit.headers.get("Authorization") for hit in api.hits] == [BASIC] * 3
    assert [chunk.position for chunk in chunks] == [
        {"url": f"{url}?limit=10&page=2", "skip": 0, "endpoint": f"{url}?limit=10"},
        {"url": f"{url}?limit=10&page=3", "skip": 0, "endpoint": f"{url}?limit=10"},
        {"url": f"{url}?limit=10&page=3", "skip": 5, "endpoint": f"{url}?limit=10"},
    ]


async def test_a_link_position_written_with_the_password_resumes_without_it() -> None:
    """Positions written before credentials moved to auth may hold ``user:password@``."""
    api = Api(30)
    async with serve(guarded(api)) as base:
        url = base + "/items"
        old: Position = {"url": with_userinfo(f"{url}?page=2&limit=10"), "skip": 0}
        chunks = await collect(HttpSource(with_userinfo(url), page_size=10, **FAST), old)
    assert ids(chunks) == list(range(11, 31))
    assert [hit.headers.get("Authorization") for hit in api.hits] == [BASIC] * 2
    assert PASSWORD not in repr([chunk.position for chunk in chunks])


async def test_a_refused_old_position_is_shown_without_its_password() -> None:
    old: Position = {"url": with_userinfo("http://127.0.0.1:9/items?page=2"), "skip": 0}
    with pytest.raises(ConfigError) as caught:
        await collect(HttpSource("http://127.0.0.1:8/items", **FAST), old)
    assert str(caught.value) == (
        "HttpSource 'http': position: cannot resume from the committed position "
        "{'url': 'http://reader:***@127.0.0.1:9/items?page=2', 'skip': 0}: it is a page of "
        "http://127.0.0.1:9, another server than url http://127.0.0.1:8; to read from the "
        "new server, reset the checkpoint"
    )


async def test_a_pipeline_keeps_the_url_password_out_of_logs_checkpoints_and_dead_letters() -> None:
    api = Api(30)
    api.fault(10, raw_body(b"<html>down for maintenance</html>"))
    checkpoints, letters = MemoryCheckpointStore(), MemoryDeadLetterStore()
    sink = ListSink[dict[str, Any]]()
    async with serve(guarded(api)) as base:
        source = HttpSource(with_userinfo(base + "/items"), pagination="page", page_size=10, **FAST)
        pipeline = Pipeline(
            "p",
            source,
            sink,
            checkpoints=checkpoints,
            dead_letters=letters,
            source_errors="dead_letter",
        )
        with capture_logs() as logs:
            stats = await pipeline.run()
    assert [record["id"] for record in sink.records] == [*range(1, 11), *range(21, 31)]
    [letter] = letters.letters
    assert isinstance(letter.record, dict)
    assert letter.record["url"] == f"{base}/items?limit=10&page=2"
    shown = repr(
        [logs, stats, checkpoints.positions, letters.letters, source, source.client.settings]
    )
    assert PASSWORD not in shown
    assert "reader" not in shown


async def test_a_mistyped_scheme_is_refused_without_showing_the_password() -> None:
    for connector in (HttpSource, HttpSink):
        with pytest.raises(ConfigError) as caught:
            connector(f"htp://reader:{PASSWORD}@api.example/items")
        assert str(caught.value) == (
            f"{connector.__name__} 'http': url: must be an absolute http(s) URL, not "
            "'htp://reader:***@api.example/items'"
        )


async def test_an_unparsable_url_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSource(f"http://reader:{PASSWORD}@api.example:99999/items")
    assert PASSWORD not in str(caught.value)
    assert str(caught.value).startswith("HttpSource 'http': url: is not a URL (")


def test_url_credentials_and_auth_together_are_refused_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSource(with_userinfo("http://api.example/items"), client={"auth": "bearer"})
    assert str(caught.value) == (
        "HttpSource 'http': url: the url carries credentials for user 'reader' and auth is "
        "'bearer' too; keep one of them"
    )


async def test_the_sink_sends_the_url_password_as_basic_auth_and_keeps_its_keys() -> None:
    received: list[tuple[str | None, bytes]] = []

    async def accept(request: web.Request) -> web.StreamResponse:
        received.append((request.headers.get("Authorization"), await request.read()))
        return web.Response(status=201)

    async with serve(accept) as base:
        sink = HttpSink(with_userinfo(base + "/in"), **FAST)
        await sink.open()
        try:
            await sink.write(Batch(0, [{"id": 1}], {"page": 2}))
        finally:
            await sink.aclose()
    assert received == [(BASIC, b'[{"id":1}]')]
    assert sink.url == URL(base + "/in")
    # Keys are made from the URL as shown before credentials moved out of it
    # (user:***@), so a batch replayed across the upgrade keeps its key.
    shown = base.replace("http://", "http://reader:***@") + "/in"
    assert sink.key({"page": 2}) == idempotency_key("http", shown, {"page": 2})


# -- secrets echoed in error bodies -------------------------------------------------------


def echo(status: int) -> Any:
    """Answer ``status`` with a body that repeats every request header."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, body=orjson.dumps({str(k): v for k, v in request.headers.items()})
        )

    return handle


@pytest.mark.parametrize("status", [401, 404])
async def test_secret_header_values_echoed_by_the_server_are_scrubbed(status: int) -> None:
    headers = {
        "Authorization": "Bearer tok-0123456789",
        "X-Api-Key": "key-0123456789",
        "Accept": "application/json",
    }
    async with serve(echo(status)) as base:
        source = HttpSource(base + "/items", headers=headers, max_tries=1)
        with pytest.raises(HttpStatusError) as caught:
            await collect(source)
    message = str(caught.value)
    assert "tok-0123456789" not in message
    assert "key-0123456789" not in message
    assert '"Authorization":"***"' in message
    assert '"X-Api-Key":"***"' in message
    assert '"Accept":"application/json"' in message  # not a secret, so still shown


async def test_a_header_marked_secret_is_scrubbed_and_never_shown() -> None:
    client = {
        "headers": {"X-Tenant": "tenant-0123456789", "Accept": "application/json"},
        "secret_headers": ["x-tenant"],
        "retry": {"max_tries": 1},
    }
    async with serve(echo(401)) as base:
        source = HttpSource(base + "/items", client=client)
        with pytest.raises(HttpStatusError) as caught:
            await collect(source)
    assert "tenant-0123456789" not in str(caught.value)
    assert '"X-Tenant":"***"' in str(caught.value)
    assert repr(source).endswith("headers={'X-Tenant': '***', 'Accept': 'application/json'})")


async def test_the_url_password_echoed_by_the_server_is_scrubbed() -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        decoded = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
        return web.Response(status=403, text=f"user:password {decoded} may not read this")

    async with serve(handle) as base:
        with pytest.raises(HttpStatusError) as caught:
            await collect(HttpSource(with_userinfo(base + "/items"), **FAST))
    assert str(caught.value) == (
        f"GET {base}/items?limit=100&page=1 answered 403 Forbidden: "
        "'user:password reader:*** may not read this'; check the credentials"
    )


# -- through the command line -------------------------------------------------------------

SPEC = """
[pipeline]
name = "guarded_api"
source_errors = "dead_letter"
max_batch_size = 10

[source]
type = "http"
url = "${API_URL}"
pagination = "page"
page_size = 10

[source.client]
retry = {max_tries = 2, base_delay = 0.01}

[sink]
type = "jsonl"
path = "out.jsonl"

[checkpoints]
type = "json"
path = "checkpoints.json"

[dead_letters]
type = "jsonl"
path = "dead.jsonl"
"""


async def test_the_command_line_shows_and_stores_no_url_password(tmp_path: Path) -> None:
    (tmp_path / "api.toml").write_text(SPEC)
    api = Api(30)
    api.fault(10, raw_body(b"<html>down for maintenance</html>"))
    outputs: list[str] = []

    async def cli(*args: str) -> None:
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncetl", *args, "api.toml"],
            cwd=tmp_path,
            env={**os.environ, "API_URL": with_userinfo(base + "/items")},
            check=False,
        )
        outputs.append(f"{args}: {done.returncode}\n{done.stdout.decode()}{done.stderr.decode()}")

    async with serve(guarded(api)) as base:
        await cli("run", "--log-format", "json", "--log-level", "debug")
        await cli("run", "--log-format", "json", "--log-level", "debug")  # resumes
        await cli("checkpoint", "show")
        await cli("dlq", "list", "--json")
    stored = [(tmp_path / name).read_text() for name in ("checkpoints.json", "dead.jsonl")]
    loaded = [orjson.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().split()]
    assert loaded == [*range(1, 11), *range(21, 31)]
    assert [output.split("\n")[0] for output in outputs] == [
        "('run', '--log-format', 'json', '--log-level', 'debug'): 0",
        "('run', '--log-format', 'json', '--log-level', 'debug'): 0",
        "('checkpoint', 'show'): 0",
        "('dlq', 'list', '--json'): 0",
    ]
    assert f"{base}/items?limit=10" in outputs[2]  # the endpoint, shown without credentials
    assert f"{base}/items?limit=10&page=2" in stored[1]  # the dead-lettered page
    for text in (*outputs, *stored):
        assert PASSWORD not in text
        assert "reader:" not in text
