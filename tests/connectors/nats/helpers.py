"""Helpers for the NATS JetStream tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import orjson
from nats.js import JetStreamContext

from asyncetl import DeadLetterStore, Pipeline, Sink
from asyncetl.connectors.nats import JetStreamRecord, JetStreamSource
from tests.core.helpers import FailingSink as BaseFailingSink

NATS_URL = os.environ.get("ASYNCETL_TEST_NATS_URL", "nats://127.0.0.1:4222")
DURABLE = "etl"


@dataclass(frozen=True)
class Stream:
    """A throwaway JetStream stream capturing ``<prefix>.>``."""

    name: str
    prefix: str
    js: JetStreamContext

    @property
    def subject(self) -> str:
        return f"{self.prefix}.orders"

    async def publish(self, n: int, start: int = 0) -> list[int]:
        """Publish ``{"n": i}`` for i in ``start..start+n``; return their stream sequences."""
        seqs = []
        for i in range(start, start + n):
            ack = await self.js.publish(self.subject, orjson.dumps({"n": i}))
            seqs.append(ack.seq)
        return seqs

    def expected(self, seqs: Sequence[int], start: int = 0) -> list[JetStreamRecord]:
        return [
            {"subject": self.subject, "data": {"n": i}, "headers": {}, "seq": seq}
            for i, seq in enumerate(seqs, start)
        ]

    async def ack_pending(self, durable: str = DURABLE) -> tuple[int, int]:
        """(messages delivered and not acknowledged, messages not yet delivered)."""
        info = await self.js.consumer_info(self.name, durable)
        return info.num_ack_pending, info.num_pending or 0

    async def settled(self, expected: tuple[int, int], durable: str = DURABLE) -> tuple[int, int]:
        """:meth:`ack_pending` once it equals ``expected`` (or after two seconds).

        JetStream applies acks asynchronously: an ack the client has flushed shows in
        the consumer's counts a moment later.
        """
        with anyio.move_on_after(2):
            while await self.ack_pending(durable) != expected:
                await anyio.sleep(0.02)
        return await self.ack_pending(durable)


def source(
    stream: Stream, *, batch: int = 10, ack_wait: float = 30.0, durable: str = DURABLE
) -> JetStreamSource:
    return JetStreamSource(
        NATS_URL,
        stream.name,
        durable=durable,
        batch=batch,
        fetch_timeout=0.1,
        ack_wait=ack_wait,
    )


def pipeline(
    src: JetStreamSource,
    sink: Sink[JetStreamRecord],
    *,
    dead_letters: DeadLetterStore | None = None,
    stop_when_idle: float = 0.3,
) -> Pipeline:
    return Pipeline(
        "nats_test",
        src,
        sink,
        dead_letters=dead_letters,
        source_errors="fail" if dead_letters is None else "dead_letter",
        max_batch_size=10,
        max_batch_age=0.05,
        stop_when_idle=stop_when_idle,
    )


#: A sink of JetStreamRecords failing from its ``fail_at``-th write on.
FailingSink = BaseFailingSink[JetStreamRecord]
