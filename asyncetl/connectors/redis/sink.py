"""RedisStreamSink: append records to a Redis Stream, one atomic command per batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import orjson
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.typing import EncodableT, FieldT

from asyncetl.connectors.redis._client import (
    RedisClient,
    retry_policy,
)
from asyncetl.core.batch import Batch, JsonValue, Reject
from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import Problem, Sink
from asyncetl.core.settings_check import nonempty, positive_int

__all__ = ["RedisStreamSink"]

_Fields: TypeAlias = dict[str, str]

# KEYS: the stream, the ids written. ARGV: maxlen ("" for none), the de-dup window in
# milliseconds ("" for none: the ids are a set, kept forever; else a sorted set scored
# by the server's time, trimmed to the window), then per record: its id, its field
# count n, and n name/value pairs. XADD comes before the id is recorded, so a command
# failing half-way leaves no id recorded without its entry.
_DEDUPE_XADD = """
local stream, seen, maxlen, window = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local now
if window then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. (now - window))
end
local added, i = 0, 3
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local known
  if window then
    known = redis.call('ZSCORE', seen, id)
  else
    known = redis.call('SISMEMBER', seen, id) == 1
  end
  if not known then
    local args = {stream}
    if maxlen ~= '' then
      args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen
    end
    args[#args + 1] = '*'
    for j = i + 2, i + 1 + 2 * n do args[#args + 1] = ARGV[j] end
    redis.call('XADD', unpack(args))
    if window then
      redis.call('ZADD', seen, now, id)
    else
      redis.call('SADD', seen, id)
    end
    added = added + 1
  end
  i = i + 2 + 2 * n
end
if window and added > 0 then
  redis.call('PEXPIRE', seen, window)
end
return added
"""


class RedisStreamSink(Sink[Mapping[str, JsonValue]]):
    """Appends each record of a batch to a stream with ``XADD``, atomically per batch.

    A record is a flat mapping: string values are stored as they are, any other
    value (numbers, booleans, ``null``, lists, objects) as its JSON text. A
    record that is not a non-empty mapping, or whose values JSON cannot encode,
    is returned as a reject for the pipeline's ``sink_errors`` policy.

    Without ``id_field`` the batch goes in one ``MULTI``/``EXEC``: all of it or
    none of it, but a replay after a crash appends it again (at-least-once).

    With ``id_field`` the batch goes in one Lua script that appends a record only
    when its ``id_field`` value is not yet in the set :attr:`dedupe_key`
    (``<stream>:asyncetl:ids``) and then adds it there, atomically. A replayed
    batch, or a record repeated in one batch, is therefore not appended twice:
    exactly-once results per id, whatever the batch boundaries of the replay.
    The set keeps every id ever written (``maxlen`` trims the stream, not the
    set). With ``dedupe_window`` the ids are kept only that long instead, in the
    sorted set :attr:`dedupe_key` (``<stream>:asyncetl:recent-ids``), scored by
    Redis's own clock and trimmed in the same script: a replay is still caught
    if it comes within the window, and the key expires once nothing is written
    for that long. Make the window longer than a crashed run can stay down.

    :param url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    :param stream: the stream key.
    :param name: the sink's name in the pipeline.
    :param maxlen: keep the stream at about this many entries (``MAXLEN ~``).
    :param id_field: the record field identifying a record, for de-duplication.
    :param dedupe_window: seconds an id is remembered (with ``id_field``); ``None``
        remembers every id for ever.
    :param retries: retries of a failed batch after the first try.
    :param retry_max_time: seconds after which a failed batch is not retried.
    :raises ConfigError: on an invalid setting.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        name: str = "redis_sink",
        maxlen: int | None = None,
        id_field: str | None = None,
        dedupe_window: float | None = None,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where = f"RedisStreamSink {name!r}"
        self.stream = nonempty(stream, where, "stream")
        self.id_field = None if id_field is None else nonempty(id_field, where, "id_field")
        self.maxlen = None if maxlen is None else positive_int(maxlen, where, "maxlen")
        self.dedupe_window = _window(dedupe_window, self.id_field, where)
        suffix = "ids" if self.dedupe_window is None else "recent-ids"
        self.dedupe_key = f"{stream}:asyncetl:{suffix}"
        self.client = RedisClient(
            url,
            where=where,
            client_name=f"asyncetl:{name}",
            policy=retry_policy(retries, retry_max_time, where),
        )
        self._script: AsyncScript | None = None

    async def open(self) -> None:
        """Connect and check that Redis answers.

        :raises TransientError: Redis stayed unreachable through every retry.
        """
        await self.client.open()
        self._script = self.client.redis.register_script(_DEDUPE_XADD)

    async def check(self) -> list[Problem]:
        """Whether Redis answers (once) and the key is a stream or absent; writes nothing."""
        return await self.client.check_once(lambda: self.client.stream_problems(self.stream))

    async def aclose(self) -> None:
        self._script = None
        await self.client.close()

    async def write(self, batch: Batch[Mapping[str, JsonValue]]) -> Sequence[Reject]:
        """Append the batch's records; return those that cannot be stored as stream fields.

        :raises TransientError: Redis stayed unreachable through every retry.
        :raises PermanentError: Redis refused the command.
        """
        rows: list[tuple[str | None, _Fields]] = []
        rejects: list[Reject] = []
        for record in batch.records:
            try:
                rows.append(self._encode(record))
            except (TypeError, ValueError) as exc:
                rejects.append(Reject(record, exc))
        if rows:
            await self.client.call(f"XADD {self.stream}", lambda r: self._append(r, rows))
        return rejects

    async def _append(self, r: aioredis.Redis, rows: list[tuple[str | None, _Fields]]) -> None:
        if self.id_field is None:
            async with r.pipeline(transaction=True) as pipe:
                for _, fields in rows:
                    payload: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
                    pipe.xadd(self.stream, payload, maxlen=self.maxlen, approximate=True)
                await pipe.execute()
            return
        window = self.dedupe_window
        args: list[str] = [
            "" if self.maxlen is None else str(self.maxlen),
            "" if window is None else str(max(1, round(window * 1000))),
        ]
        for record_id, fields in rows:
            args.extend((str(record_id), str(len(fields))))
            for pair in fields.items():
                args.extend(pair)
        if self._script is None:
            raise RuntimeError(f"{self.where} is not open")
        await self._script(keys=[self.stream, self.dedupe_key], args=args, client=r)

    def _encode(self, record: object) -> tuple[str | None, _Fields]:
        if not isinstance(record, Mapping) or not record:
            raise TypeError(
                f"{self.where} stores flat non-empty mappings of field to value, got "
                f"{type(record).__name__} {record!r:.80}"
            )
        fields = {str(key): _field_text(value) for key, value in record.items()}
        if self.id_field is None:
            return None, fields
        value = record.get(self.id_field)
        if value is None:
            raise ValueError(
                f"record has no {self.id_field!r} value for {self.where} to de-duplicate by; "
                "fix the record or the id_field setting"
            )
        return _field_text(value), fields


def _field_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _window(seconds: float | None, id_field: str | None, where: str) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(
            f"must be a positive number of seconds, not {seconds!r}",
            where=where,
            key="dedupe_window",
        )
    if id_field is None:
        raise ConfigError(
            "needs id_field: the window is how long ids are remembered",
            where=where,
            key="dedupe_window",
        )
    return float(seconds)
