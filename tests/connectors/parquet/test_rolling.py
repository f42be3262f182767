"""ParquetSink gathers batches into files that span them, committed by age or size."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    ListSource,
    Pipeline,
    Position,
    TransactionalWriter,
    Transform,
)
from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink

pytestmark = pytest.mark.anyio

Writer = TransactionalWriter[Mapping[str, object]]


def stem(position: Position) -> str:
    return "part-" + hashlib.sha256(orjson.dumps(position)).hexdigest()[:20]


def visible(directory: Path) -> list[str]:
    """The files a reader sees: hidden ones (``.part-….tmp``) left out."""
    found = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return sorted(f for f in found if not f.rpartition("/")[2].startswith("."))


def manifest(directory: Path) -> dict[str, object]:
    """The manifest without its save times, once checked that every checkpoint has one."""
    loaded: dict[str, Any] = orjson.loads((directory / "_asyncetl_manifest.json").read_bytes())
    saved = loaded.pop("saved_at", {})
    assert {p: set(s) for p, s in saved.items()} == {
        p: set(s) for p, s in loaded["checkpoints"].items()
    }
    return loaded


def rows_of(directory: Path, name: str) -> list[int]:
    return [int(n) for n in pq.read_table(directory / name)["n"].to_pylist()]


def bound(sink: ParquetSink, out: Path) -> Writer:
    writer = sink.transactional_writer(ParquetCheckpointStore(str(out)))
    assert writer is not None
    return writer


async def put(writer: Writer, position: int, numbers: Sequence[int]) -> None:
    records = [{"n": n} for n in numbers]
    await writer(Batch(position, records, position), Checkpoint("p", "s", position))


async def test_batches_wait_in_one_open_file_until_the_flush_commits_them_together(
    tmp_path: Path,
) -> None:
    out = tmp_path / "gathered"
    sink = ParquetSink(str(out), roll_interval=3600)
    writer = bound(sink, out)
    async with sink:
        for position in (1, 2, 3):
            await put(writer, position, [10 * position, 10 * position + 1])
        assert visible(out) == []  # nothing visible, no checkpoint, until the commit
        assert sink.flush_deadline() is not None
        await sink.flush()
        assert sink.flush_deadline() is None
    name = f"{stem(1)}-00000.parquet"
    assert visible(out) == ["_asyncetl_manifest.json", name]
    assert manifest(out) == {"files": [name], "checkpoints": {"p": {"s": 3}}}
    assert rows_of(out, name) == [10, 11, 20, 21, 30, 31]
    assert pq.read_metadata(out / name).num_row_groups == 3  # one per batch, in one file


async def test_a_batch_that_would_pass_the_file_limit_commits_the_held_files_first(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sized"
    sink = ParquetSink(str(out), max_file_rows=5, roll_interval=3600)
    writer = bound(sink, out)
    async with sink:
        await put(writer, 1, [1, 2])
        await put(writer, 2, [3, 4])
        await put(writer, 3, [5, 6])  # 4 + 2 rows pass 5: batches 1 and 2 commit first
        assert manifest(out) == {
            "files": [f"{stem(1)}-00000.parquet"],
            "checkpoints": {"p": {"s": 2}},
        }
        await put(writer, 4, [7, 8])
        await put(writer, 5, [9])  # 4 + 1 fills the file exactly: it commits at once
        assert sink.flush_deadline() is None
        await put(writer, 6, [10, 11, 12, 13, 14, 15, 16])  # larger than a file: two files
        await sink.flush()
    files = [f"{stem(1)}-00000.parquet", f"{stem(3)}-00000.parquet"]
    files += [f"{stem(6)}-00000.parquet", f"{stem(6)}-00001.parquet"]
    assert manifest(out) == {"files": files, "checkpoints": {"p": {"s": 6}}}
    assert [rows_of(out, f) for f in files] == [
        [1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12, 13, 14],
        [15, 16],
    ]


async def test_a_batch_whose_columns_change_starts_a_new_file_in_the_same_commit(
    tmp_path: Path,
) -> None:
    out = tmp_path / "evolved"
    sink = ParquetSink(str(out), roll_interval=3600)
    writer = bound(sink, out)
    async with sink:
        await put(writer, 1, [1])
        await writer(Batch(2, [{"n": 2, "extra": "x"}], 2), Checkpoint("p", "s", 2))
        await sink.flush()
    files = [f"{stem(1)}-00000.parquet", f"{stem(1)}-00001.parquet"]
    assert manifest(out) == {"files": files, "checkpoints": {"p": {"s": 2}}}
    assert [pq.read_table(out / f).to_pylist() for f in files] == [
        [{"n": 1}],
        [{"n": 2, "extra": "x"}],
    ]


def as_record(n: int) -> dict[str, object]:
    return {"n": n}


def slow_pipeline(out: Path, roll_interval: float) -> tuple[Pipeline, ListSource[int]]:
    source = ListSource(list(range(6)), name="numbers", chunk_size=2, delay=0.15)
    run = Pipeline(
        "numbers",
        source,
        ParquetSink(str(out), roll_interval=roll_interval),
        [Transform(as_record)],
        checkpoints=ParquetCheckpointStore(str(out)),
        max_batch_size=2,
        max_batch_age=0.01,
    )
    return run, source


@pytest.mark.parametrize(
    ("roll_interval", "acknowledged", "files"),
    [(0.05, [2, 4, 6], [[0, 1], [2, 3], [4, 5]]), (60.0, [6], [[0, 1, 2, 3, 4, 5]])],
)
async def test_the_engine_commits_held_batches_when_the_roll_interval_passes(
    tmp_path: Path, roll_interval: float, acknowledged: list[int], files: list[list[int]]
) -> None:
    out = tmp_path / "aged"
    run, source = slow_pipeline(out, roll_interval)
    with capture_logs():
        stats = await run.run()
    assert stats.records_out == 6
    # A slow source's batches are committed, and acknowledged, once their interval passed;
    # with a long interval the end of the input commits them all in one file.
    assert source.acknowledged == acknowledged
    listed = manifest(out)["files"]
    assert isinstance(listed, list)
    assert [rows_of(out, name) for name in listed] == files
    assert manifest(out)["checkpoints"] == {"numbers": {"numbers": 6}}
