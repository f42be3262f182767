"""NATS JetStream connectors on nats-py.

:class:`JetStreamSource` pulls from a stream through a durable consumer (several
workers bound to it split the stream) and acknowledges exactly the committed
messages, after the checkpoint commit. :class:`JetStreamSink` publishes records
as JSON and returns once JetStream acknowledged every one, with ``Nats-Msg-Id``
headers so that the stream's duplicate window drops replays.
"""

from asyncetl.connectors.nats._client import endpoints as endpoints
from asyncetl.connectors.nats.sink import JetStreamSink as JetStreamSink
from asyncetl.connectors.nats.sink import message_id as message_id
from asyncetl.connectors.nats.source import JetStreamRecord as JetStreamRecord
from asyncetl.connectors.nats.source import JetStreamSource as JetStreamSource

__all__ = ["JetStreamRecord", "JetStreamSink", "JetStreamSource", "endpoints", "message_id"]
