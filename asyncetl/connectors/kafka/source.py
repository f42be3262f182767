"""KafkaSource: topics read in a consumer group, offsets committed after the checkpoint."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import aiokafka.errors as kerr
import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from asyncetl.connectors.kafka._client import (
    REQUEST_TIMEOUT_MS,
    KafkaClient,
    bootstrap_list,
)
from asyncetl.connectors.kafka._records import FORMATS, Format, decode, from_letter, letter
from asyncetl.connectors.kafka._security import KafkaSecurity, security_of
from asyncetl.core.batch import Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import Lag
from asyncetl.core.settings_check import nonempty, positive_seconds, retry_policy

__all__ = ["KafkaSource", "Start"]

#: Where partitions start that the resumed position does not name.
Start: TypeAlias = Literal["committed", "earliest", "latest"]
_STARTS: tuple[Start, ...] = ("committed", "earliest", "latest")

Offsets: TypeAlias = dict[TopicPartition, int]
_log = get_logger("asyncetl.kafka")


class KafkaSource(Source[Any]):
    """Messages of Kafka topics, read as one member of a consumer group.

    Records depend on ``format``: ``json`` yields each message's value decoded
    as JSON; ``raw`` yields :class:`KafkaMessage` (key, value and headers as
    bytes, with topic, partition, offset and timestamp); ``debezium`` yields the
    :class:`~asyncetl.core.changes.ChangeEvent` of each Debezium envelope, keyed
    by the message key (so the ``postgres_apply`` sink applies it), and skips
    tombstones. A message that does not decode is a reject, so the pipeline's
    ``source_errors`` policy applies: dead-lettered, it is committed like any
    other, and never blocks its partition. Debezium events carry no LSN here:
    partitions, not LSNs, order them.

    The position is the next offset of every partition read,
    ``{"group": …, "offsets": {topic: {partition: offset}}}``. Offsets are
    committed to the group only in :meth:`acknowledge`, which the engine calls
    after the checkpoint commit, and only for partitions this member still
    owns. On assignment, a partition starts at its offset in the resumed
    position — so with the checkpoint in the sink's own transaction, a crash
    replays nothing twice — or, with ``start = "committed"``, at the group's
    committed offset when that is further (another member moved on). Partitions
    that neither names start at the group's committed offset (``committed``,
    falling back to the earliest), the earliest, or the latest offset.

    When the group takes partitions away, this member stops reading them,
    waits up to ``revoke_timeout`` for its batches of them to be committed
    downstream and in the group, and only then lets them go; it commits
    nothing of theirs afterwards. Batches that missed that wait are read again
    by the new owner: across members, delivery is at-least-once.

    :param bootstrap_servers: ``host:port`` brokers, a list or comma-separated.
    :param topics: the topics to read (or use ``pattern``).
    :param group: the consumer group.
    :param pattern: a regular expression of topic names, instead of ``topics``.
    :param format: ``json``, ``raw`` or ``debezium``.
    :param start: where partitions start that the resumed position does not name.
    :param name: the source's name in checkpoints.
    :param poll_timeout: seconds one fetch waits for messages.
    :param revoke_timeout: seconds a rebalance waits for revoked partitions' batches.
    :param session_timeout: seconds without heartbeat after which the group drops a member.
    :param security: SASL and TLS settings (a :class:`KafkaSecurity`, or a spec's
        ``security`` table of the same names); plain connections when none.
    :param retries: retries of a failed request after the first try.
    :param retry_max_time: seconds after which a failed request is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        bootstrap_servers: list[str] | str,
        topics: list[str] | str | None = None,
        *,
        group: str,
        pattern: str | None = None,
        format: Format = "json",
        start: Start = "committed",
        name: str = "kafka",
        poll_timeout: float = 0.5,
        revoke_timeout: float = 30.0,
        session_timeout: float = 10.0,
        security: KafkaSecurity | Mapping[str, object] | None = None,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"KafkaSource {name!r}"
        self.topics = _topics(topics, pattern, where)
        self.pattern = None if pattern is None else nonempty(pattern, where, "pattern")
        self.group = nonempty(group, where, "group")
        self.format: Format = _choice(format, FORMATS, where, "format")
        self.start: Start = _choice(start, _STARTS, where, "start")
        self.poll_timeout = positive_seconds(poll_timeout, where, "poll_timeout")
        self.revoke_timeout = positive_seconds(revoke_timeout, where, "revoke_timeout")
        self.session_timeout = positive_seconds(session_timeout, where, "session_timeout")
        self.client = KafkaClient(
            bootstrap_list(bootstrap_servers, where),
            where=where,
            policy=retry_policy(retries, retry_max_time, where),
            security=security_of(security, where),
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._ownership = _Ownership()
        self._after: Offsets = {}
        self._next: Offsets = {}
        self._listener_error: BaseException | None = None

    @property
    def partitions(self) -> frozenset[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this member reads now; a question only."""
        return frozenset((tp.topic, tp.partition) for tp in self._ownership.reading)

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the brokers; the group is joined when reading starts.

        :raises TransientError: no broker answered through every retry.
        """
        self._consumer = await self.client.call("connect", self._start_consumer)

    async def check(self) -> list[Problem]:
        """Whether a broker answers (once) and every topic exists; joins no group."""
        try:
            settings = await self.client.connection_settings()
        except ConfigError as exc:
            return [Problem("security", str(exc))]
        consumer = self._new_consumer(settings, group=None)
        return await self.client.missing_topics(consumer, self.topics, "topics")

    async def aclose(self) -> None:
        """Leave the group and disconnect; safe after a failed open."""
        self._ownership.close()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with anyio.move_on_after(10, shield=True):
                await consumer.stop()

    # -- reading -----------------------------------------------------------------

    def check_position(self, position: Position) -> None:
        """Whether ``position`` is one this source writes (``group`` and ``offsets``).

        :raises ConfigError: naming what is wrong and how to reset the checkpoint.
        """
        _offsets(position, self.where)

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[Any]]:
        """Join the group and read for ever, starting after ``after``'s offsets."""
        consumer = self._open_consumer()
        self._after = _offsets(after, self.where)
        self._next = dict(self._after)
        if self.pattern is not None:
            consumer.subscribe(pattern=self.pattern, listener=_Listener(self))
        else:
            consumer.subscribe(self.topics, listener=_Listener(self))
        timeout_ms = int(self.poll_timeout * 1000)
        while True:
            fetched = await self.client.call(
                f"fetch for group {self.group!r}",
                lambda: consumer.getmany(timeout_ms=timeout_ms, max_records=max_chunk),
            )
            if self._listener_error is not None:
                raise self._listener_error
            chunk = self._chunk(fetched)
            if chunk is not None:
                yield chunk

    def _chunk(
        self, fetched: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> Chunk[Any] | None:
        records: list[object] = []
        rejects: list[Reject] = []
        moved = False
        for tp, messages in fetched.items():
            if not messages or not self._ownership.reads(tp):
                # Revoked while fetched: its new owner reads these. Every assignment
                # seeks explicitly, so if this member gets it back it reads them again.
                continue
            for message in messages:
                try:
                    record = decode(message, self.format)
                except (ValueError, TypeError) as exc:
                    rejects.append(Reject(letter(message), self._undecodable(message, exc)))
                    continue
                if record is not None:
                    records.append(record)
            self._next[tp] = messages[-1].offset + 1
            self._ownership.handed(tp, self._next[tp])
            moved = True
        if not moved:
            return None
        return Chunk(records, self.position_of(self._next), rejects)

    def _undecodable(self, message: ConsumerRecord[Any, Any], exc: Exception) -> ValueError:
        error = ValueError(
            f"message at offset {message.offset} of {message.topic!r} partition "
            f"{message.partition} is not {self.format} ({exc}); fix the producer or replay "
            "it from the dead letters"
        )
        error.__cause__ = exc
        return error

    def position_of(self, offsets: Mapping[TopicPartition, int]) -> dict[str, JsonValue]:
        """The position for ``offsets`` (next offset per partition)."""
        topics: dict[str, JsonValue] = {}
        for tp in sorted(offsets):
            partitions = topics.setdefault(tp.topic, {})
            assert isinstance(partitions, dict)
            partitions[str(tp.partition)] = offsets[tp]
        return {"group": self.group, "offsets": topics}

    def upstream_lag(self) -> Sequence[Lag]:
        """Records behind per partition read: its high watermark, as last fetched, minus
        the next offset to read; part ``topic/partition``. Partitions not fetched yet
        are left out."""
        consumer = self._consumer
        if consumer is None:
            return ()
        lag: list[Lag] = []
        for tp in sorted(self._ownership.reading):
            highwater, position = consumer.highwater(tp), self._next.get(tp)
            if highwater is not None and position is not None:
                lag.append(Lag(float(max(0, highwater - position)), "records", _part(tp)))
        return lag

    def decode(self, raw: JsonValue) -> Any:
        """A dead-lettered message back as a record.

        :raises ValueError: ``raw`` is not a Kafka message letter, or still does not decode.
        """
        return from_letter(raw, self.format)

    # -- acknowledgement ---------------------------------------------------------

    async def acknowledge(self, position: Position) -> None:
        """Commit ``position``'s offsets of the partitions this member still owns."""
        offsets = self._ownership.committable(_offsets(position, self.where))
        consumer = self._consumer
        if not offsets or consumer is None:
            return
        try:
            await self.client.call(
                f"commit to group {self.group!r}", lambda: consumer.commit(offsets)
            )
        except PermanentError as exc:
            if not isinstance(exc.__cause__, kerr.CommitFailedError | kerr.IllegalStateError):
                raise
            # The group moved these partitions meanwhile; their new owner reads on from
            # the last commit that went through (at-least-once across members).
            _log.warning("offsets not committed", source=self.name, error=str(exc))
            return
        self._ownership.committed(offsets)

    async def upstream_end(self) -> object:
        """The end offset of each partition this member reads and has not read to the end.

        A run that stops when idle waits until these are committed, so a quiet spell
        while the group is still joining (or fetching) is no stop.

        :raises TransientError: while the group has assigned this member nothing yet.
        """
        consumer, reading = self._consumer, sorted(self._ownership.reading)
        if consumer is None or not reading:
            raise TransientError(f"the group {self.group!r} has assigned no partition yet")
        ends = await self.client.call(
            "end offsets", functools.partial(consumer.end_offsets, reading)
        )
        mark: Offsets = {}
        for tp, end in ends.items():
            floor = self._ownership.committed_offset(tp)
            if floor is None:  # nothing committed in this run: where reading stands
                floor = await self.client.call(
                    f"position in {tp.topic}/{tp.partition}",
                    functools.partial(consumer.position, tp),
                )
            if end > floor:
                mark[tp] = end
        return mark

    def confirmed_through(self, mark: object) -> bool:
        """Whether every partition of ``mark`` still read is committed to its end offset."""
        if not isinstance(mark, dict):
            return mark is None
        ownership = self._ownership
        return all(
            (ownership.committed_offset(tp) or 0) >= end
            for tp, end in mark.items()
            if ownership.reads(tp)
        )

    # -- the group ---------------------------------------------------------------

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Seek each newly assigned partition to where it resumes (the listener calls this).

        aiokafka starts fetching as soon as the group assigns, while this runs: the
        partitions are paused until each has an explicit position, so nothing fetched
        from a default position is handed out or skipped. A partition resumed from the
        checkpoint ahead of the group's committed offset (the last run stopped between
        the two commits) has the group's offset caught up at once, for lag tools and
        the next owner.
        """
        consumer = self._consumer
        if consumer is None or self._ownership.closing:
            return  # joined while leaving: nothing will be read
        assigned = list(partitions)
        consumer.pause(*assigned)  # before any await
        try:
            behind = await self._seek(consumer, assigned)
        finally:
            consumer.resume(*assigned)
        if behind:
            await self.client.call(
                f"commit to group {self.group!r}", lambda: consumer.commit(behind)
            )
        _log.info("partitions assigned", source=self.name, partitions=_names(assigned))

    async def _seek(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> Offsets:
        """Give every partition of ``assigned`` its start; return those the group lags on."""
        behind: Offsets = {}
        for tp in assigned:
            committed = await self.client.call(
                f"committed offset of {tp.topic}/{tp.partition}",
                functools.partial(consumer.committed, tp),
            )
            start = self._start_offset(tp, committed)
            if start is not None:
                consumer.seek(tp, start)
                self._next[tp] = start
                if committed is None or start > committed:
                    behind[tp] = start
            elif self.start == "latest":
                await consumer.seek_to_end(tp)
            else:  # earliest, and committed where the group has no offset
                await consumer.seek_to_beginning(tp)
            self._ownership.assign(tp, start)
        return behind

    def _start_offset(self, tp: TopicPartition, committed: int | None) -> int | None:
        candidates = [self._after.get(tp), self._ownership.committed_offset(tp)]
        if self.start == "committed":
            candidates.append(committed)
        known = [offset for offset in candidates if offset is not None]
        return max(known) if known else None

    async def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop reading ``partitions``, let their batches commit, then release them."""
        revoked = set(partitions)
        if not revoked:
            return
        drained = await self._ownership.drain(revoked, self.revoke_timeout)
        _log.info(
            "partitions revoked",
            source=self.name,
            partitions=_names(revoked),
            drained=drained,
        )

    def listener_failed(self, exc: BaseException) -> None:
        """Remember a failure in a rebalance callback; the next fetch raises it."""
        self._listener_error = exc

    # -- helpers -----------------------------------------------------------------

    def _open_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"{self.where} is not open")
        return self._consumer

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = self._new_consumer(await self.client.connection_settings(), group=self.group)
        try:
            await consumer.start()
        except BaseException:
            with anyio.move_on_after(5, shield=True):
                await consumer.stop()
            raise
        return consumer

    def _new_consumer(self, settings: dict[str, Any], *, group: str | None) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **settings,
            bootstrap_servers=self.client.servers,
            group_id=group,
            client_id=f"asyncetl-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="latest" if self.start == "latest" else "earliest",
            session_timeout_ms=int(self.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(self.session_timeout * 1000) // 3),
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=5000 if self.pattern else 300_000,
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's rebalance callbacks, passed to the source; failures reach the reader."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        try:
            await self._source.revoked(revoked)
        except Exception as exc:
            self._source.listener_failed(exc)
            raise

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            await self._source.assigned(assigned)
        except Exception as exc:
            self._source.listener_failed(exc)
            raise


class _Ownership:
    """Which partitions this member reads, what it handed out and what it committed.

    A revoked partition is *draining* until its batches are committed (or the wait
    ends): it is read no more, but its commits still go through.
    """

    def __init__(self) -> None:
        self._reading: set[TopicPartition] = set()
        self._draining: set[TopicPartition] = set()
        self._handed: Offsets = {}
        self._committed: Offsets = {}
        self._progress = anyio.Event()
        self._closing = False

    @property
    def reading(self) -> frozenset[TopicPartition]:
        return frozenset(self._reading)

    def reads(self, tp: TopicPartition) -> bool:
        return tp in self._reading

    def assign(self, tp: TopicPartition, start: int | None) -> None:
        self._reading.add(tp)
        self._draining.discard(tp)
        if start is not None:
            # Handed-out positions older than this one are not committed for it: they
            # would move the group's offset backwards.
            self._handed[tp] = self._committed[tp] = start

    def handed(self, tp: TopicPartition, offset: int) -> None:
        self._handed[tp] = offset

    def committed_offset(self, tp: TopicPartition) -> int | None:
        return self._committed.get(tp)

    def committable(self, offsets: Offsets) -> Offsets:
        """Of ``offsets``, those of owned partitions that move their committed offset."""
        owned = self._reading | self._draining
        return {
            tp: offset
            for tp, offset in offsets.items()
            if tp in owned and offset > self._committed.get(tp, -1)
        }

    def committed(self, offsets: Offsets) -> None:
        self._committed.update(offsets)
        self._progress.set()
        self._progress = anyio.Event()

    async def drain(self, revoked: set[TopicPartition], patience: float) -> bool:
        """Stop reading ``revoked``; wait until their handed-out offsets are committed.

        :returns: whether they all were, within ``patience`` seconds.
        """
        self._reading -= revoked
        self._draining |= revoked
        drained = False
        with anyio.move_on_after(patience):
            while not self._closing and not self._settled(revoked):
                await self._progress.wait()
            drained = self._settled(revoked)
        self._draining -= revoked
        return drained

    def _settled(self, partitions: set[TopicPartition]) -> bool:
        return all(
            self._committed.get(tp, -1) >= offset
            for tp, offset in self._handed.items()
            if tp in partitions
        )

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop waiting for commits: the source is closing."""
        self._closing = True
        self._progress.set()


def _part(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "none"


def _topics(topics: object, pattern: object, where: str) -> list[str]:
    if isinstance(topics, str):
        topics = [t.strip() for t in topics.split(",") if t.strip()]
    if topics is None or topics == []:
        if pattern is None:
            raise ConfigError("give the topics to read, or a pattern", where=where, key="topics")
        return []
    if pattern is not None:
        raise ConfigError("give topics or a pattern, not both", where=where, key="pattern")
    if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(
            f"expected a topic name or a list of them, got {topics!r}", where=where, key="topics"
        )
    return list(topics)


def _choice(value: Any, choices: tuple[Any, ...], where: str, key: str) -> Any:
    if value not in choices:
        raise ConfigError(
            f"expected one of {', '.join(map(repr, choices))}, got {value!r}",
            where=where,
            key=key,
        )
    return value


def _offsets(position: Position, where: str) -> Offsets:
    """The offsets of a position this source wrote; none for ``None``.

    :raises ConfigError: ``position`` is not such a position.
    """
    if position is None:
        return {}
    topics = position.get("offsets") if isinstance(position, dict) else None
    offsets: Offsets = {}
    if isinstance(topics, dict):
        for topic, partitions in topics.items():
            if not isinstance(partitions, dict):
                break
            for partition, offset in partitions.items():
                if (
                    not partition.isdigit()
                    or isinstance(offset, bool)
                    or not isinstance(offset, int)
                ):
                    break
                offsets[TopicPartition(topic, int(partition))] = offset
            else:
                continue
            break
        else:
            return offsets
    raise ConfigError(
        f"{where} cannot resume after {position!r}: expected "
        '{"group": ..., "offsets": {topic: {partition: next offset}}}; reset the checkpoint '
        "with 'python -m asyncetl checkpoint reset'"
    )
