"""Redis Streams connectors on redis-py's asyncio client.

:class:`RedisStreamSource` reads a stream as one consumer of a consumer group
(several workers sharing the group split the stream) and ``XACK``-s exactly the
committed entries, after the checkpoint commit. :class:`RedisStreamSink`
appends records with ``XADD``, atomically per batch, optionally de-duplicated by
a record id.
"""

from asyncetl.connectors.redis._client import endpoint as endpoint
from asyncetl.connectors.redis._client import redact_url as redact_url
from asyncetl.connectors.redis.sink import RedisStreamSink as RedisStreamSink
from asyncetl.connectors.redis.source import RedisStreamSource as RedisStreamSource
from asyncetl.connectors.redis.source import StreamRecord as StreamRecord

__all__ = ["RedisStreamSink", "RedisStreamSource", "StreamRecord", "endpoint", "redact_url"]
