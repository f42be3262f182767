"""Spec kinds of the analytics connectors: DuckDB sink and stores, Parquet sink and checkpoints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asyncetl import ConfigError
from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBDeadLetterStore, DuckDBSink
from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink
from asyncetl.spec import build_pipeline

HEAD = """
[pipeline]
name = "demo"

[source]
type = "list"
records = [{n = 1}]
"""

DUCKDB = (
    HEAD
    + """
[sink]
type = "duckdb"
path = "x.duckdb"
table = "t"
mode = "upsert"
key = ["n"]

[checkpoints]
type = "duckdb"
path = "x.duckdb"

[dead_letters]
type = "duckdb"
path = "x.duckdb"
"""
)

PARQUET = (
    HEAD
    + """
[sink]
type = "parquet"
path = "out"
partition = ["day"]
schema = {n = "int64"}

[checkpoints]
type = "parquet"
path = "out"
"""
)


def build(tmp_path: Path, text: str) -> object:
    spec = tmp_path / "pipeline.toml"
    spec.write_text(textwrap.dedent(text))
    return build_pipeline(spec)


def test_duckdb_sink_and_stores_are_spec_kinds(tmp_path: Path) -> None:
    pipeline = build(tmp_path, DUCKDB)
    assert isinstance(pipeline.sink, DuckDBSink)  # type: ignore[attr-defined]
    assert (pipeline.sink.mode, pipeline.sink.key) == ("upsert", ["n"])  # type: ignore[attr-defined]
    assert isinstance(pipeline.checkpoints, DuckDBCheckpointStore)  # type: ignore[attr-defined]
    assert isinstance(pipeline.dead_letters, DuckDBDeadLetterStore)  # type: ignore[attr-defined]
    assert pipeline.sink.commits_to(pipeline.checkpoints)  # type: ignore[attr-defined]


def test_parquet_sink_and_checkpoints_are_spec_kinds(tmp_path: Path) -> None:
    pipeline = build(tmp_path, PARQUET)
    assert isinstance(pipeline.sink, ParquetSink)  # type: ignore[attr-defined]
    assert isinstance(pipeline.checkpoints, ParquetCheckpointStore)  # type: ignore[attr-defined]
    assert pipeline.sink.commits_to(pipeline.checkpoints)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            DUCKDB.replace('mode = "upsert"', 'mode = "merge"'),
            "sink.mode: must be one of 'append', 'upsert', 'replace_partition', 'refresh_swap', "
            "not 'merge'",
        ),
        (
            DUCKDB.replace('key = ["n"]', ""),
            "sink.key: mode 'upsert' needs key columns, e.g. key = [\"id\"]",
        ),
        (
            DUCKDB.replace('key = ["n"]', 'key = "n"'),
            "sink.key: expected a list of strings, got 'n'",
        ),
        (
            DUCKDB.replace('table = "t"', 'table = "t"\nevolve = true'),
            "sink.evolve: unknown key; DuckDBSink accepts create, extra_columns, key, mode, name, "
            "partition, path, schema_contract, table",
        ),
        (
            PARQUET.replace('{n = "int64"}', '{n = "integer"}'),
            "sink.schema: column 'n' has type 'integer', which is not an Arrow type name; use one "
            "such as int64, float64, string, bool, date32, timestamp[us, tz=UTC] or "
            "decimal128(12, 2)",
        ),
        (
            PARQUET.replace(
                'type = "parquet"\npath = "out"\npartition',
                'type = "parquet"\npath = "out"\ncompression = "zip"\npartition',
            ),
            "sink.compression: must be one of 'zstd', 'snappy', 'gzip', 'brotli', 'lz4', 'none', "
            "not 'zip'",
        ),
    ],
    ids=[
        "duckdb-mode",
        "duckdb-upsert-without-key",
        "duckdb-key-type",
        "duckdb-unknown-key",
        "parquet-type",
        "parquet-compression",
    ],
)
def test_bad_analytics_specs_are_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, text)
    assert str(caught.value) == f"{tmp_path / 'pipeline.toml'}: {message}"
