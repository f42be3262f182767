"""RedisStreamSource: a Redis Stream read through a consumer group."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, Literal, TypeAlias

import redis.asyncio as aioredis
import redis.exceptions as rexc

from asyncetl.connectors.redis._client import RedisClient, retry_policy, undecodable_seen
from asyncetl.core.acks import AckLedger
from asyncetl.core.batch import Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import PermanentError, TransientError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.observe import Lag
from asyncetl.core.settings_check import nonempty, positive_int

__all__ = ["RedisStreamSource", "StreamRecord"]

#: ``{"id": "1700000000000-0", "fields": {"name": "value", …}}``
StreamRecord: TypeAlias = dict[str, JsonValue]
#: An entry as Redis sends it, decoded to text by the client: its id and its names and
#: values in turn (empty when the entry was deleted while pending), as a list or a tuple.
#: Bytes that are not UTF-8 arrive as lone surrogates (``surrogateescape``).
_Entry: TypeAlias = tuple[str, Sequence[str]]
#: The replies taken as parsed rather than through redis-py's callbacks, which build a
#: dict per entry that would only be copied into another.
_RAW_REPLIES = ("XREADGROUP", "XAUTOCLAIM")
_Phase: TypeAlias = Literal["pending", "claim", "new"]


@dataclass(slots=True)
class _Cursor:
    """Where the reader stands: its own pending entries, a claim sweep, or new entries."""

    phase: _Phase = "pending"
    after: str = "0"
    next_claim: float = 0.0

    def restart(self) -> None:
        """Re-read this consumer's pending entries first (after any failed command)."""
        self.phase, self.after = "pending", "0"

    def switch(self, phase: _Phase, after: str) -> None:
        self.phase, self.after = phase, after


class RedisStreamSource(Source[StreamRecord]):
    """Entries of a Redis Stream, read with ``XREADGROUP`` as one consumer of a group.

    Records are ``{"id": entry id, "fields": {name: value}}`` with names and
    values decoded as UTF-8; an entry that is not valid UTF-8 becomes a reject
    (its text shown with backslash escapes), so the pipeline's
    ``source_errors`` policy applies.

    Each read first re-delivers this consumer's pending entries (``XREADGROUP``
    from id ``0``), then claims entries idle longer than ``claim_idle_ms`` from
    other consumers (``XAUTOCLAIM``; repeated every ``claim_idle_ms`` while
    running), then blocks for new ones. Entries are ``XACK``-ed only in
    :meth:`acknowledge`, which the engine calls after the checkpoint commit, and
    exactly the entries of the committed batches are acknowledged. A crash
    therefore replays the unacknowledged entries and never skips one
    (at-least-once). The group on the server is what resumes the stream: the
    position (the last entry id handed out) is informational, and the ``after``
    argument of :meth:`read` is not used.

    Several workers sharing ``group`` (with distinct ``consumer`` names) split
    the stream between them.

    :param url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    :param stream: the stream key.
    :param group: the consumer group.
    :param consumer: this worker's name in the group; default ``<hostname>-<pid>``.
        A stable name lets a restarted worker replay its own pending entries at
        once; under a new name they are claimed after ``claim_idle_ms``.
    :param name: the source's name in checkpoints.
    :param create_group: create the group (and the stream) when missing.
    :param start_id: where a newly created group starts: ``0`` for the whole
        stream, ``$`` for only new entries.
    :param block_ms: milliseconds one ``XREADGROUP`` waits for new entries.
    :param count: entries asked per command (at most the pipeline's batch size).
    :param claim_idle_ms: pending entries idle this long are taken over from
        their consumer; keep it above the time an entry spends in the pipeline.
    :param retries: retries of a failed command after the first try.
    :param retry_max_time: seconds after which a failed command is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str,
        consumer: str | None = None,
        name: str = "redis",
        create_group: bool = True,
        start_id: str = "0",
        block_ms: int = 1000,
        count: int = 1000,
        claim_idle_ms: int = 60000,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"RedisStreamSource {name!r}"
        self.stream = nonempty(stream, where, "stream")
        self.group = nonempty(group, where, "group")
        self.consumer = nonempty(
            consumer or f"{socket.gethostname()}-{os.getpid()}", where, "consumer"
        )
        self.create_group = create_group
        self.start_id = nonempty(start_id, where, "start_id")
        self.block_ms = positive_int(block_ms, where, "block_ms")  # 0 would block for ever
        self.count = positive_int(count, where, "count")
        self.claim_idle_ms = positive_int(claim_idle_ms, where, "claim_idle_ms")
        self.client = RedisClient(
            url,
            where=where,
            client_name=f"asyncetl:{name}:{self.consumer}",
            policy=retry_policy(retries, retry_max_time, where),
            socket_timeout=block_ms / 1000 + 10,
            # Decoded as hiredis parses, not one bytes object at a time in Python: about
            # a tenth of a run's time went to those calls.
            decode_text=True,
            # Its arguments are the stream, group and consumer names and entry ids.
            hiredis_packing=True,
        )
        #: entry ids handed out (as text) → the id as Redis sent it, for ``XACK``
        self._ledger: AckLedger[str, str] = AckLedger()
        #: Seconds between two measures of how far the group is behind (XINFO GROUPS).
        self.lag_interval = 5.0
        #: The group's entries pending (delivered, unacknowledged) and lag (not yet
        #: delivered), as XINFO GROUPS last said, and when to ask it again.
        self._behind: dict[str, int] = {}
        self._next_measure = 0.0
        #: The id of the last entry handed out in this run, as a pair of numbers.
        self._handed_through: tuple[int, int] = (0, 0)

    @property
    def outstanding(self) -> int:
        """Entries handed out in this run and not yet acknowledged."""
        return len(self._ledger)

    async def open(self) -> None:
        """Connect, and create the group when missing and ``create_group`` is set.

        :raises PermanentError: the group is missing and ``create_group`` is off.
        :raises TransientError: Redis stayed unreachable through every retry.
        """
        await self.client.open()
        for command in _RAW_REPLIES:
            self.client.redis.set_response_callback(command, _raw_reply)
        if self.create_group:
            await self.client.call(f"XGROUP CREATE {self.stream}", self._create_group)
        else:
            await self._require_group()

    async def check(self) -> list[Problem]:
        """Whether Redis answers (once), the key is a stream or absent, and the group exists
        unless ``create_group`` would create it; creates nothing."""
        return await self.client.check_once(self._problems)

    async def _problems(self) -> list[Problem]:
        problems = await self.client.stream_problems(self.stream)
        if not problems and not self.create_group:
            problems += await self._group_problems()
        return problems

    async def _group_problems(self) -> list[Problem]:
        with self.client.errors(f"XINFO GROUPS {self.stream}"):
            groups = await _groups(self.client.redis, self.stream)
        if self.group in groups:
            return []
        message = (
            f"consumer group {self.group!r} of stream {self.stream!r} does not exist on Redis "
            f"at {self.client.endpoint} and create_group = false"
        )
        return [Problem("group", message)]

    async def aclose(self) -> None:
        self._ledger.clear()
        await self.client.close()

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[StreamRecord]]:
        """Yield pending, then claimed, then new entries; ``after`` is not used (see above)."""
        self._ledger.clear()
        cursor = _Cursor()
        limit = max(1, min(self.count, max_chunk))
        while True:
            seen = undecodable_seen()
            entries = await self.client.call(
                f"XREADGROUP {self.stream}", lambda r: self._fetch(r, cursor, limit)
            )
            chunk = self._chunk(entries, checked=undecodable_seen() == seen)
            # The reply's lists are garbage now: freed before the chunk travels on, they
            # add nothing to the objects every garbage collection meanwhile walks.
            del entries
            if time.monotonic() >= self._next_measure:
                await self._measure()
            if chunk is not None:
                yield chunk

    async def upstream_end(self) -> object:
        """The group's last delivered entry id, once the group has been given every entry
        the stream held when asked.

        A run that stops when idle then waits until this consumer handed out that
        entry and has nothing unacknowledged, so a slow start (connecting, the first
        read) is no stop. In a group of several consumers the last entry may have gone
        to another one: then only this consumer's own entries are waited for.

        :raises TransientError: while the stream holds entries not yet delivered to the group.
        """
        stream = await self.client.call(
            f"XINFO STREAM {self.stream}", lambda r: r.xinfo_stream(self.stream)
        )
        infos = await self.client.call(
            f"XINFO GROUPS {self.stream}", lambda r: r.xinfo_groups(self.stream)
        )
        group = next((i for i in infos if _text(i["name"]) == self.group), None)
        last = _entry_id(stream["last-generated-id"])
        delivered = _entry_id(group["last-delivered-id"]) if group is not None else (0, 0)
        if delivered < last:
            raise TransientError(
                f"stream {self.stream!r} holds entries not yet delivered to group {self.group!r}"
            )
        return None if group is None or int(group["consumers"]) > 1 else delivered

    def confirmed_through(self, mark: object) -> bool:
        """Whether nothing is unacknowledged and entry ``mark`` (when one) was handed out."""
        if self._ledger:
            return False
        return not isinstance(mark, tuple) or self._handed_through >= mark

    def upstream_lag(self) -> Sequence[Lag]:
        """The group's pending entries and the entries not yet delivered to it (Redis 7+)."""
        return [
            Lag(float(n), "records", f"{self.group} {what}") for what, n in self._behind.items()
        ]

    async def _measure(self) -> None:
        """Ask XINFO GROUPS how far the group is behind, at most every few seconds."""
        self._next_measure = time.monotonic() + self.lag_interval
        infos = await self.client.call(
            f"XINFO GROUPS {self.stream}", lambda r: r.xinfo_groups(self.stream)
        )
        for info in infos:
            if _text(info["name"]) == self.group:
                behind = {"pending": info.get("pending"), "lag": info.get("lag")}
                self._behind = {k: int(v) for k, v in behind.items() if isinstance(v, int)}

    async def acknowledge(self, position: Position) -> None:
        """``XACK`` exactly the entries of the chunks up to ``position``."""
        ids = self._ledger.take_through(position)
        if ids:
            await self.client.call(
                f"XACK {self.stream}", lambda r: r.xack(self.stream, self.group, *ids)
            )

    def decode(self, raw: JsonValue) -> StreamRecord:
        """A dead-lettered entry back as a record.

        :raises ValueError: ``raw`` is not ``{"id": str, "fields": {str: str}}``.
        """
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            fields = raw.get("fields")
            if isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values()):
                return {"id": raw["id"], "fields": dict(fields)}
        raise ValueError(f"expected {{'id': str, 'fields': {{str: str}}}}, got {raw!r}")

    # -- commands ----------------------------------------------------------------

    async def _create_group(self, r: aioredis.Redis) -> None:
        try:
            await r.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except rexc.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _require_group(self) -> None:
        groups = await self.client.call(
            f"XINFO GROUPS {self.stream}", lambda r: _groups(r, self.stream)
        )
        if self.group not in groups:
            raise PermanentError(
                f"consumer group {self.group!r} of stream {self.stream!r} does not exist on "
                f"Redis at {self.client.endpoint}; create it with XGROUP CREATE or set "
                "create_group = true"
            )

    async def _fetch(self, r: aioredis.Redis, cursor: _Cursor, limit: int) -> list[_Entry]:
        try:
            if cursor.phase == "pending":
                return await self._read_pending(r, cursor, limit)
            if cursor.phase == "claim":
                return await self._claim(r, cursor, limit)
            if time.monotonic() >= cursor.next_claim:
                cursor.switch("claim", "0-0")
                return []
            return await self._read_group(r, ">", limit, block=self.block_ms)
        except BaseException:
            # A lost reply may have delivered (or claimed) entries to this consumer:
            # they are in its pending list, so read that again before anything new.
            cursor.restart()
            raise

    async def _read_pending(self, r: aioredis.Redis, cursor: _Cursor, limit: int) -> list[_Entry]:
        entries = await self._read_group(r, cursor.after, limit, block=None)
        if entries:
            cursor.after = entries[-1][0]
        else:
            cursor.switch("claim", "0-0")
        return entries

    async def _claim(self, r: aioredis.Redis, cursor: _Cursor, limit: int) -> list[_Entry]:
        reply = await r.xautoclaim(  # [next id, [[id, fields]…], [deleted ids] (Redis 7)]
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=cursor.after,
            count=limit,
        )
        next_id = _text(reply[0])
        if next_id == "0-0":
            cursor.switch("new", ">")
            cursor.next_claim = time.monotonic() + self.claim_idle_ms / 1000
        else:
            cursor.after = next_id
        return _entries(reply[1])

    async def _read_group(
        self, r: aioredis.Redis, after: str, limit: int, *, block: int | None
    ) -> list[_Entry]:
        reply = await r.xreadgroup(
            self.group, self.consumer, {self.stream: after}, count=limit, block=block
        )
        if not reply:
            return []
        # RESP3: {stream: [[id, fields]…]}; RESP2: [[stream, [[id, fields]…]]]
        streams: Iterable[Any] = (
            reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
        )
        items: list[_Entry] = next(iter(streams))
        # New entries always have their id and fields: taken as they came. Pending ones
        # may have been deleted meanwhile.
        return items if after == ">" else _entries(items)

    # -- records -----------------------------------------------------------------

    def _chunk(self, entries: Sequence[_Entry], *, checked: bool) -> Chunk[StreamRecord] | None:
        """The entries not already in flight as a chunk; ``checked``: no reply held bytes
        that are not UTF-8, so no text needs searching for lone surrogates."""
        ledger = self._ledger
        ids = [entry[0] for entry in entries]
        if ledger.holds_any(ids):
            # An entry still in flight from an earlier read is not handed out again.
            entries = [entry for entry in entries if entry[0] not in ledger]
            ids = [entry[0] for entry in entries]
        if not entries:
            return None
        all_utf8 = checked or _is_utf8(chain.from_iterable(map(itemgetter(1), entries)))
        if all_utf8 and all(map(itemgetter(1), entries)):
            # The common case, as one comprehension: a third faster than the loop below.
            # zip without strict=: the keyword alone costs a fifth of each record's making.
            records: list[StreamRecord] = [
                {"id": entry_id, "fields": dict(zip(pairs := iter(fields), pairs))}  # noqa: B905
                for entry_id, fields in entries
            ]
            rejects: list[Reject] = []
        else:
            records, rejects = self._sorted_out(entries, all_utf8)
        position = ids[-1]
        ledger.add_keys(position, ids)
        self._handed_through = max(self._handed_through, _entry_id(position))
        return Chunk(records, position, rejects)

    def _sorted_out(
        self, entries: Sequence[_Entry], all_utf8: bool
    ) -> tuple[list[StreamRecord], list[Reject]]:
        """Records of the entries that decode, rejects of those that do not; entries
        deleted while pending are neither (they are only to be acknowledged)."""
        records: list[StreamRecord] = []
        rejects: list[Reject] = []
        for entry_id, fields in entries:
            if not fields:
                continue
            if all_utf8 or _is_utf8(fields):
                pairs = iter(fields)
                records.append({"id": entry_id, "fields": dict(zip(pairs, pairs, strict=False))})
            else:
                rejects.append(self._reject(entry_id, fields))
        return records, rejects

    def _reject(self, entry_id: str, fields: Sequence[str]) -> Reject:
        """An entry with bytes that are not UTF-8, shown with backslash escapes."""
        raw = [text.encode("utf-8", "surrogateescape") for text in fields]
        for item in raw:
            try:
                item.decode()
            except UnicodeDecodeError as exc:
                return Reject(_raw_entry(entry_id, raw), self._bad_text(entry_id, raw, exc))
        raise AssertionError(f"entry {entry_id} has no undecodable field")

    def _bad_text(
        self, entry_id: str, fields: Sequence[bytes], exc: UnicodeDecodeError
    ) -> ValueError:
        field = _first_undecodable(fields)
        error = ValueError(
            f"field {field!r} of entry {entry_id} in stream {self.stream!r} is not valid UTF-8 "
            f"({exc.reason} at byte {exc.start}); fix the producer or replay it from the "
            "dead letters"
        )
        error.__cause__ = exc
        return error


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _entries(items: Sequence[Sequence[Any] | None]) -> list[_Entry]:
    """The entries of a raw reply; one deleted from the stream has no fields."""
    return [(item[0], item[1] or ()) for item in items if item and item[0]]


def _is_utf8(texts: Iterable[str]) -> bool:
    """Whether ``texts`` hold no lone surrogate, i.e. came from valid UTF-8: one pass in C."""
    joined = "".join(texts)
    if joined.isascii():
        return True
    try:
        joined.encode()
    except UnicodeEncodeError:
        return False
    return True


def _pairs(fields: Sequence[bytes]) -> Iterator[tuple[bytes, bytes]]:
    pairs = iter(fields)
    return zip(pairs, pairs, strict=False)


def _first_undecodable(fields: Sequence[bytes]) -> str:
    """The name of the first field whose name or value is not UTF-8, escaped for display."""
    for key, value in _pairs(fields):
        try:
            key.decode(), value.decode()
        except UnicodeDecodeError:
            return key.decode("utf-8", "backslashreplace")
    return "?"


def _raw_entry(entry_id: str, fields: Sequence[bytes]) -> StreamRecord:
    shown: dict[str, JsonValue] = {
        k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
        for k, v in _pairs(fields)
    }
    return {"id": entry_id, "fields": shown}


async def _groups(r: aioredis.Redis, stream: str) -> set[str]:
    try:
        infos = await r.xinfo_groups(stream)
    except rexc.ResponseError as exc:
        if "no such key" in str(exc):
            return set()
        raise
    return {_text(info["name"]) for info in infos}


def _entry_id(value: bytes | str) -> tuple[int, int]:
    """An entry id (``1700000000000-0``) as a pair that sorts as Redis orders entries."""
    milliseconds, _, sequence = _text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
