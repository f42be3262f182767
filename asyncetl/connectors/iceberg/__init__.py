"""Apache Iceberg: a sink that commits each position with its data, and the store reading it back.

Built on ``pyiceberg`` with a SQL catalog (SQLite, the embedded default, or
PostgreSQL) and a warehouse on the local filesystem. An :class:`IcebergSink`
gathers batches into few, large commits; with an
:class:`IcebergCheckpointStore` on the same catalog the source position
travels in the summary of the snapshots holding the data up to it, so a
crash replays exactly what no snapshot committed.
"""

from asyncetl.connectors.iceberg._checkpoint import IcebergCheckpointStore as IcebergCheckpointStore
from asyncetl.connectors.iceberg._sink import IcebergSink as IcebergSink

__all__ = ["IcebergCheckpointStore", "IcebergSink"]
