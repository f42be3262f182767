"""Parquet files: a sink writing a hive-partitioned directory, with its manifest as checkpoint.

Runs on ``pyarrow`` (``pip install asyncetl[parquet]``), every file operation
in a worker thread. Each batch becomes complete files renamed into place and
named by the batch's source position; a :class:`ParquetCheckpointStore` on the
same directory commits the position in the manifest that lists them.
"""

from asyncetl.connectors.parquet._manifest import ParquetCheckpointStore as ParquetCheckpointStore
from asyncetl.connectors.parquet._sink import Compression as Compression
from asyncetl.connectors.parquet._sink import ParquetSink as ParquetSink

__all__ = ["Compression", "ParquetCheckpointStore", "ParquetSink"]
