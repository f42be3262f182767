"""DuckDB, the embedded analytics database: a transactional sink, checkpoint and dead-letter stores.

Everything runs on ``duckdb`` (``pip install asyncetl[duckdb]``), one
connection per resource, each call in a worker thread; batches load as Arrow
tables. A :class:`DuckDBSink` and a :class:`DuckDBCheckpointStore` (and
:class:`DuckDBDeadLetterStore`) on the same file commit each batch with its
checkpoint and dead letters in one transaction.
"""

from asyncetl.connectors.duckdb._sink import DuckDBSink as DuckDBSink
from asyncetl.connectors.duckdb._sink import DuckDBSinkMode as DuckDBSinkMode
from asyncetl.connectors.duckdb._sql import quote_ident as quote_ident
from asyncetl.connectors.duckdb._stores import DuckDBCheckpointStore as DuckDBCheckpointStore
from asyncetl.connectors.duckdb._stores import DuckDBDeadLetterStore as DuckDBDeadLetterStore

__all__ = [
    "DuckDBCheckpointStore",
    "DuckDBDeadLetterStore",
    "DuckDBSink",
    "DuckDBSinkMode",
    "quote_ident",
]
