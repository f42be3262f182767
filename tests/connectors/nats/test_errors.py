"""NATS connector failures: unreachable servers, redaction, bad settings."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from asyncetl import ConfigError, ListSink, Pipeline, TransientError
from asyncetl.connectors.nats import JetStreamSink, JetStreamSource, endpoints

pytestmark = pytest.mark.anyio

SECRET_SERVER = "nats://etl:s3cr3t-pw@127.0.0.1:1"


async def test_an_unreachable_server_is_retried_then_named_by_host_and_port_only() -> None:
    src = JetStreamSource(SECRET_SERVER, "ORDERS", durable="etl", retries=2, retry_max_time=5)
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(TransientError) as caught:
        await Pipeline("p", src, ListSink()).run()

    assert str(caught.value) == (
        "NATS at 127.0.0.1:1 is unreachable or did not answer connect in time "
        "(NoServersError: nats: no servers available for connection); check that nats-server is running with JetStream and that the "
        "servers are right"
    )
    retries = [log for log in logs if log["event"] == "retrying"]
    assert [log["call"] for log in retries] == ["connect on 127.0.0.1:1"] * 2
    assert "s3cr3t" not in repr(logs)
    assert time.monotonic() - started < 5


async def test_the_sink_reports_an_unreachable_server_the_same_way() -> None:
    sink = JetStreamSink(f"{SECRET_SERVER}, nats://127.0.0.1:2", "out", retries=0)
    with capture_logs(), pytest.raises(TransientError) as caught:
        await sink.open()
    await sink.aclose()
    assert str(caught.value).startswith(
        "NATS at 127.0.0.1:1, 127.0.0.1:2 is unreachable or did not answer connect in time"
    )


def test_servers_are_shown_as_host_and_port_only() -> None:
    assert endpoints([SECRET_SERVER, "tls://nats.internal", "127.0.0.1:4223"]) == (
        "127.0.0.1:1, nats.internal:4222, 127.0.0.1:4223"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch": 0}, "JetStreamSource 'nats': batch: must be a positive integer, not 0"),
        (
            {"ack_wait": 0},
            "JetStreamSource 'nats': ack_wait: must be a positive number of seconds, not 0",
        ),
        ({"durable": ""}, "JetStreamSource 'nats': durable: must be a non-empty string, not ''"),
        (
            {"servers": " , "},
            "JetStreamSource 'nats': servers: no server given; e.g. nats://127.0.0.1:4222",
        ),
        (
            {"retries": -1},
            "JetStreamSource 'nats': retries: must be a non-negative integer, not -1",
        ),
    ],
)
def test_bad_source_settings_are_config_errors(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"servers": "nats://127.0.0.1:4222", "durable": "d", **options}
    with pytest.raises(ConfigError) as caught:
        JetStreamSource(stream="S", **settings)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_a_sink_subject_with_wildcards_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        JetStreamSink("nats://127.0.0.1:4222", "orders.*")
    assert str(caught.value) == (
        "JetStreamSink 'nats_sink': subject: must be a literal subject without spaces or "
        "wildcards, not 'orders.*'"
    )


@pytest.mark.parametrize(
    ("server", "shown"),
    [
        ("nats://etl:s3cr#3t@127.0.0.1:4222", "nats://etl:***@127.0.0.1:4222"),
        ("nats://etl:s3cr/3t@h", "nats://etl:***@h"),
        ("etl:12?s3cr3t@h:4222", "etl:***@h:4222"),
    ],
)
def test_a_password_with_unescaped_characters_is_a_config_error_without_it(
    server: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        JetStreamSource(servers=server, stream="S", durable="d")
    assert str(caught.value) == (
        f"JetStreamSource 'nats': servers: cannot read {shown!r}: a password must write "
        "'@', '/', '?' and '#' as %40, %2F, %3F and %23"
    )


def test_servers_of_the_wrong_type_are_shown_without_passwords() -> None:
    with pytest.raises(ConfigError) as caught:
        JetStreamSource(servers=[SECRET_SERVER, 7], stream="S", durable="d")  # type: ignore[list-item]
    assert str(caught.value) == (
        "JetStreamSource 'nats': servers: expected a server URL or a list of them, "
        "got ['nats://etl:***@127.0.0.1:1', 7]"
    )
