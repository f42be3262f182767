"""The writers of :class:`~asyncetl.connectors.postgres.PostgresSink`, one per mode.

Each mode is one module, readable on its own: :mod:`.upsert`, :mod:`.append`,
:mod:`.replace_partition`, :mod:`.refresh_swap` and :mod:`.soft_delete`, over
what they share in :mod:`.base` (settings, the table's checks) and
:mod:`.keyed` (the key). Row-hash change detection (:mod:`.row_hash`) is a
concern the writers use, not a mode. The sink picks its writer once, with
:func:`writer_class` (in :mod:`.modes`), and keeps the connections, retries and transactions.
"""

from asyncetl.connectors.postgres._writers.base import Transact as Transact
from asyncetl.connectors.postgres._writers.base import WriteOptions as WriteOptions
from asyncetl.connectors.postgres._writers.base import Writer as Writer
from asyncetl.connectors.postgres._writers.modes import SinkMode as SinkMode
from asyncetl.connectors.postgres._writers.modes import writer_class as writer_class
from asyncetl.connectors.postgres._writers.refresh_swap import (
    RefreshSwapWriter as RefreshSwapWriter,
)
from asyncetl.connectors.postgres._writers.row_hash import RowHash as RowHash

__all__ = [
    "RefreshSwapWriter",
    "RowHash",
    "SinkMode",
    "Transact",
    "WriteOptions",
    "Writer",
    "writer_class",
]
