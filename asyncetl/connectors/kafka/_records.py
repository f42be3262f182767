"""What a Kafka message becomes: a JSON value, a raw message, or a change event.

Decoding is per format (``json``, ``raw``, ``debezium``); a message that does
not decode becomes a reject carrying :func:`letter` of the message, a JSON
document from which :func:`from_letter` decodes it again for replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

import orjson

from asyncetl.connectors.kafka._debezium import column_types, typed_payload
from asyncetl.core.batch import JsonValue
from asyncetl.core.changes import ChangeEvent, decode_debezium
from asyncetl.core.errors import ConfigError

__all__ = [
    "Format",
    "KafkaMessage",
    "decode",
    "from_letter",
    "letter",
]

#: How message values are decoded.
Format: TypeAlias = Literal["json", "raw", "debezium"]
FORMATS: tuple[Format, ...] = ("json", "raw", "debezium")


class Consumed(Protocol):
    """The parts of aiokafka's ``ConsumerRecord`` that decoding reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """A message as the broker holds it: what the ``raw`` format yields.

    :param timestamp: milliseconds since the epoch.
    :param headers: ``(name, value)`` pairs in the order they were sent.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def decode(message: Consumed, format: Format) -> object | None:
    """The record a message becomes; ``None`` for a Debezium tombstone (nothing to apply).

    :raises ValueError: the value is not what ``format`` expects (a ConfigError
        for Debezium envelopes, which is a ValueError; a TypeError for a Debezium
        value of the wrong JSON type).
    """
    if format == "raw":
        return KafkaMessage(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.key,
            message.value,
            tuple(message.headers),
        )
    if format == "json":
        if message.value is None:
            raise ValueError("the message has no value (a tombstone), so it is no JSON")
        value: JsonValue = orjson.loads(message.value)
        return value
    return _change(message.key, message.value)


def _change(key: bytes | None, value: bytes | None) -> ChangeEvent | None:
    if value is None:
        return None  # the tombstone Debezium writes after a delete, for log compaction
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ConfigError(f"Debezium message must be a JSON object, not {type(doc).__name__}")
    event = decode_debezium(typed_payload(doc))
    row_key = _debezium_key(key)
    # Kafka's partitions, not LSNs, order these events: events of different partitions
    # interleave out of LSN order, and a sink skipping changes at or below the last LSN
    # it applied would drop some. The source's offsets are what resumes the stream.
    return dataclasses.replace(
        event,
        lsn=None,
        seq=0,
        key=row_key,
        key_columns=tuple(row_key) if row_key else (),
        columns=column_types(doc),
    )


def _debezium_key(key: bytes | None) -> dict[str, object] | None:
    if key is None:
        return None
    doc = orjson.loads(key)
    if isinstance(doc, dict) and "payload" in doc and "schema" in doc:
        doc = doc["payload"]
    if not isinstance(doc, dict):
        raise ConfigError(f"Debezium message key must be a JSON object, not {doc!r}")
    return doc


def letter(message: Consumed) -> dict[str, JsonValue]:
    """The message as plain JSON, for a dead letter; bytes as UTF-8 text with escapes."""
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": _text(message.key),
        "value": _text(message.value),
        "headers": {name: _text(value) for name, value in message.headers},
    }


def _text(data: bytes | None) -> JsonValue:
    return None if data is None else data.decode("utf-8", "backslashreplace")


def from_letter(raw: JsonValue, format: Format) -> object | None:
    """The record that :func:`letter` of a message decodes to, for replay.

    :raises ValueError: ``raw`` is no such letter, or still does not decode.
    """
    if not isinstance(raw, Mapping) or not {"topic", "partition", "offset", "value"} <= raw.keys():
        raise ValueError(
            f"expected a Kafka message with topic, partition, offset and value, got {raw!r}"
        )
    headers = raw.get("headers") or {}
    assert isinstance(headers, Mapping)
    message = KafkaMessage(
        topic=str(raw["topic"]),
        partition=int(str(raw["partition"])),
        offset=int(str(raw["offset"])),
        timestamp=0,
        key=_bytes(raw.get("key")),
        value=_bytes(raw["value"]),
        headers=tuple((str(k), _bytes(v) or b"") for k, v in headers.items()),
    )
    return decode(message, format)


def _bytes(text: object) -> bytes | None:
    return None if text is None else str(text).encode()
