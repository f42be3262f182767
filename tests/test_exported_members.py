"""The public API: what each public package exports, pinned, and exported once.

A name added to or removed from a package's ``__all__`` is a change of the
public API and must be made here too, on purpose.
"""

from __future__ import annotations

import importlib
import types

import pytest

import asyncetl
import asyncetl.core

PUBLIC: dict[str, list[str]] = {
    "asyncetl": [
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
    ],
    "asyncetl.spec": [
        "DEFAULT_STORE",
        "REGISTRY",
        "BackfillSpec",
        "CheckReport",
        "FlowSpec",
        "LoggingSettings",
        "PipelineJob",
        "PipelineStep",
        "backfill_store_at",
        "build_pipeline",
        "check_pipeline",
        "load_backfill_spec",
        "load_flow",
        "load_pipeline",
        "logging_settings",
        "read_env_file",
        "redact",
        "register",
        "use_env_file",
    ],
    "asyncetl.core.settings_check": [
        "identifier_names",
        "non_negative_int",
        "nonempty",
        "positive_int",
        "positive_seconds",
        "retry_policy",
    ],
    "asyncetl.connectors.duckdb": [
        "DuckDBCheckpointStore",
        "DuckDBDeadLetterStore",
        "DuckDBSink",
        "DuckDBSinkMode",
        "quote_ident",
    ],
    "asyncetl.connectors.iceberg": ["IcebergCheckpointStore", "IcebergSink"],
    "asyncetl.connectors.parquet": ["Compression", "ParquetCheckpointStore", "ParquetSink"],
    "asyncetl.connectors.files": ["CsvSource", "JsonlDeadLetterStore", "JsonlSink", "JsonlSource"],
    "asyncetl.connectors.sqlite": [
        "SqliteCheckpointStore",
        "SqliteDeadLetterStore",
        "SqliteSink",
        "quote_ident",
    ],
    "asyncetl.connectors.postgres": [
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
    ],
    "asyncetl.connectors.postgres.cdc": ["ApplySink", "CdcSource", "cdc_drop", "cdc_status"],
    "asyncetl.connectors.http": [
        "STYLES",
        "Auth",
        "ClientSettings",
        "HttpSink",
        "HttpSource",
        "Limits",
        "Timeouts",
        "idempotency_key",
        "redact_headers",
        "redact_url",
    ],
    "asyncetl.connectors.redis": [
        "RedisStreamSink",
        "RedisStreamSource",
        "StreamRecord",
        "endpoint",
        "redact_url",
    ],
    "asyncetl.connectors.nats": [
        "JetStreamRecord",
        "JetStreamSink",
        "JetStreamSource",
        "endpoints",
        "message_id",
    ],
    "asyncetl.connectors.kafka": [
        "Compression",
        "Format",
        "KafkaMessage",
        "KafkaSecurity",
        "KafkaSink",
        "KafkaSource",
        "Start",
    ],
    "asyncetl.status": [
        "configure_logging",
        "read_status",
        "readiness",
        "serve_status",
        "status_app",
    ],
    "asyncetl.cli": ["main"],
    "asyncetl.backfill": [
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
    ],
    "asyncetl.flow": [
        "Flow",
        "FlowResult",
        "FlowRun",
        "FlowStateStore",
        "JsonFileFlowStore",
        "MemoryFlowStore",
        "Step",
        "StepFunction",
        "StepState",
        "StepStatus",
        "run_flow",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned_and_sorted(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == PUBLIC[package]


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_exported_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_the_root_exports_core_names_defined_in_core() -> None:
    elsewhere = {
        name: obj.__module__
        for name in asyncetl.__all__
        if isinstance(obj := getattr(asyncetl, name), type | types.FunctionType)
        and not obj.__module__.startswith("asyncetl.core.")
    }
    assert elsewhere == {}


def test_core_re_exports_nothing() -> None:
    public = {
        name
        for name, value in vars(asyncetl.core).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set()
