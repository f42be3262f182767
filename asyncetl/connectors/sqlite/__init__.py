"""SQLite, the embedded default: a transactional sink, checkpoint and dead-letter stores.

Everything runs on the standard library's ``sqlite3``, one connection per
resource, each call in a worker thread. A :class:`SqliteSink` and a
:class:`SqliteCheckpointStore` on the same file commit each batch and its
checkpoint in one transaction.
"""

from asyncetl.connectors.sqlite._checkpoint import SqliteCheckpointStore as SqliteCheckpointStore
from asyncetl.connectors.sqlite._deadletter import SqliteDeadLetterStore as SqliteDeadLetterStore
from asyncetl.connectors.sqlite._sink import SqliteSink as SqliteSink
from asyncetl.connectors.sqlite._sql import quote_ident as quote_ident

__all__ = ["SqliteCheckpointStore", "SqliteDeadLetterStore", "SqliteSink", "quote_ident"]
