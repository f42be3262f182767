"""The shared client: retries, Retry-After, timeouts, dropped connections, auth, redaction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web
from structlog.testing import capture_logs
from yarl import URL

from asyncetl import ConfigError, PermanentError, RetryPolicy, TransientError
from asyncetl.connectors.http import (
    Auth,
    ClientSettings,
    Limits,
    Timeouts,
    redact_headers,
    redact_url,
)
from asyncetl.connectors.http._client import HttpClient, HttpStatusError
from tests.connectors.http.api import (
    Api,
    delay,
    drop_mid_body,
    serve,
    serve_api,
    stall_body,
    status,
)

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_tries=4, max_time=10, base_delay=0.01, max_delay=5)


@asynccontextmanager
async def client(**config: object) -> AsyncIterator[HttpClient]:
    settings: dict[str, object] = {"retry": FAST, **config}
    http = HttpClient(ClientSettings(**settings), where="test client")  # type: ignore[arg-type]
    await http.open()
    try:
        yield http
    finally:
        await http.close()


def page_url(base: str, page: int = 1) -> URL:
    return URL(base).update_query(page=str(page), limit="10")


# -- statuses ---------------------------------------------------------------------------


async def test_a_404_fails_at_once_with_url_status_and_body_start() -> None:
    api = Api(30)
    api.fault(0, status(404, body=b"no such collection: items"))
    async with serve_api(api) as url, client() as http:
        with pytest.raises(HttpStatusError) as caught:
            await http.request("GET", page_url(url))
    assert caught.value.status == 404
    assert str(caught.value) == (
        f"GET {page_url(url)} answered 404 Not Found: 'no such collection: items'; "
        "check the URL, the query parameters and the request"
    )
    assert len(api.hits) == 1


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_a_burst_of_5xx_is_retried_until_it_passes(code: int) -> None:
    api = Api(30)
    api.fault(0, status(code), status(code), status(code))
    async with serve_api(api) as url, client() as http:
        response = await http.request("GET", page_url(url))
    assert response.status == 200
    assert len(api.hits) == 4


async def test_retries_stop_at_max_tries_with_the_last_error() -> None:
    api = Api(30)
    api.fault(0, *[status(502, body=b"bad gateway")] * 10)
    async with serve_api(api) as url, client() as http:
        with pytest.raises(TransientError, match="answered 502 Bad Gateway: 'bad gateway'"):
            await http.request("GET", page_url(url))
    assert len(api.hits) == FAST.max_tries


async def test_429_with_retry_after_seconds_waits_that_long() -> None:
    api = Api(30)
    api.fault(0, status(429, {"Retry-After": "1"}))
    async with serve_api(api) as url, client() as http:
        await http.request("GET", page_url(url))
    assert len(api.hits) == 2
    waited = api.hits[1].at - api.hits[0].at
    assert 0.95 <= waited < 2.0


async def test_503_with_retry_after_http_date_waits_until_then() -> None:
    api = Api(30)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    api.fault(0, status(503, {"Retry-After": format_datetime(when, usegmt=True)}))
    async with serve_api(api) as url, client() as http:
        await http.request("GET", page_url(url))
    assert len(api.hits) == 2
    # The second request goes out no earlier than the date (less clock granularity).
    assert time.time() >= when.timestamp() - 0.05
    assert api.hits[1].at - api.hits[0].at < 3.0


async def test_retry_after_zero_falls_back_to_backoff_without_spinning() -> None:
    api = Api(30)
    api.fault(0, *[status(429, {"Retry-After": "0"})] * 3)
    policy = RetryPolicy(max_tries=4, max_time=10, base_delay=0.05, max_delay=5)
    async with serve_api(api) as url, client(retry=policy) as http:
        with capture_logs() as logs:
            await http.request("GET", page_url(url))
    assert len(api.hits) == 4
    waits = [entry["wait"] for entry in logs if entry["event"] == "retrying"]
    assert len(waits) == 3
    assert all(0 <= wait <= 0.05 * 2**i for i, wait in enumerate(waits))
    assert not any(entry["event"] == "pausing requests" for entry in logs)


async def test_retry_after_is_capped_at_max_delay() -> None:
    api = Api(30)
    api.fault(0, status(429, {"Retry-After": "3600"}))
    policy = RetryPolicy(max_tries=3, max_time=10, base_delay=0.01, max_delay=0.3)
    async with serve_api(api) as url, client(retry=policy) as http:
        started = time.monotonic()
        await http.request("GET", page_url(url))
    assert 0.29 <= time.monotonic() - started < 1.0
    assert len(api.hits) == 2


# -- the connection ---------------------------------------------------------------------


async def test_a_slow_response_past_the_read_timeout_is_retried() -> None:
    api = Api(30)
    api.fault(0, delay(0.4))
    async with serve_api(api) as url, client(timeout=Timeouts(read=0.1)) as http:
        with capture_logs() as logs:
            response = await http.request("GET", page_url(url))
    assert response.status == 200
    assert len(api.hits) == 2
    retried = [entry["error"] for entry in logs if entry["event"] == "retrying"]
    assert retried == [
        f"TransientError: GET {page_url(url)} timed out (connect 10.0s, read 0.1s, total "
        "30.0s); the server is slow or unreachable, try again later or raise the timeouts"
    ]


async def test_without_a_read_timeout_the_total_timeout_bounds_a_stalled_body() -> None:
    api = Api(30)
    api.fault(0, stall_body(0.6))
    async with serve_api(api) as url, client(timeout=Timeouts(total=0.3)) as http:
        with capture_logs() as logs:
            response = await http.request("GET", page_url(url))
    assert response.body.startswith(b'[{"id":1,')
    assert len(api.hits) == 2
    retried = [entry["error"] for entry in logs if entry["event"] == "retrying"]
    assert retried == [
        f"TransientError: GET {page_url(url)} timed out (connect 10.0s, total 0.3s); the "
        "server is slow or unreachable, try again later or raise the timeouts"
    ]


async def test_a_body_that_stalls_past_the_read_timeout_is_retried() -> None:
    api = Api(30)
    api.fault(0, stall_body(0.4))
    async with serve_api(api) as url, client(timeout=Timeouts(read=0.1)) as http:
        response = await http.request("GET", page_url(url))
    assert response.body.startswith(b'[{"id":1,')
    assert len(api.hits) == 2


async def test_a_connection_dropped_mid_body_is_retried() -> None:
    api = Api(30)
    api.fault(0, drop_mid_body(), drop_mid_body())
    async with serve_api(api) as url, client() as http:
        response = await http.request("GET", page_url(url))
    assert response.status == 200
    assert len(api.hits) == 3


async def test_an_unreachable_server_fails_after_the_retries_with_a_clear_message() -> None:
    async with serve_api(Api(1)) as url:
        pass  # the port is free again once the server stopped
    policy = RetryPolicy(max_tries=2, max_time=5, base_delay=0.01, max_delay=1)
    async with client(retry=policy) as http:
        with pytest.raises(TransientError) as caught:
            await http.request("GET", page_url(url))
    assert str(caught.value).startswith(f"GET {page_url(url)} failed: ClientConnectorError")
    assert str(caught.value).endswith("; check that the server is up and reachable")


async def test_used_before_open_is_a_programming_error() -> None:
    http = HttpClient(ClientSettings(retry=FAST), where="c")
    with pytest.raises(RuntimeError, match="c was used before open"):
        await http.request("GET", URL("http://127.0.0.1:9/x"))


# -- auth and secrets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "env", "header", "expected"),
    [
        (Auth("bearer"), {"API_TOKEN": "tok-123"}, "Authorization", "Bearer tok-123"),
        (
            Auth("basic", username_env="U", password_env="P"),
            {"U": "me", "P": "pw-9"},
            "Authorization",
            "Basic bWU6cHctOQ==",
        ),
        (Auth("header", api_key_env="K"), {"K": "key-42"}, "X-API-Key", "key-42"),
        (Auth("header", api_key_name="X-Token"), {"API_KEY": "k-7"}, "X-Token", "k-7"),
    ],
)
async def test_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    auth: Auth,
    env: dict[str, str],
    header: str,
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    api = Api(30)
    async with serve_api(api) as url, client(auth=auth) as http:
        await http.request("GET", page_url(url))
    assert api.hits[0].headers[header] == expected
    assert "tok-123" not in repr(http.shown_headers())


async def test_query_api_key_is_sent_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "s3cret-key")
    api = Api(30)
    api.fault(0, status(403, body=b"key s3cret-key is revoked"))
    async with serve_api(api) as url, client(auth=Auth("query", api_key_name="key")) as http:
        with capture_logs() as logs, pytest.raises(HttpStatusError) as caught:
            await http.request("GET", page_url(url).update_query(key="s3cret-key"))
    assert api.hits[0].query["key"] == "s3cret-key"
    assert str(caught.value) == (
        f"GET {url}?page=1&limit=10 answered 403 Forbidden: 'key *** is revoked'; "
        "check the credentials"
    )
    assert "s3cret-key" not in repr(logs)


async def test_a_missing_credential_variable_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    http = HttpClient(ClientSettings(auth=Auth("bearer", "NO_SUCH_TOKEN")), where="HttpSource 'x'")
    with pytest.raises(ConfigError) as caught:
        await http.open()
    assert str(caught.value) == (
        "HttpSource 'x': token_env: environment variable NO_SUCH_TOKEN is not set; "
        "set it to the credential"
    )
    await http.close()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="auth: must be one of bearer, basic, header, query"):
        Auth("oauth")
    with pytest.raises(ConfigError, match="timeout.read: must be a positive number, not 0"):
        Timeouts(read=0)
    with pytest.raises(
        ConfigError, match="limits.connections_per_host: must be a positive integer"
    ):
        Limits(connections_per_host=0)


def test_redaction_of_urls_and_headers() -> None:
    assert redact_url("https://u:pw@h.io/x?page=2&access_token=abc&sig=1&q=a") == (
        "https://u:***@h.io/x?page=2&access_token=***&sig=***&q=a"
    )
    assert redact_url("https://h.io/x?k=v", ["K"]) == "https://h.io/x?k=***"
    assert redact_headers(
        {
            "Authorization": "Bearer x",
            "X-Api-Key": "k",
            "Accept": "json",
            "Cookie": "c",
            "X-Custom": "v",
        },
        ["x-custom"],
    ) == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "Accept": "json",
        "Cookie": "***",
        "X-Custom": "***",
    }


def test_the_client_shows_urls_redacted_as_redact_url_does() -> None:
    http = HttpClient(ClientSettings(auth=Auth("query", api_key_name="Key")), where="c")
    urls = [
        "https://h.io/x?page=2&limit=10",
        "https://u:pw@h.io/x?page=2",
        "https://h.io/x?page=3&access_token=abc&sig=1",
        "https://h.io/x?key=v&q=a",
        "https://h.io/x?api%5Fkey=s3cr3t&q=a%20b",  # an escaped name is judged decoded
        "https://h.io/x?q=a+b&a=%2F",  # escapes in values only
    ]
    for _ in range(2):  # the second time, from the names the client remembers
        assert [http.show(url) for url in urls] == [
            "https://h.io/x?page=2&limit=10",
            "https://u:***@h.io/x?page=2",
            "https://h.io/x?page=3&access_token=***&sig=***",
            "https://h.io/x?key=***&q=a",
            "https://h.io/x?api_key=***&q=a+b",
            "https://h.io/x?q=a+b&a=/",
        ]
        assert [http.show(url) for url in urls] == [redact_url(url, ["Key"]) for url in urls]


async def test_permanent_client_errors_are_not_retried() -> None:
    hits: list[str] = []

    async def loop_forever(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        raise web.HTTPFound("/again")

    async with serve(loop_forever) as base, client() as http:
        with pytest.raises(PermanentError) as caught:
            await http.request("GET", URL(base + "/start"))
    assert str(caught.value) == (
        f"GET {base}/start failed: TooManyRedirects; check the URL, its redirects and its "
        "TLS certificate"
    )
    assert len(hits) == 10  # aiohttp gives up after ten requests, and we never retry
