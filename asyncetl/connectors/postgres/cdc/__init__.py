"""PostgreSQL change data capture: a logical replication source, an apply sink, slot admin.

asyncpg cannot stream logical replication, so this package speaks the
protocol itself over an anyio stream (:mod:`._protocol`), decodes pgoutput
(:mod:`._pgoutput`) into :class:`~asyncetl.core.changes.ChangeEvent` records,
and uses asyncpg for everything else: slots, publications, the initial
snapshot, the consumer lock and lag metrics.

- :mod:`.source` — :class:`CdcSource`: snapshot first, then the slot's stream
  (``_catalog``, ``_snapshot``, ``_stream``, ``_protocol``, ``_pgoutput``, ``_values``);
- :mod:`.sink` — :class:`ApplySink`: change events applied to tables in commit
  order, exactly once (``_compact``, ``_staging``);
- :mod:`.admin` — :func:`cdc_status` and :func:`cdc_drop`, what ``python -m
  asyncetl cdc status|drop`` runs.
"""

from asyncetl.connectors.postgres.cdc.admin import cdc_drop as cdc_drop
from asyncetl.connectors.postgres.cdc.admin import cdc_status as cdc_status
from asyncetl.connectors.postgres.cdc.sink import ApplySink as ApplySink
from asyncetl.connectors.postgres.cdc.source import CdcSource as CdcSource

__all__ = ["ApplySink", "CdcSource", "cdc_drop", "cdc_status"]
