"""PostgreSQL: an incremental table source, idempotent sinks, checkpoint and dead-letter stores.

Built on asyncpg. Identifiers are quoted by :func:`quote_ident`; asyncpg and OS
errors become asyncetl errors at one boundary (``_connect.map_errors``).
"""

from asyncetl.connectors.postgres._sql import TableName as TableName
from asyncetl.connectors.postgres._sql import quote_ident as quote_ident
from asyncetl.connectors.postgres._sql import quote_qualified as quote_qualified
from asyncetl.connectors.postgres.copy import TableRow as TableRow
from asyncetl.connectors.postgres.copy import TablesSink as TablesSink
from asyncetl.connectors.postgres.copy import TablesSource as TablesSource
from asyncetl.connectors.postgres.schema import Column as Column
from asyncetl.connectors.postgres.schema import TableSchema as TableSchema
from asyncetl.connectors.postgres.schema import describe_table as describe_table
from asyncetl.connectors.postgres.sinks import PostgresSink as PostgresSink
from asyncetl.connectors.postgres.source import TableSource as TableSource
from asyncetl.connectors.postgres.stores import PostgresCheckpointStore as PostgresCheckpointStore
from asyncetl.connectors.postgres.stores import PostgresDeadLetterStore as PostgresDeadLetterStore

__all__ = [
    "Column",
    "PostgresCheckpointStore",
    "PostgresDeadLetterStore",
    "PostgresSink",
    "TableName",
    "TableRow",
    "TableSchema",
    "TableSource",
    "TablesSink",
    "TablesSource",
    "describe_table",
    "quote_ident",
    "quote_qualified",
]
