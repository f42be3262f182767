"""A secret from an env file or a secret file in a query parameter: sent always, kept never.

``url = "…?k=${API_KEY}"`` names the key ``k``, which does not look secret; the
value is known as a secret only because the spec took it from an env file (or
``${file:…}``), which remembers it. Positions, identities, dead letters and
outputs must not hold it, and every request, a resumed one too, must send it.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

from asyncetl import Batch, ConfigError, Position
from asyncetl.connectors.http import HttpSink, HttpSource, idempotency_key
from asyncetl.connectors.http._client import HttpStatusError
from asyncetl.core import redact as core_redact
from asyncetl.core.redact import redact, remember_secret
from tests.connectors.http.api import Api, collect, ids, raw_body, serve

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"base_delay": 0.01, "max_tries": 2}


def new_key() -> str:
    """A key no other test remembers (remembered secrets last for the process)."""
    return "key-" + secrets.token_hex(12)


class Keyed:
    """``api`` answering 401 to a request without ``k=key``.

    :ivar queries: the query of every request, answered or not.
    """

    def __init__(self, api: Api, key: str) -> None:
        self.api, self.key = api, key
        self.queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.query.get("k") != self.key:
            return web.Response(status=401, text="no key")
        return await self.api.handle(request)


# -- embedded -----------------------------------------------------------------------------


async def test_a_remembered_key_goes_with_every_page_and_into_no_position() -> None:
    key = new_key()
    remember_secret(key)
    api = Api(25)
    async with serve(Keyed(api, key).handle) as base:
        url = base + "/items"
        chunks = await collect(HttpSource(f"{url}?k={key}", page_size=10, **FAST))
    assert ids(chunks) == list(range(1, 26))
    # The server's next links echo the key; every request sent it, none twice.
    assert [hit.query for hit in api.hits] == [
        {"limit": "10", "page": "1", "k": key},
        {"limit": "10", "page": "2", "k": key},
        {"limit": "10", "page": "3", "k": key},
    ]
    endpoint = f"{url}?k=***&limit=10"
    assert [chunk.position for chunk in chunks] == [
        {"url": f"{url}?limit=10&page=2", "skip": 0, "endpoint": endpoint},
        {"url": f"{url}?limit=10&page=3", "skip": 0, "endpoint": endpoint},
        {"url": f"{url}?limit=10&page=3", "skip": 5, "endpoint": endpoint},
    ]


async def test_a_page_number_equal_to_a_remembered_number_stays_in_the_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An env file that gave ``page_size = 10`` makes "10" a secret, not page 10 a secret."""
    monkeypatch.setattr(core_redact, "_secrets", [])
    key = new_key()
    remember_secret(key)
    remember_secret("3")
    api = Api(35)
    async with serve(Keyed(api, key).handle) as base:
        url = base + "/items"
        chunks = await collect(HttpSource(f"{url}?k={key}", page_size=10, **FAST))
    assert ids(chunks) == list(range(1, 36))
    assert [hit.query["page"] for hit in api.hits] == ["1", "2", "3", "4"]
    assert chunks[1].position == {
        "url": f"{url}?limit=10&page=3",
        "skip": 0,
        "endpoint": redact(f"{url}?k={key}&limit=10"),  # a "3" in the port is hidden too
    }


async def test_a_resumed_read_sends_the_key_and_reads_exactly_the_rest() -> None:
    key = new_key()
    remember_secret(key)
    api = Api(35)
    async with serve(Keyed(api, key).handle) as base:
        url = f"{base}/items?k={key}"
        after_page_2 = (await collect(HttpSource(url, page_size=10, **FAST)))[1].position
        api.hits.clear()
        chunks = await collect(HttpSource(url, page_size=10, **FAST), after_page_2)
    assert key not in orjson.dumps(after_page_2).decode()
    assert ids(chunks) == list(range(21, 36))
    assert [hit.query for hit in api.hits] == [
        {"limit": "10", "page": "3", "k": key},
        {"limit": "10", "page": "4", "k": key},
    ]
    assert key not in orjson.dumps([chunk.position for chunk in chunks]).decode()


async def test_a_key_given_in_params_is_kept_out_of_page_positions_too() -> None:
    key = new_key()
    remember_secret(key)
    api = Api(15)
    async with serve(Keyed(api, key).handle) as base:
        source = HttpSource(
            base + "/items", pagination="page", page_size=10, params={"k": key}, **FAST
        )
        chunks = await collect(source)
    assert ids(chunks) == list(range(1, 16))
    assert [hit.query["k"] for hit in api.hits] == [key, key]
    assert chunks[-1].position == {"page": 2, "skip": 5, "endpoint": f"{base}/items?k=***&limit=10"}


async def test_a_position_written_with_the_key_in_it_still_resumes_and_drops_it() -> None:
    """Positions written before the key was kept out of them hold it in plain text."""
    key = new_key()
    remember_secret(key)
    api = Api(30)
    async with serve(Keyed(api, key).handle) as base:
        url = base + "/items"
        old: Position = {
            "url": f"{url}?k={key}&limit=10&page=2&q=a%20b%26c",
            "skip": 3,
            "endpoint": f"{url}?k={key}&limit=10",
        }
        chunks = await collect(HttpSource(f"{url}?k={key}", page_size=10, **FAST), old)
    assert ids(chunks) == list(range(14, 31))
    assert [hit.query["page"] for hit in api.hits] == ["2", "3"]
    assert [hit.query["k"] for hit in api.hits] == [key, key]
    assert api.hits[0].query["q"] == "a b&c"  # the rest of the URL as it was written
    assert key not in orjson.dumps([chunk.position for chunk in chunks]).decode()
    assert chunks[-1].position == {
        "url": f"{url}?limit=10&page=3&q=a+b%26c",
        "skip": 10,
        "endpoint": f"{url}?k=***&limit=10",
    }


async def test_another_url_refuses_the_position_without_showing_the_key() -> None:
    key = new_key()
    remember_secret(key)
    api = Api(15)
    async with serve(Keyed(api, key).handle) as base:
        written = (await collect(HttpSource(f"{base}/items?k={key}", page_size=10)))[0].position
        other = HttpSource(f"{base}/other?k={key}", page_size=10)
        with pytest.raises(ConfigError) as refused:
            other.check_position(written)
        HttpSource(f"{base}/items?k={key}", page_size=10).check_position(written)
    a, b = f"{base}/items?k=***&limit=10", f"{base}/other?k=***&limit=10"
    assert str(refused.value) == (
        "HttpSource 'http': position: cannot resume from the committed position "
        f"{{'url': '{base}/items?limit=10&page=2', 'skip': 0, 'endpoint': '{a}'}}: it was "
        f"written for '{a}', not for url {b}; point url back there, or to read {b} from the "
        "start, reset the checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )


async def test_a_dead_lettered_page_and_its_error_hold_no_key() -> None:
    key = new_key()
    remember_secret(key)
    api = Api(30)
    api.fault(10, raw_body(b"<html>down, key " + key.encode() + b"</html>"))
    async with serve(Keyed(api, key).handle) as base:
        source = HttpSource(f"{base}/items?k={key}", pagination="page", page_size=10, **FAST)
        chunks = await collect(source)
    [reject] = [reject for chunk in chunks for reject in chunk.rejects]
    assert reject.record == {
        "url": f"{base}/items?limit=10&page=2&k=***",  # the page asked, its key hidden
        "status": 200,
        "body": f"<html>down, key {key}</html>",  # the server's own body, as it came
    }
    assert key not in str(reject.error)
    assert ids(chunks) == [*range(1, 11), *range(21, 31)]


async def test_the_key_goes_to_the_configured_server_only_never_where_a_link_points() -> None:
    key = new_key()
    remember_secret(key)
    elsewhere: list[dict[str, str]] = []

    async def other(request: web.Request) -> web.StreamResponse:
        elsewhere.append(dict(request.query))
        return web.json_response([{"id": 2}])

    async with serve(other) as other_base:

        async def first(request: web.Request) -> web.StreamResponse:
            if request.query.get("k") != key:
                return web.Response(status=401, text="no key")
            link = f'<{other_base}/items?page=2&k={key}>; rel="next"'
            return web.json_response([{"id": 1}], headers={"Link": link})

        async with serve(first) as base:
            chunks = await collect(HttpSource(f"{base}/items?k={key}", page_size=10, **FAST))
    assert ids(chunks) == [1, 2]
    assert elsewhere == [{"page": "2"}]
    assert key not in orjson.dumps([chunk.position for chunk in chunks]).decode()


async def test_the_sink_sends_the_key_keeps_its_idempotency_keys_and_shows_none() -> None:
    key = new_key()
    remember_secret(key)
    received: list[dict[str, str]] = []

    async def accept(request: web.Request) -> web.StreamResponse:
        received.append(dict(request.query))
        return web.Response(status=401 if len(received) > 1 else 201, text=f"bad key {key}")

    async with serve(accept) as base:
        sink = HttpSink(f"{base}/in?k={key}", **FAST)
        await sink.open()
        try:
            await sink.write(Batch(0, [{"id": 1}], {"page": 2}))
            with pytest.raises(HttpStatusError) as refused:
                await sink.write(Batch(1, [{"id": 2}], {"page": 3}))
        finally:
            await sink.aclose()
    assert received == [{"k": key}, {"k": key}]
    assert str(refused.value) == (
        f"POST {base}/in?k=*** answered 401 Unauthorized: 'bad key ***'; check the credentials"
    )
    assert key not in repr(sink)
    # Keys are made from the URL as configured, as before the key was kept out of it.
    assert sink.key({"page": 2}) == idempotency_key("http", f"{base}/in?k={key}", {"page": 2})


# -- on the command line ------------------------------------------------------------------

SPEC = """
[pipeline]
name = "api"
max_batch_size = 10

[source]
type = "http"
url = "{url}?k=${{API_KEY}}"
page_size = 10

[sink]
type = "jsonl"
path = "out.jsonl"

[checkpoints]
type = "json"
path = "checkpoints.json"
"""


async def test_the_command_line_stores_and_shows_no_env_file_key_and_resumes_with_it(
    tmp_path: Path,
) -> None:
    key = new_key()
    (tmp_path / "secrets.env").write_text(f"API_KEY={key}\n")
    outputs: list[str] = []

    async def cli(*args: str) -> tuple[int, str]:
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncetl", *args, "--env-file", "secrets.env"],
            cwd=tmp_path,
            check=False,
        )
        out = done.stdout.decode()
        outputs.append(out + done.stderr.decode())
        return done.returncode, out

    api = Api(20)
    server = Keyed(api, key)
    async with serve(server.handle) as base:
        url = base + "/items"
        (tmp_path / "api.toml").write_text(SPEC.format(url=url))
        (tmp_path / "other.toml").write_text(SPEC.format(url=base + "/other"))
        assert (await cli("run", "api.toml", "--log-level", "debug"))[0] == 0
        stopped = (tmp_path / "checkpoints.json").read_text()
        shown = await cli("checkpoint", "show", "api.toml")
        # Stopped after page 2, the last one then; 15 records come after it.
        api.records.extend({"id": i, "updated_at": 1000 + i} for i in range(21, 36))
        assert [query["page"] for query in server.queries] == ["1", "2"]
        server.queries.clear()
        assert (await cli("run", "other.toml"))[0] == 2  # another URL refuses the position
        assert (await cli("run", "api.toml"))[0] == 0
    assert server.queries == [
        {"limit": "10", "page": "2", "k": key},
        {"limit": "10", "page": "3", "k": key},
        {"limit": "10", "page": "4", "k": key},
    ]
    loaded = [orjson.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().split()]
    assert loaded == list(range(1, 36))
    endpoint = f"{url}?k=***&limit=10"
    assert shown == (
        0,
        f'pipeline api (source http): {{"url":"{url}?limit=10&page=2","skip":10,'
        f'"endpoint":"{endpoint}"}}\n',
    )
    assert (
        f"it was written for '{endpoint}', not for url {base}/other?k=***&limit=10" in (outputs[2])
    )
    for text in (*outputs, stopped, (tmp_path / "checkpoints.json").read_text()):
        assert key not in text
