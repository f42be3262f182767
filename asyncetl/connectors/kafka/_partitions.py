"""Which partition each outgoing message goes to, as Kafka's default partitioner decides.

The sink sends a batch's messages as whole record batches, one or a few per
partition, so it chooses partitions itself: a keyed message where Java's
(and librdkafka's ``murmur2_random``) partitioner puts its key, keyless
messages of one batch all to one partition, turn by turn (Java's sticky
partitioner). aiokafka's ``murmur2`` gives the same hashes several times slower.

The hash of a key is still a microsecond or so of Python, and a change stream
sends the same keys again and again (a hot row's every update), so the
hashes of recent keys are kept (:class:`KeyHashes`). No murmur2 in C is kept up
on PyPI for this hash (32 bits, Kafka's seed), so none is depended on.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from functools import lru_cache

__all__ = ["Chooser", "KeyHashes", "murmur2"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """The 32-bit MurmurHash2 of ``data`` with Kafka's seed, as Java's ``Utils.murmur2``."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for k in _words(length // 4).unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


class KeyHashes:
    """The murmur2 hashes of the keys seen last, up to :attr:`LIMIT` of them (then
    forgotten all at once: a hot key is back after one more hash).

    A key seen again costs a tenth of its hash; a new one a fifth more than its hash
    (a few thousand keys keep the table small enough to stay in the CPU's cache).
    """

    LIMIT = 1 << 12

    def __init__(self) -> None:
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        """``murmur2(key)``."""
        known = self._known
        hashed = known.get(key)
        if hashed is None:
            if len(known) >= self.LIMIT:
                known.clear()
            hashed = known[key] = murmur2(key)
        return hashed


class Chooser:
    """Chooses the partitions of one batch's messages.

    :param partitions_of: a topic's partitions, sorted.
    :param turn: picks the partition of the batch's keyless messages.
    :param hashes: the keys' hashes, kept from batch to batch.
    """

    def __init__(
        self,
        partitions_of: Callable[[str], Awaitable[list[int]]],
        turn: int,
        hashes: KeyHashes,
    ) -> None:
        self._partitions_of = partitions_of
        self._turn = turn
        self._known: dict[str, list[int]] = {}
        self._hashes = hashes

    async def partitions(self, topic: str) -> list[int]:
        """``topic``'s partitions, asked once per batch."""
        known = self._known.get(topic)
        if known is None:
            known = self._known[topic] = await self._partitions_of(topic)
        return known

    def choose(self, partitions: list[int], key: bytes | None) -> int:
        """The partition, of ``partitions``, of a message keyed ``key``."""
        if len(partitions) == 1:
            return partitions[0]
        if key is None:
            return partitions[self._turn % len(partitions)]
        return partitions[(self._hashes(key) & 0x7FFFFFFF) % len(partitions)]
