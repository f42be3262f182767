"""PostgreSQL: table sources and sinks, change data capture, checkpoint and dead-letter stores.

Built on asyncpg. The modules, one concept each:

- :mod:`.source` — :class:`TableSource`, a table or query read incrementally in keyset order;
- :mod:`.sink` — :class:`PostgresSink`, one transaction per batch, one writer per mode;
- :mod:`.tables` — :class:`TablesSource`/:class:`TablesSink`, several tables in one pipeline;
- :mod:`.cdc` — :class:`CdcSource` and :class:`ApplySink`, logical replication in and out;
- ``_checkpoint``/``_deadletter`` — the stores; :mod:`.backfill_store` — backfill statuses;
- :mod:`.schema` — catalog discovery; ``_sql``, ``_connect``, ``_load``… — the shared plumbing.

Identifiers are quoted by :func:`quote_ident`; asyncpg and OS errors become
asyncetl errors at one boundary (``_connect.map_errors``).
"""

from asyncetl.connectors.postgres._checkpoint import (
    PostgresCheckpointStore as PostgresCheckpointStore,
)
from asyncetl.connectors.postgres._deadletter import (
    PostgresDeadLetterStore as PostgresDeadLetterStore,
)
from asyncetl.connectors.postgres._sql import TableName as TableName
from asyncetl.connectors.postgres._sql import quote_ident as quote_ident
from asyncetl.connectors.postgres._sql import quote_qualified as quote_qualified
from asyncetl.connectors.postgres.cdc import ApplySink as ApplySink
from asyncetl.connectors.postgres.cdc import CdcSource as CdcSource
from asyncetl.connectors.postgres.schema import Column as Column
from asyncetl.connectors.postgres.schema import TableSchema as TableSchema
from asyncetl.connectors.postgres.schema import describe_table as describe_table
from asyncetl.connectors.postgres.sink import PostgresSink as PostgresSink
from asyncetl.connectors.postgres.source import TableSource as TableSource
from asyncetl.connectors.postgres.tables import TableRow as TableRow
from asyncetl.connectors.postgres.tables import TablesSink as TablesSink
from asyncetl.connectors.postgres.tables import TablesSource as TablesSource

__all__ = [
    "ApplySink",
    "CdcSource",
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
