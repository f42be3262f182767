"""Partitioned backfill: resumable, bounded, shared by any number of workers.

A :class:`Backfill` runs an async job once per :class:`Partition` (hours, days,
months or integer ranges), ``parallel`` at a time, with per-partition retries,
and records each partition's status in a :class:`BackfillStore` so that a
re-run does only what is left. The stores live with their connectors:
``asyncetl.connectors.sqlite.backfill_store`` (default) and
``asyncetl.connectors.postgres.backfill_store`` (many machines).
"""

from asyncetl.backfill.partitions import EVERY as EVERY
from asyncetl.backfill.partitions import Every as Every
from asyncetl.backfill.partitions import Order as Order
from asyncetl.backfill.partitions import Partition as Partition
from asyncetl.backfill.partitions import date_partitions as date_partitions
from asyncetl.backfill.partitions import int_partitions as int_partitions
from asyncetl.backfill.partitions import make_partitions as make_partitions
from asyncetl.backfill.progress import BackfillStats as BackfillStats
from asyncetl.backfill.progress import LiveProgress as LiveProgress
from asyncetl.backfill.progress import LogProgress as LogProgress
from asyncetl.backfill.progress import ProgressReporter as ProgressReporter
from asyncetl.backfill.progress import open_progress as open_progress
from asyncetl.backfill.progress import summary_table as summary_table
from asyncetl.backfill.runner import Backfill as Backfill
from asyncetl.backfill.runner import BackfillResult as BackfillResult
from asyncetl.backfill.runner import PartitionJob as PartitionJob
from asyncetl.backfill.store import BackfillStore as BackfillStore
from asyncetl.backfill.store import MemoryBackfillStore as MemoryBackfillStore
from asyncetl.backfill.store import PartitionState as PartitionState
from asyncetl.backfill.store import Reset as Reset
from asyncetl.backfill.store import Scope as Scope
from asyncetl.backfill.store import Status as Status

__all__ = [
    "EVERY",
    "Backfill",
    "BackfillResult",
    "BackfillStats",
    "BackfillStore",
    "Every",
    "LiveProgress",
    "LogProgress",
    "MemoryBackfillStore",
    "Order",
    "Partition",
    "PartitionJob",
    "PartitionState",
    "ProgressReporter",
    "Reset",
    "Scope",
    "Status",
    "date_partitions",
    "int_partitions",
    "make_partitions",
    "open_progress",
    "summary_table",
]
