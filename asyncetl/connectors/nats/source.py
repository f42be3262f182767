"""JetStreamSource: a JetStream stream read through a durable pull consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeAlias

import anyio
import nats.errors as nerr
import nats.js.errors as jerr
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from asyncetl.connectors.nats._client import (
    NatsClient,
    server_list,
)
from asyncetl.core.acks import AckLedger
from asyncetl.core.batch import Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import PermanentError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import Lag
from asyncetl.core.settings_check import nonempty, positive_int, positive_seconds, retry_policy

__all__ = ["JetStreamRecord", "JetStreamSource"]

#: ``{"subject": str, "data": JSON value or text, "headers": {str: str}, "seq": int}``
JetStreamRecord: TypeAlias = dict[str, JsonValue]

_STREAM_NOT_FOUND = 10059
_CONSUMER_NOT_FOUND = 10014
_log = get_logger("asyncetl.nats")


class JetStreamSource(Source[JetStreamRecord]):
    """Messages of a JetStream stream, pulled through a durable consumer.

    Records are ``{"subject", "data", "headers", "seq"}``: ``data`` is the
    payload decoded as JSON when it is JSON and as UTF-8 text otherwise, ``seq``
    the message's stream sequence. A payload that is neither becomes a reject
    (its text shown with backslash escapes), so the pipeline's ``source_errors``
    policy applies.

    Messages are acknowledged one by one (explicit acks) only in
    :meth:`acknowledge`, which the engine calls after the checkpoint commit, and
    exactly the messages of the committed batches are acknowledged; the acks are
    flushed to the server before it returns, and JetStream applies them a moment
    later. JetStream redelivers a message not acknowledged within ``ack_wait``,
    so a crash replays and never skips (at-least-once). Closing after a failed
    run naks the unacknowledged messages, so they are redelivered at once rather
    than after ``ack_wait`` (best effort; it waits up to ``fetch_timeout`` for
    this worker's last pull request to expire first). The
    consumer on the server is what resumes the stream: the position (the stream
    sequence of the last message handed out) is informational, and the ``after``
    argument of :meth:`read` is not used.

    Several workers bound to the same ``durable`` split the stream between them.

    :param servers: ``nats://[user:password@]host:port`` URLs, a list or a
        comma-separated string.
    :param stream: the JetStream stream; it must exist.
    :param durable: the durable consumer's name.
    :param subject: a filter subject for a newly created consumer (default: all).
    :param name: the source's name in checkpoints.
    :param create_consumer: create the consumer when missing, with explicit acks,
        ``ack_wait``, delivery of the whole stream and no limit on pending acks
        (the pipeline's queues bound what is in flight).
    :param batch: messages asked per pull (at most the pipeline's batch size).
    :param fetch_timeout: seconds one pull waits for messages.
    :param ack_wait: seconds after which JetStream redelivers an unacknowledged
        message; keep it above the time a message spends in the pipeline.
    :param retries: retries of a failed request after the first try.
    :param retry_max_time: seconds after which a failed request is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        servers: list[str] | str,
        stream: str,
        *,
        durable: str,
        subject: str | None = None,
        name: str = "nats",
        create_consumer: bool = True,
        batch: int = 1000,
        fetch_timeout: float = 1.0,
        ack_wait: float = 60.0,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"JetStreamSource {name!r}"
        self.stream = nonempty(stream, where, "stream")
        self.durable = nonempty(durable, where, "durable")
        self.subject = None if subject is None else nonempty(subject, where, "subject")
        self.create_consumer = create_consumer
        self.batch = positive_int(batch, where, "batch")
        self.fetch_timeout = positive_seconds(fetch_timeout, where, "fetch_timeout")
        self.ack_wait = positive_seconds(ack_wait, where, "ack_wait")
        self.client = NatsClient(
            server_list(servers, where),
            where=where,
            policy=retry_policy(retries, retry_max_time, where),
        )
        self._sub: JetStreamContext.PullSubscription | None = None
        self._ledger: AckLedger[int, Msg] = AckLedger()
        self._pull_expires = 0.0  # when the last pull request expires on the server
        self._num_pending: int | None = None  # messages the consumer has yet to deliver

    @property
    def outstanding(self) -> int:
        """Messages handed out in this run and not yet acknowledged."""
        return len(self._ledger)

    async def open(self) -> None:
        """Connect, create the consumer when missing, and bind to it.

        :raises PermanentError: the stream is missing, or the consumer is and
            ``create_consumer`` is off.
        :raises TransientError: NATS stayed unreachable through every retry.
        """
        await self.client.open()
        what = f"consumer {self.stream}/{self.durable}"
        if await self.client.call(f"info of {what}", self._consumer_info) is None:
            if not self.create_consumer:
                raise PermanentError(
                    f"durable consumer {self.durable!r} of stream {self.stream!r} does not exist "
                    f"on NATS at {self.client.endpoint}; create it or set create_consumer = true"
                )
            await self.client.call(f"create {what}", self._add_consumer)
        js = self.client.js
        self._sub = await self.client.call(
            f"bind to {what}", lambda: js.pull_subscribe_bind(self.durable, self.stream)
        )

    async def check(self) -> list[Problem]:
        """Whether NATS answers (once), the stream exists, and the durable consumer does
        unless ``create_consumer`` would create it; creates nothing."""
        what = f"info of consumer {self.stream}/{self.durable}"
        return await self.client.check_once(what, self._consumer_problems)

    async def _consumer_problems(self) -> list[Problem]:
        try:
            await self.client.js.consumer_info(self.stream, self.durable)
        except jerr.NotFoundError as exc:
            at = f"on NATS at {self.client.endpoint}"
            if exc.err_code == _STREAM_NOT_FOUND:
                return [Problem("stream", f"JetStream stream {self.stream!r} does not exist {at}")]
            if exc.err_code != _CONSUMER_NOT_FOUND:
                raise
            if not self.create_consumer:
                message = (
                    f"durable consumer {self.durable!r} of stream {self.stream!r} does not "
                    f"exist {at} and create_consumer = false"
                )
                return [Problem("durable", message)]
        return []

    async def aclose(self) -> None:
        """Unsubscribe, nak what was handed out but not acknowledged, and disconnect."""
        leftovers = self._ledger.clear()
        sub, self._sub = self._sub, None
        try:
            if sub is not None:
                with anyio.move_on_after(3, shield=True):
                    await sub.unsubscribe()
            if leftovers:
                with anyio.move_on_after(self.fetch_timeout + 3, shield=True):
                    # A pull request of ours may still wait on the server; nak-ed messages
                    # would go to it and come back only after ack_wait. Let it expire first.
                    await anyio.sleep(self._pull_expires + 0.25 - anyio.current_time())
                    await self._nak(leftovers)
        except (nerr.Error, OSError) as exc:
            # Best effort: JetStream redelivers them after ack_wait anyway.
            _log.warning("could not nak on close", connector=self.where, error=repr(exc))
        finally:
            await self.client.close()

    async def read(
        self, after: Position, *, max_chunk: int
    ) -> AsyncIterator[Chunk[JetStreamRecord]]:
        """Pull messages for ever; ``after`` is not used (see above)."""
        self._ledger.clear()
        limit = max(1, min(self.batch, max_chunk))
        while True:
            messages = await self.client.call(
                f"fetch from {self.stream}/{self.durable}", lambda: self._fetch(limit)
            )
            chunk = self._chunk(messages)
            if chunk is not None:
                yield chunk

    async def acknowledge(self, position: Position) -> None:
        """Acknowledge exactly the messages of the chunks up to ``position``."""
        messages = self._ledger.take_through(position)
        if messages:
            await self.client.call(
                f"ack to {self.stream}/{self.durable}", lambda: self._ack(messages)
            )

    def decode(self, raw: JsonValue) -> JetStreamRecord:
        """A dead-lettered message back as a record.

        :raises ValueError: ``raw`` lacks the keys subject, data, headers and seq.
        """
        if isinstance(raw, dict) and {"subject", "data", "headers", "seq"} <= raw.keys():
            return dict(raw)
        raise ValueError(f"expected a record with subject, data, headers and seq, got {raw!r}")

    # -- requests ----------------------------------------------------------------

    async def _consumer_info(self) -> ConsumerInfo | None:
        try:
            info: ConsumerInfo = await self.client.js.consumer_info(self.stream, self.durable)
        except jerr.NotFoundError as exc:
            if exc.err_code == _CONSUMER_NOT_FOUND:
                return None
            if exc.err_code == _STREAM_NOT_FOUND:
                raise PermanentError(
                    f"JetStream stream {self.stream!r} does not exist on NATS at "
                    f"{self.client.endpoint}; create it before reading from it"
                ) from exc
            raise
        return info

    async def _add_consumer(self) -> ConsumerInfo:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.subject,
            max_ack_pending=-1,
        )
        return await self.client.js.add_consumer(self.stream, config)

    async def _fetch(self, limit: int) -> list[Msg]:
        if self._sub is None:
            raise RuntimeError(f"{self.where} is not open")
        self._pull_expires = anyio.current_time() + self.fetch_timeout
        try:
            return await self._sub.fetch(limit, timeout=self.fetch_timeout)
        except nerr.TimeoutError:
            if self.client.nc.is_connected:
                return []  # nothing new within fetch_timeout
            raise

    async def _ack(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            if not message.is_acked:  # a retry after a partial failure
                await message.ack()
        await self.client.nc.flush()

    async def _nak(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            if not message.is_acked:
                await message.nak()
        await self.client.nc.flush()

    # -- records -----------------------------------------------------------------

    def upstream_lag(self) -> Sequence[Lag]:
        """Messages the durable consumer had yet to deliver, as the last message fetched said."""
        if self._num_pending is None:
            return []
        return [Lag(float(self._num_pending), "records", self.durable)]

    def _chunk(self, messages: Sequence[Msg]) -> Chunk[JetStreamRecord] | None:
        if messages:
            self._num_pending = messages[-1].metadata.num_pending
        fresh: dict[int, Msg] = {}
        for message in messages:
            seq = message.metadata.sequence.stream
            if seq in self._ledger:  # redelivered while still in flight: ack the latest delivery
                self._ledger.refresh(seq, message)
            else:
                fresh[seq] = message
        if not fresh:
            return None
        records: list[JetStreamRecord] = []
        rejects: list[Reject] = []
        for seq, message in fresh.items():
            try:
                records.append(_record(message, seq, _payload(message.data)))
            except UnicodeDecodeError as exc:
                text = message.data.decode("utf-8", "backslashreplace")
                rejects.append(Reject(_record(message, seq, text), self._bad_text(seq, exc)))
        position = next(reversed(fresh))
        self._ledger.add(position, list(fresh.items()))
        return Chunk(records, position, rejects)

    def _bad_text(self, seq: int, exc: UnicodeDecodeError) -> ValueError:
        error = ValueError(
            f"message {seq} of stream {self.stream!r} is neither JSON nor UTF-8 text "
            f"({exc.reason} at byte {exc.start}); fix the publisher or replay it from the "
            "dead letters"
        )
        error.__cause__ = exc
        return error


def _payload(data: bytes) -> JsonValue:
    """The payload as JSON when it is JSON, else as UTF-8 text.

    :raises UnicodeDecodeError: when it is neither.
    """
    try:
        value: JsonValue = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8")
    return value


def _record(message: Msg, seq: int, data: JsonValue) -> JetStreamRecord:
    headers: dict[str, JsonValue] = dict(message.headers or {})
    return {"subject": message.subject, "data": data, "headers": headers, "seq": seq}
