"""Redis connector failures: unreachable servers, redaction, bad settings."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from asyncetl import ConfigError, ListSink, Pipeline, TransientError
from asyncetl.connectors.redis import RedisStreamSink, RedisStreamSource, endpoint, redact_url

pytestmark = pytest.mark.anyio

SECRET_URL = "redis://etl:s3cr3t-pw@127.0.0.1:1/0"


async def test_an_unreachable_server_is_retried_then_named_by_host_and_port_only() -> None:
    src = RedisStreamSource(SECRET_URL, "orders", group="g", retries=2, retry_max_time=5)
    with capture_logs() as logs, pytest.raises(TransientError) as caught:
        await Pipeline("p", src, ListSink()).run()

    message = str(caught.value)
    assert message.startswith(
        "Redis at 127.0.0.1:1 is unreachable or dropped the connection during PING "
        "(ConnectionError: Error 111 connecting to 127.0.0.1:1."
    )
    assert message.endswith("; check that the server is running and that the url is right")
    retries = [log for log in logs if log["event"] == "retrying"]
    assert [log["call"] for log in retries] == ["PING on 127.0.0.1:1"] * 2
    assert "s3cr3t" not in message + repr(logs)


async def test_the_sink_reports_an_unreachable_server_the_same_way() -> None:
    sink = RedisStreamSink(SECRET_URL, "out", retries=0)
    with pytest.raises(TransientError, match=r"^Redis at 127\.0\.0\.1:1 is unreachable") as caught:
        await sink.open()
    await sink.aclose()
    assert "s3cr3t" not in str(caught.value)


def test_urls_are_shown_without_passwords() -> None:
    assert redact_url(SECRET_URL) == "redis://etl:***@127.0.0.1:1/0"
    assert redact_url("redis://:pw@h:6380") == "redis://:***@h:6380"
    assert redact_url("redis://h/0?password=pw&db=1") == "redis://h/0?password=***&db=1"
    assert redact_url("redis://h:6379") == "redis://h:6379"
    assert endpoint(SECRET_URL) == "127.0.0.1:1"
    assert endpoint("rediss://cache.internal") == "cache.internal:6379"
    assert endpoint("unix:///run/redis.sock") == "/run/redis.sock"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "RedisStreamSource 'redis': count: must be a positive integer, not 0"),
        ({"block_ms": 0}, "RedisStreamSource 'redis': block_ms: must be a positive integer, not 0"),
        (
            {"retries": -1},
            "RedisStreamSource 'redis': retries: must be a non-negative integer, not -1",
        ),
        ({"group": ""}, "RedisStreamSource 'redis': group: must be a non-empty string, not ''"),
        (
            {"retry_max_time": 0},
            "RedisStreamSource 'redis': retry_max_time: must be a positive number of seconds, "
            "not 0",
        ),
        (
            {"retry_max_time": "soon"},
            "RedisStreamSource 'redis': retry_max_time: must be a number, not 'soon'",
        ),
    ],
)
def test_bad_source_settings_are_config_errors(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"group": "g", **options}
    with pytest.raises(ConfigError) as caught:
        RedisStreamSource("redis://127.0.0.1:6379", "s", **settings)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_a_url_that_is_not_redis_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStreamSink("http://u:pw@h:1", "s")
    assert str(caught.value) == (
        "RedisStreamSink 'redis_sink': url: expected a redis://, rediss:// or unix:// URL, "
        "got 'http://u:***@h:1'"
    )


def test_the_default_consumer_is_hostname_and_pid() -> None:
    import os
    import socket

    src = RedisStreamSource("redis://127.0.0.1:6379", "s", group="g")
    assert src.consumer == f"{socket.gethostname()}-{os.getpid()}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redis:/etl:s3cr3t@host",
            "expected a redis://, rediss:// or unix:// URL, got 'redis:/etl:***@host'",
        ),
        (
            "rdis://etl:s3cr3t@host",
            "expected a redis://, rediss:// or unix:// URL, got 'rdis://etl:***@host'",
        ),
        (
            "redis://etl:s3#cr3t@host:6379/0",
            "cannot read 'redis://etl:***@host:6379/0': a password must write '@', '/', '?' and '#' as %40, %2F, %3F and %23",
        ),
        (
            "redis://etl:s3/cr3t@host",
            "cannot read 'redis://etl:***@host': a password must write '@', '/', '?' and '#' as %40, %2F, %3F and %23",
        ),
        (
            "redis://etl:63?s3cr3t@host",
            "cannot read 'redis://etl:***@host': a password must write '@', '/', '?' and '#' as %40, %2F, %3F and %23",
        ),
    ],
)
def test_a_mistyped_url_is_a_config_error_without_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStreamSink(url, "s")
    assert str(caught.value) == f"RedisStreamSink 'redis_sink': url: {message}"
