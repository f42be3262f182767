"""asyncetl: async streaming ETL with bounded stages and acknowledged checkpoints.

The package is layered; each layer imports only those below it (``tests/test_layering.py``):

- :mod:`asyncetl.core` — the engine: batches, stages joined by bounded streams, the
  checkpoint watermark, retries, dead letters, errors and the store contracts. It
  knows no database, file format or protocol. Its public names are re-exported
  here, once; this is the API an embedding application uses.
- :mod:`asyncetl.connectors` — one package per external system (``files``,
  ``sqlite``, ``postgres``, ``http``, ``redis``, ``nats``): its sources, sinks and
  stores. A connector imports core and its client library, never another connector.
- :mod:`asyncetl.backfill`, :mod:`asyncetl.flow` — partitioned backfills and DAGs of
  steps, on core alone.
- :mod:`asyncetl.spec` — the one layer that names connectors: pipelines, backfills and
  flows built from spec files.
- :mod:`asyncetl.cli` and :mod:`asyncetl.status` — ``python -m asyncetl``, a thin shell
  over the same API, and the status server and logging setup beside it.
"""

__version__ = "0.1.0"

from asyncetl.core.batch import Batch as Batch
from asyncetl.core.batch import Chunk as Chunk
from asyncetl.core.batch import JsonValue as JsonValue
from asyncetl.core.batch import Position as Position
from asyncetl.core.batch import Reject as Reject
from asyncetl.core.checkpoint import JsonFileCheckpointStore as JsonFileCheckpointStore
from asyncetl.core.deadletter import to_jsonable as to_jsonable
from asyncetl.core.errors import AsyncetlError as AsyncetlError
from asyncetl.core.errors import CheckpointError as CheckpointError
from asyncetl.core.errors import ConfigError as ConfigError
from asyncetl.core.errors import ConnectorError as ConnectorError
from asyncetl.core.errors import PermanentError as PermanentError
from asyncetl.core.errors import StageError as StageError
from asyncetl.core.errors import TransientError as TransientError
from asyncetl.core.interfaces import Checkpoint as Checkpoint
from asyncetl.core.interfaces import CheckpointStore as CheckpointStore
from asyncetl.core.interfaces import DeadLetter as DeadLetter
from asyncetl.core.interfaces import DeadLetterStore as DeadLetterStore
from asyncetl.core.interfaces import FailurePolicy as FailurePolicy
from asyncetl.core.interfaces import LetterFilter as LetterFilter
from asyncetl.core.interfaces import Problem as Problem
from asyncetl.core.interfaces import Resource as Resource
from asyncetl.core.interfaces import RunOutcome as RunOutcome
from asyncetl.core.interfaces import Settle as Settle
from asyncetl.core.interfaces import Sink as Sink
from asyncetl.core.interfaces import Source as Source
from asyncetl.core.interfaces import TransactionalWriter as TransactionalWriter
from asyncetl.core.memory import ListSink as ListSink
from asyncetl.core.memory import ListSource as ListSource
from asyncetl.core.memory import MemoryCheckpointStore as MemoryCheckpointStore
from asyncetl.core.memory import MemoryDeadLetterStore as MemoryDeadLetterStore
from asyncetl.core.memory import NullSink as NullSink
from asyncetl.core.observe import BatchTrace as BatchTrace
from asyncetl.core.observe import Lag as Lag
from asyncetl.core.observe import Observation as Observation
from asyncetl.core.observe import PartProgress as PartProgress
from asyncetl.core.observe import Progress as Progress
from asyncetl.core.observe import QueueFill as QueueFill
from asyncetl.core.observe import StageTrace as StageTrace
from asyncetl.core.observe import StageView as StageView
from asyncetl.core.pipeline import Pipeline as Pipeline
from asyncetl.core.pipeline import RunStats as RunStats
from asyncetl.core.replay import ReplayFailure as ReplayFailure
from asyncetl.core.replay import ReplayResult as ReplayResult
from asyncetl.core.replay import replay_dead_letters as replay_dead_letters
from asyncetl.core.retry import RetryPolicy as RetryPolicy
from asyncetl.core.retry import parse_retry_after as parse_retry_after
from asyncetl.core.retry import retry_call as retry_call
from asyncetl.core.runtime import tune_gc as tune_gc
from asyncetl.core.transforms import Transform as Transform
from asyncetl.core.watermark import Watermark as Watermark

__all__ = [
    "AsyncetlError",
    "Batch",
    "BatchTrace",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "Chunk",
    "ConfigError",
    "ConnectorError",
    "DeadLetter",
    "DeadLetterStore",
    "FailurePolicy",
    "JsonFileCheckpointStore",
    "JsonValue",
    "Lag",
    "LetterFilter",
    "ListSink",
    "ListSource",
    "MemoryCheckpointStore",
    "MemoryDeadLetterStore",
    "NullSink",
    "Observation",
    "PartProgress",
    "PermanentError",
    "Pipeline",
    "Position",
    "Problem",
    "Progress",
    "QueueFill",
    "Reject",
    "ReplayFailure",
    "ReplayResult",
    "Resource",
    "RetryPolicy",
    "RunOutcome",
    "RunStats",
    "Settle",
    "Sink",
    "Source",
    "StageError",
    "StageTrace",
    "StageView",
    "TransactionalWriter",
    "Transform",
    "TransientError",
    "Watermark",
    "parse_retry_after",
    "replay_dead_letters",
    "retry_call",
    "to_jsonable",
    "tune_gc",
]
