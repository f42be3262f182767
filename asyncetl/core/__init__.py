"""The engine: batches, stages, checkpoints, dead letters, retries and errors.

Nothing here imports a connector. The public modules hold the contracts
(``interfaces``, ``batch``, ``errors``) and :class:`Pipeline`; one run of a
pipeline is made of private modules, one concept each:

- ``_stages``: the runner that wires one run's stages in a task group;
- ``_batcher``: chunks into numbered batches, closed on size or age;
- ``_transforming``: a transform stage, with its workers;
- ``_committer``: the low watermark, the checkpoint, the upstream acknowledgement;
- ``_rejects``: a stage's failure policy and its dead letters;
- ``_stats``, ``_settings``, ``_handoff``: run statistics, run settings, stage hand-offs.
"""

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
from asyncetl.core.interfaces import Resource as Resource
from asyncetl.core.interfaces import Sink as Sink
from asyncetl.core.interfaces import Source as Source
from asyncetl.core.interfaces import TransactionalWriter as TransactionalWriter
from asyncetl.core.memory import ListSink as ListSink
from asyncetl.core.memory import ListSource as ListSource
from asyncetl.core.memory import MemoryCheckpointStore as MemoryCheckpointStore
from asyncetl.core.memory import MemoryDeadLetterStore as MemoryDeadLetterStore
from asyncetl.core.memory import NullSink as NullSink
from asyncetl.core.pipeline import Pipeline as Pipeline
from asyncetl.core.pipeline import RunStats as RunStats
from asyncetl.core.retry import Retrier as Retrier
from asyncetl.core.retry import RetryPolicy as RetryPolicy
from asyncetl.core.retry import parse_retry_after as parse_retry_after
from asyncetl.core.retry import retry_call as retry_call
from asyncetl.core.transforms import Transform as Transform
from asyncetl.core.watermark import Watermark as Watermark

__all__ = [
    "AsyncetlError",
    "Batch",
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
    "ListSink",
    "ListSource",
    "MemoryCheckpointStore",
    "MemoryDeadLetterStore",
    "NullSink",
    "PermanentError",
    "Pipeline",
    "Position",
    "Reject",
    "Resource",
    "Retrier",
    "RetryPolicy",
    "RunStats",
    "Sink",
    "Source",
    "StageError",
    "TransactionalWriter",
    "Transform",
    "TransientError",
    "Watermark",
    "parse_retry_after",
    "retry_call",
    "to_jsonable",
]
