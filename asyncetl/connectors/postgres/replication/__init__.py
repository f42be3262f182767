"""PostgreSQL change data capture over the streaming replication protocol.

asyncpg cannot stream logical replication, so this package speaks the
protocol itself over an anyio stream (:mod:`._protocol`), decodes pgoutput
(:mod:`._pgoutput`) into :class:`~asyncetl.core.changes.ChangeEvent` records,
and uses asyncpg for everything else: slots, publications, the initial
snapshot, the consumer lock and lag metrics.
"""

from asyncetl.connectors.postgres.replication._source import CdcSource as CdcSource

__all__ = ["CdcSource"]
