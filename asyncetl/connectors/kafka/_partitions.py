"""Which partition each outgoing message goes to, as Kafka's default partitioner decides.

The sink groups a batch's messages by partition and sends each group as whole
record batches, so it chooses partitions itself: a keyed message where Java's
(and librdkafka's ``murmur2_random``) partitioner puts its key, keyless
messages of one batch all to one partition, turn by turn (Java's sticky
partitioner). aiokafka's ``murmur2`` gives the same hashes several times slower.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache

__all__ = ["Grouped", "by_partition", "murmur2"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

#: (topic, partition) → the (key, value) pairs for it, in the order they came.
Grouped = dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]


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


async def by_partition(
    messages: Iterable[tuple[str, bytes | None, bytes | None]],
    partitions_of: Callable[[str], Awaitable[list[int]]],
    turn: int,
) -> Grouped:
    """``messages`` (topic, key, value) grouped by their partition.

    :param partitions_of: a topic's partitions, sorted.
    :param turn: picks the partition of the keyless messages (one per topic).
    """
    groups: Grouped = {}
    known: dict[str, list[int]] = {}
    last_key, last_at = None, 0
    for topic, key, value in messages:
        partitions = known.get(topic)
        if partitions is None:
            partitions = known[topic] = await partitions_of(topic)
        if len(partitions) == 1:
            at = partitions[0]
        elif key is None:
            at = partitions[turn % len(partitions)]
        elif key is last_key:  # a delete's tombstone, right after it
            at = last_at
        else:
            at = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            last_key, last_at = key, at
        groups.setdefault((topic, at), []).append((key, value))
    return groups
