"""The iceberg kind in spec files: sink and checkpoint store built, bad keys named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from asyncetl.spec import build_pipeline

SPEC = """
[pipeline]
name = "lake"

[source]
type = "list"
records = []

[sink]
type = "iceberg"
warehouse = "wh"
table = "shop.orders"
key = ["id"]
partition_by = ["day(at)"]
columns = {{id = "long", at = "timestamptz"}}
{extra}

[checkpoints]
type = "iceberg"
warehouse = "wh"
"""


def test_an_iceberg_sink_and_store_are_built_from_a_spec(tmp_path: Path) -> None:
    spec = tmp_path / "lake.toml"
    spec.write_text(SPEC.format(extra="commit_interval = 5"))
    pipeline = build_pipeline(spec)
    assert isinstance(pipeline.sink, IcebergSink)
    assert isinstance(pipeline.checkpoints, IcebergCheckpointStore)
    assert pipeline.sink.commits_to(pipeline.checkpoints)
    assert (pipeline.sink.settings.table, pipeline.sink.settings.key) == (
        ("shop", "orders"),
        ("id",),
    )
    assert pipeline.sink.commit_interval == 5


def test_a_bad_iceberg_setting_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "lake.toml"
    spec.write_text(SPEC.format(extra="target_file_size = 0"))
    done = subprocess.run(
        [sys.executable, "-m", "asyncetl", "run", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {spec}: sink.target_file_size: must be a positive number of bytes, not 0\n"
    )
    spec.write_text(
        SPEC.format(extra='columns = {id = "longer"}').replace(
            'columns = {id = "long", at = "timestamptz"}\n', ""
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "asyncetl", "run", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {spec}: sink.columns: column 'id' has type 'longer', which is not an Iceberg "
        "primitive type (long, int, double, boolean, string, binary, date, timestamp, "
        "timestamptz, decimal(P, S)…)\n"
    )
