"""``check()`` of the JetStream source and sink: one try, nothing created or published."""

from __future__ import annotations

import nats.js.errors as jerr
import pytest
from structlog.testing import capture_logs

from asyncetl import Problem
from asyncetl.connectors.nats import JetStreamSink, JetStreamSource
from tests.connectors.nats.helpers import NATS_URL, Stream

pytestmark = pytest.mark.anyio

AT = "on NATS at 127.0.0.1:4222"


async def test_a_ready_stream_has_no_problems_and_gets_no_consumer(stream: Stream) -> None:
    assert await JetStreamSource(NATS_URL, stream.name, durable="etl").check() == []
    assert await JetStreamSink(NATS_URL, stream.subject).check() == []
    with pytest.raises(jerr.NotFoundError):
        await stream.js.consumer_info(stream.name, "etl")
    assert (await stream.js.stream_info(stream.name)).state.messages == 0


async def test_a_missing_stream_consumer_or_subject_is_named_by_its_setting(
    stream: Stream,
) -> None:
    missing = JetStreamSource(NATS_URL, "ASYNCETL_NO_SUCH_STREAM", durable="etl")
    assert await missing.check() == [
        Problem("stream", f"JetStream stream 'ASYNCETL_NO_SUCH_STREAM' does not exist {AT}")
    ]
    source = JetStreamSource(NATS_URL, stream.name, durable="etl", create_consumer=False)
    assert await source.check() == [
        Problem(
            "durable",
            f"durable consumer 'etl' of stream {stream.name!r} does not exist {AT} "
            "and create_consumer = false",
        )
    ]
    assert await JetStreamSink(NATS_URL, "asyncetl_nowhere.orders").check() == [
        Problem("subject", f"no JetStream stream {AT} captures subject 'asyncetl_nowhere.orders'")
    ]


async def test_an_unreachable_server_is_tried_once_and_named_without_the_password() -> None:
    server = "nats://etl:s3cr3t-pw@127.0.0.1:1"
    with capture_logs() as logs:
        problems = await JetStreamSource(server, "ORDERS", durable="etl", retries=5).check()
        problems += await JetStreamSink(server, "orders", retries=5).check()
    unreachable = (
        "NATS at 127.0.0.1:1 is unreachable or did not answer connect in time "
        "(NoServersError: nats: no servers available for connection); check that nats-server "
        "is running with JetStream and that the servers are right"
    )
    assert problems == [Problem("servers", unreachable)] * 2
    assert [log for log in logs if log["event"] == "retrying"] == []
    assert "s3cr3t" not in repr(logs)
