"""JetStreamSink: publish records to JetStream, durable once every publish is acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence

import anyio
import nats.js.errors as jerr
import orjson
from nats.js.api import PubAck

from asyncetl.connectors.nats._client import NatsClient, server_list
from asyncetl.core.batch import Batch, JsonValue, Position, Reject
from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import Problem, Sink
from asyncetl.core.logs import get_logger
from asyncetl.core.settings_check import nonempty, retry_policy

__all__ = ["JetStreamSink", "message_id"]

#: Seconds to wait for every publish acknowledgement of one batch.
ACK_TIMEOUT = 10.0
_MSG_ID = "Nats-Msg-Id"
_log = get_logger("asyncetl.nats")

_Message = tuple[bytes, dict[str, str]]


def message_id(sink: str, subject: str, key: Position, index: int | None = None) -> str:
    """The ``Nats-Msg-Id`` of a record: a digest of the sink, subject and ``key``.

    ``key`` is the batch's source position (with the record's ``index`` in the
    batch) or the record's own id; a replay produces the same id, which
    JetStream drops within its duplicate window.
    """
    material = orjson.dumps([sink, subject, key, index], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()


class JetStreamSink(Sink[JsonValue]):
    """Publishes each record as JSON to ``subject``; a batch is durable once all are acked.

    Records are published in batch order on one connection and the sink then
    awaits every publish acknowledgement (JetStream has stored the message),
    retrying the whole batch on a transient failure.

    With ``dedupe`` each message carries a ``Nats-Msg-Id`` header, and JetStream
    drops a message whose id it saw within the stream's duplicate window
    (``duplicate_window``, two minutes by default). The id is derived from:

    - ``id_field``, when set: the record's own id — a replay is dropped whatever
      its batch boundaries;
    - otherwise the batch's source position and the record's index in the
      batch — a replay is dropped when it is cut into the same batches (the
      same end position and records), which holds for a deterministic source
      whose batches fill up, not in general. Otherwise it is at-least-once.

    Ids include the sink's name and the subject: pipelines publishing to one
    stream need distinct sink names, or their positions could collide. Without
    ``dedupe`` delivery is at-least-once.

    :param servers: ``nats://[user:password@]host:port`` URLs, a list or a
        comma-separated string.
    :param subject: the subject to publish to; a stream must capture it.
    :param name: the sink's name; part of every message id.
    :param dedupe: send ``Nats-Msg-Id`` headers.
    :param id_field: the record field identifying a record, for the message id.
    :param retries: retries of a failed batch after the first try.
    :param retry_max_time: seconds after which a failed batch is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        servers: list[str] | str,
        subject: str,
        *,
        name: str = "nats_sink",
        dedupe: bool = True,
        id_field: str | None = None,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"JetStreamSink {name!r}"
        if not isinstance(subject, str) or not subject or any(c in subject for c in " *>"):
            raise ConfigError(
                f"must be a literal subject without spaces or wildcards, not {subject!r}",
                where=where,
                key="subject",
            )
        self.subject = subject
        self.dedupe = dedupe
        self.id_field = None if id_field is None else nonempty(id_field, where, "id_field")
        self.client = NatsClient(
            server_list(servers, where),
            where=where,
            policy=retry_policy(retries, retry_max_time, where),
        )
        #: Messages JetStream reported as duplicates (dropped) since construction.
        self.duplicates = 0

    async def open(self) -> None:
        """Connect.

        :raises TransientError: NATS stayed unreachable through every retry.
        """
        await self.client.open()

    async def check(self) -> list[Problem]:
        """Whether NATS answers (once) and a stream captures the subject; publishes nothing."""
        what = f"stream lookup for {self.subject}"
        return await self.client.check_once(what, self._stream_problems)

    async def _stream_problems(self) -> list[Problem]:
        try:
            await self.client.js.find_stream_name_by_subject(self.subject)
        except jerr.NotFoundError:
            message = (
                f"no JetStream stream on NATS at {self.client.endpoint} captures subject "
                f"{self.subject!r}"
            )
            return [Problem("subject", message)]
        return []

    async def aclose(self) -> None:
        await self.client.close()

    async def write(self, batch: Batch[JsonValue]) -> Sequence[Reject]:
        """Publish the batch and await every acknowledgement; return unencodable records.

        :raises TransientError: NATS stayed unreachable through every retry.
        :raises PermanentError: no stream captures the subject, or JetStream refused.
        """
        messages: list[_Message] = []
        rejects: list[Reject] = []
        for index, record in enumerate(batch.records):
            try:
                messages.append(self._encode(record, batch.position, index))
            except (TypeError, ValueError) as exc:
                rejects.append(Reject(record, exc))
        if messages:
            acks = await self.client.call(
                f"publish to {self.subject}", lambda: self._publish(messages)
            )
            dropped = sum(1 for ack in acks if ack.duplicate)
            if dropped:
                self.duplicates += dropped
                _log.info("duplicates dropped", sink=self.name, messages=dropped)
        return rejects

    async def _publish(self, messages: Sequence[_Message]) -> list[PubAck]:
        js = self.client.js
        pending: list[asyncio.Future[PubAck]] = []
        try:
            with anyio.fail_after(ACK_TIMEOUT):
                for payload, headers in messages:
                    pending.append(await js.publish_async(self.subject, payload, headers=headers))
                return [await future for future in pending]
        finally:
            for future in pending:
                future.cancel()  # no-op for the done ones; frees nats-py's slots otherwise

    def _encode(self, record: JsonValue, position: Position, index: int) -> _Message:
        payload = orjson.dumps(record)
        if not self.dedupe:
            return payload, {}
        if self.id_field is None:
            return payload, {_MSG_ID: message_id(self.name, self.subject, position, index)}
        value = record.get(self.id_field) if isinstance(record, Mapping) else None
        if value is None:
            raise ValueError(
                f"record has no {self.id_field!r} value for {self.where} to de-duplicate by; "
                "fix the record or the id_field setting"
            )
        return payload, {_MSG_ID: message_id(self.name, self.subject, value)}
