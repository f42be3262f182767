"""KafkaSink: records published to topics; a batch is durable once every message is."""

from __future__ import annotations

import asyncio
import datetime as dt
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import anyio
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, codec
from aiokafka.producer.message_accumulator import BatchBuilder

from asyncetl.connectors.kafka._client import (
    REQUEST_TIMEOUT_MS,
    KafkaClient,
    bootstrap_list,
)
from asyncetl.connectors.kafka._partitions import Chooser, KeyHashes
from asyncetl.connectors.kafka._security import KafkaSecurity, security_of
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.debezium import DebeziumEncoder
from asyncetl.core.errors import ConfigError, TransientError
from asyncetl.core.interfaces import Problem, Sink
from asyncetl.core.logs import get_logger
from asyncetl.core.settings_check import nonempty, retry_policy

__all__ = ["Compression", "KafkaSink"]

#: Codecs a batch of messages may be compressed with.
Compression: TypeAlias = Literal["none", "gzip", "snappy", "lz4", "zstd"]
_COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
_CODECS: dict[str, Callable[[], bool]] = {
    "gzip": codec.has_gzip,
    "snappy": codec.has_snappy,
    "lz4": codec.has_lz4,
    "zstd": codec.has_zstd,
}
#: Seconds to wait for the broker to confirm every message of one batch.
ACK_TIMEOUT = 30.0
#: Seconds a written batch may wait for the broker's confirmation before the engine
#: asks for it (:meth:`KafkaSink.flush`): how late its checkpoint may be committed.
HOLD = 0.25
#: Bytes of one record batch (aiokafka's 16 KiB default makes a request per few dozen
#: envelopes, each waiting for the broker's answer); below the brokers' default limit
#: on a batch, ``message.max.bytes`` (1 MiB).
BATCH_BYTES = 1_000_000

_Message: TypeAlias = tuple[str, bytes | None, bytes | None]
_log = get_logger("asyncetl.kafka")


class KafkaSink(Sink[Any]):
    """Publishes each record to a topic; a batch is acknowledged once the broker has all.

    JSON records are sent as JSON; :class:`~asyncetl.core.changes.ChangeEvent`
    records as Debezium envelopes (payload only), keyed by the row's key as a
    JSON object (``{"id": 7}``), so that one row's changes stay in order in one
    partition. Messages go out with ``acks=all``. :meth:`write` queues a batch's
    messages and returns once the batches before it are confirmed, so that the
    next batch is encoded while the broker takes this one; the engine
    acknowledges a batch only when every message of it is confirmed (at the
    next write, or at :meth:`flush`, at most :data:`HOLD` seconds later). After
    a failure, the unconfirmed batches are sent again whole, in order
    (at-least-once: a replay may duplicate messages).

    ``topic`` may name record fields in braces, e.g. ``events.{kind}``; for
    change events it may name ``{prefix}``, ``{schema}`` and ``{table}``
    (Debezium's ``{prefix}.{schema}.{table}`` is the default for them). A record
    that lacks a named field, or that is not JSON, is refused (the sink's
    failure policy applies).

    :param bootstrap_servers: ``host:port`` brokers, a list or comma-separated.
    :param topic: the topic, or a template of one.
    :param key_fields: record fields whose values, as a JSON object, are the message key
        (none: no key); change events are always keyed by their row key.
    :param headers: headers sent with every message.
    :param topic_prefix: the ``{prefix}`` of change-event topics; also ``source.name``
        in Debezium envelopes, as in Debezium.
    :param database: ``source.db`` in Debezium envelopes: the database the changes come from.
    :param with_schema: write change events' keys and values as Debezium's JSON converter
        does with ``schemas.enable`` (a ``schema`` section beside each ``payload``), for
        consumers that need it, such as the JDBC sink connector.
    :param tombstones: after each deleted row, send its key with no value, as Debezium
        does, so that a compacted topic forgets the row.
    :param compression: ``none``, ``gzip``, ``snappy``, ``lz4`` or ``zstd`` (the last
        three need their Python codec installed).
    :param linger: seconds the producer waits to fill a request.
    :param name: the sink's name.
    :param security: SASL and TLS settings (a :class:`KafkaSecurity`, or a spec's
        ``security`` table of the same names); plain connections when none.
    :param retries: retries of a failed batch after the first try.
    :param retry_max_time: seconds after which a failed batch is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        bootstrap_servers: list[str] | str,
        topic: str = "{prefix}.{schema}.{table}",
        *,
        key_fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
        topic_prefix: str = "asyncetl",
        database: str = "",
        with_schema: bool = False,
        tombstones: bool = True,
        compression: Compression = "none",
        linger: float = 0.005,
        name: str = "kafka_sink",
        security: KafkaSecurity | Mapping[str, object] | None = None,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"KafkaSink {name!r}"
        self.topic = _Template(nonempty(topic, where, "topic"), where)
        self.key_fields = tuple(key_fields or ())
        for field in self.key_fields:
            nonempty(field, where, "key_fields")
        self.headers = [(k, v.encode()) for k, v in (headers or {}).items()]
        self.topic_prefix = nonempty(topic_prefix, where, "topic_prefix")
        if not isinstance(database, str):
            raise ConfigError(
                f"must be a database name, not {database!r}", where=where, key="database"
            )
        self.database = database
        if not isinstance(with_schema, bool):
            raise ConfigError(
                f"must be true or false, not {with_schema!r}", where=where, key="with_schema"
            )
        self.with_schema = with_schema
        self.tombstones = tombstones
        if compression not in _COMPRESSIONS:
            raise ConfigError(
                f"expected one of {', '.join(_COMPRESSIONS)}, got {compression!r}",
                where=where,
                key="compression",
            )
        if compression != "none" and not _CODECS[compression]():
            raise ConfigError(
                f"compression {compression!r} needs its Python codec, which is not installed; "
                f"install it or choose gzip",
                where=where,
                key="compression",
            )
        self.compression = compression
        if isinstance(linger, bool) or not isinstance(linger, int | float) or not 0 <= linger < 60:
            raise ConfigError(
                f"must be a number of seconds from 0 to 60, not {linger!r}",
                where=where,
                key="linger",
            )
        self.linger = float(linger)
        self.client = KafkaClient(
            bootstrap_list(bootstrap_servers, where),
            where=where,
            policy=retry_policy(retries, retry_max_time, where),
            security=security_of(security, where),
        )
        self._producer: AIOKafkaProducer | None = None
        self._debezium = DebeziumEncoder(
            name=self.topic_prefix, database=database, with_schema=with_schema
        )
        self._topics: dict[tuple[str, str], str] = {}  # (schema, table) → topic
        self._turn = 0  # picks the partition of a batch's keyless messages
        self._hashes = KeyHashes()
        self._unconfirmed: list[_Unconfirmed] = []  # written, oldest first
        self._deadline: float | None = None

    async def open(self) -> None:
        """Connect.

        :raises TransientError: no broker answered through every retry.
        """
        self._producer = await self.client.call("connect", self._start_producer)

    async def check(self) -> list[Problem]:
        """Whether a broker answers (once) and a fixed topic exists; sends and creates nothing."""
        # A consumer without a group lists the topics; a producer asking for one topic's
        # metadata would have a broker that auto-creates topics create it.
        try:
            settings = await self.client.connection_settings()
        except ConfigError as exc:
            return [Problem("security", str(exc))]
        consumer = AIOKafkaConsumer(
            **settings, bootstrap_servers=self.client.servers, request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        fixed = [] if self.topic.fields else [self.topic.text]  # routed topics are per record
        return await self.client.missing_topics(consumer, fixed, "topic")

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with anyio.move_on_after(10, shield=True):
                await producer.stop()

    async def write(self, batch: Batch[Any]) -> Sequence[Reject]:
        """Queue the batch's messages, and await the broker's confirmation of the batches
        written before it: the engine acknowledges a batch only once :meth:`flush` or the
        next write has seen every message of it confirmed (see :meth:`flush_deadline`).

        :returns: the records that could not be encoded or routed.
        :raises TransientError: the brokers stayed unreachable through every retry.
        :raises PermanentError: the broker refused a message.
        """
        rejects: list[Reject] = []
        held = _Unconfirmed(batch.records)
        self._unconfirmed.append(held)
        if self._deadline is None:
            self._deadline = anyio.current_time() + HOLD
        try:
            with self.client.errors(f"send a batch of {len(batch.records)} records"):
                # Encoding this batch while the broker takes the last one's record batches
                # keeps both busy.
                await self._queue_all(self._encoding(batch.records, rejects), held.answers)
                await self._confirm(self._unconfirmed[:-1])
        except TransientError as exc:
            rejects = []  # of every record: the failed try may have stopped before some
            for _ in self._encoding(batch.records, rejects):
                pass
            await self._send_again(exc)
            return rejects
        del self._unconfirmed[:-1]
        return rejects

    def flush_deadline(self) -> float | None:
        """When the batches written but not yet confirmed must be, or ``None`` for none."""
        return self._deadline if self._unconfirmed else None

    async def flush(self) -> None:
        """Await the broker's confirmation of every batch written.

        :raises TransientError: the brokers stayed unreachable through every retry.
        :raises PermanentError: the broker refused a message.
        """
        try:
            with self.client.errors(f"confirm {len(self._unconfirmed)} batches"):
                await self._confirm(self._unconfirmed)
        except TransientError as exc:
            await self._send_again(exc)
        self._unconfirmed.clear()
        self._deadline = None

    async def _send_again(self, failure: TransientError) -> None:
        """Send every unconfirmed batch again, in order, each whole and confirmed: after a
        failure nothing says which of their messages arrived (at-least-once)."""
        unconfirmed = self._unconfirmed
        for held in unconfirmed:
            held.cancel()
        _log.warning("retrying", what="send unconfirmed batches again", error=str(failure))

        async def again() -> None:
            for held in unconfirmed:
                held.answers = []
                # Encoded again from the records (so the batch's bytes are not kept), its
                # refused records are refused again and left out again.
                await self._queue_all(self._encoding(held.records, []), held.answers)
                await self._confirm([held])

        await self.client.call(f"send {len(unconfirmed)} batches again", again)
        self._unconfirmed = []
        self._deadline = None

    def _encoding(self, records: Sequence[Any], rejects: list[Reject]) -> Iterator[_Message]:
        now = dt.datetime.now(dt.UTC)
        tombstones = self.tombstones
        for record in records:
            change = isinstance(record, ChangeEvent)
            try:
                if change:  # the common case, one message without a list
                    message = self._encode_change(record, now)
                else:
                    messages = self._encode(record, now)
            except (TypeError, ValueError) as exc:
                rejects.append(Reject(record, exc))
                continue
            if not change:
                yield from messages
                continue
            yield message
            if record.op == "d" and tombstones and message[1] is not None:
                # After a deleted row, its key without a value, as Debezium writes it, so
                # that a compacted topic forgets the row.
                yield message[0], message[1], None

    async def _queue_all(
        self, messages: Iterable[_Message], answers: list[asyncio.Future[object]]
    ) -> None:
        """Queue the messages as record batches of up to :data:`BATCH_BYTES` per partition,
        each once full; the futures of the broker's answers go to ``answers``."""
        producer = self._open_producer()
        chooser = Chooser(self._partitions_of, self._turn, self._hashes)
        self._turn += 1
        filling: dict[tuple[str, int], BatchBuilder] = {}
        headers = self.headers
        # A batch's messages mostly go to one topic and, when keyless or on one partition,
        # to one partition: the last ones are kept, so that most messages look nothing up.
        last_topic, partitions = "", [0]
        last: tuple[str, int] = ("", -1)
        builder: BatchBuilder | None = None
        with anyio.fail_after(ACK_TIMEOUT):
            for topic, key, value in messages:
                if topic != last_topic:
                    last_topic, partitions = topic, await chooser.partitions(topic)
                at = chooser.choose(partitions, key)
                if builder is None or at != last[1] or topic != last[0]:
                    last = (topic, at)
                    builder = filling.get(last)
                    if builder is None:
                        builder = filling[last] = producer.create_batch()
                appended = builder.append(key=key, value=value, timestamp=None, headers=headers)
                if appended is not None:
                    continue
                answers.append(await _queue(producer, builder, topic, at))
                builder = filling[last] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)
            for (topic, at), full in filling.items():
                answers.append(await _queue(producer, full, topic, at))

    async def _confirm(self, batches: Sequence[_Unconfirmed]) -> None:
        answers = [answer for held in batches for answer in held.answers]
        if answers:
            with anyio.fail_after(ACK_TIMEOUT):
                await asyncio.gather(*answers)

    async def _partitions_of(self, topic: str) -> list[int]:
        return sorted(await self._open_producer().partitions_for(topic))

    def _encode(self, record: object, now: dt.datetime) -> list[_Message]:
        if not isinstance(record, Mapping):
            raise TypeError(
                f"{self.where} sends JSON objects and change events, not "
                f"{type(record).__name__}; map records to objects first"
            )
        topic = self.topic.render(record)
        key = None
        if self.key_fields:
            key = orjson.dumps(
                {field: self._field(record, field, "key") for field in self.key_fields}
            )
        return [(topic, key, orjson.dumps(record))]

    def _encode_change(self, event: ChangeEvent, now: dt.datetime) -> _Message:
        topic = self._topics.get((event.schema, event.table))
        if topic is None:
            fields = {"prefix": self.topic_prefix, "schema": event.schema, "table": event.table}
            topic = self._topics[(event.schema, event.table)] = self.topic.render(fields)
        row_key = _row_key(event)
        key = None if row_key is None else self._debezium.key(event, row_key)
        return topic, key, self._debezium.envelope(event, now)

    def _field(self, record: Mapping[str, Any], field: str, what: str) -> Any:
        if field not in record:
            raise ValueError(
                f"record has no {field!r} field for the message {what} of {self.where}; "
                "fix the record or the sink's settings"
            )
        return record[field]

    def _open_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.where} is not open")
        return self._producer

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = self._new_producer(await self.client.connection_settings())
        try:
            await producer.start()
        except BaseException:
            with anyio.move_on_after(5, shield=True):
                await producer.stop()
            raise
        return producer

    def _new_producer(self, settings: dict[str, Any]) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **settings,
            bootstrap_servers=self.client.servers,
            client_id=f"asyncetl-{self.name}",
            acks="all",
            compression_type=None if self.compression == "none" else self.compression,
            linger_ms=int(self.linger * 1000),
            max_batch_size=BATCH_BYTES,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )


async def _queue(
    producer: AIOKafkaProducer, builder: BatchBuilder, topic: str, partition: int
) -> asyncio.Future[object]:
    """Queue a filled record batch; the future of the broker's answer to it."""
    builder.close()  # a closed batch goes out at once: no linger for more messages
    future: asyncio.Future[object] = await producer.send_batch(builder, topic, partition=partition)
    # Let the producer's sender put it on the wire before the caller encodes on.
    await anyio.lowlevel.checkpoint()
    return future


class _Unconfirmed:
    """A batch's records, queued as messages, and the futures of the broker's answers."""

    __slots__ = ("answers", "records")

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records  # to send the batch again
        self.answers: list[asyncio.Future[object]] = []

    def cancel(self) -> None:
        """Cancel the answers still awaited, and take the failures of the others (which
        asyncio would otherwise report as never retrieved)."""
        for answer in self.answers:
            if not answer.cancel() and not answer.cancelled():
                answer.exception()


def _row_key(event: ChangeEvent) -> Mapping[str, object] | None:
    if event.key:
        return event.key
    if not event.key_columns:
        return None
    row = event.after if event.op != "d" else event.before
    row = row or event.before or {}
    return {column: row.get(column) for column in event.key_columns}


class _Template:
    """A topic name with ``{field}`` placeholders filled from each record."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigError(
                f"cannot read topic template {text!r}: {exc}", where=where, key="topic"
            ) from exc
        self.fields = tuple(name for _, name, _, _ in parsed if name is not None)
        if any(not name or not name.isidentifier() for name in self.fields):
            raise ConfigError(
                f"topic template {text!r} may name fields only, as in 'events.{{kind}}'",
                where=where,
                key="topic",
            )

    def render(self, record: Mapping[str, Any]) -> str:
        if not self.fields:
            return self.text
        values = {}
        for name in self.fields:
            value = record.get(name)
            if value is None or value == "":
                raise ValueError(
                    f"record has no {name!r} value for topic {self.text!r}; fix the record "
                    "or the topic template"
                )
            values[name] = value
        return self.text.format_map(values)
