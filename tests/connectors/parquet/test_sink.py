"""ParquetSink: partitions, rolled files, declared types, replays that rewrite the same files."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    ConfigError,
    ListSource,
    Pipeline,
    Position,
    Reject,
    StageError,
    Transform,
)
from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink

pytestmark = pytest.mark.anyio


async def write(
    sink: ParquetSink, records: Sequence[object], position: Position = 0
) -> list[Reject]:
    """Write one batch and commit it, as the engine does when the batch is the last one."""
    batch: Batch[Mapping[str, object]] = Batch(0, records, position)  # type: ignore[arg-type]
    rejects = list(await sink.write(batch))
    await sink.flush()
    return rejects


def files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def read(directory: Path, *columns: str) -> list[tuple[object, ...]]:
    table = ds.dataset(directory, format="parquet", partitioning="hive").to_table()
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True), key=repr)


async def test_partitions_become_hive_directories_and_files_are_zstd(tmp_path: Path) -> None:
    out = tmp_path / "out"
    records = [
        {"day": "2024-01-01", "id": 1, "v": 1.5},
        {"day": "2024-01-02", "id": 2, "v": 2.5},
        {"day": "2024-01-01", "id": 3, "v": 3.5},
        {"day": None, "id": 4, "v": 4.5},
    ]
    async with ParquetSink(str(out), partition=["day"]) as sink:
        assert await write(sink, records, position={"offset": 10}) == []
    stem = "part-" + hashlib.sha256(b'{"offset":10}').hexdigest()[:20]
    assert files(out) == [
        "_asyncetl_manifest.json",
        f"day=2024-01-01/{stem}-00000.parquet",
        f"day=2024-01-02/{stem}-00001.parquet",
        f"day=__HIVE_DEFAULT_PARTITION__/{stem}-00002.parquet",
    ]
    first = pq.ParquetFile(out / f"day=2024-01-01/{stem}-00000.parquet")
    assert first.schema_arrow.names == ["id", "v"]
    assert first.metadata.row_group(0).column(0).compression == "ZSTD"
    assert read(out, "day", "id", "v") == [
        ("2024-01-01", 1, 1.5),
        ("2024-01-01", 3, 3.5),
        ("2024-01-02", 2, 2.5),
        (None, 4, 4.5),
    ]


async def test_files_roll_by_rows_and_by_bytes(tmp_path: Path) -> None:
    rows = [{"id": i, "text": "x" * 100} for i in range(10)]
    async with ParquetSink(str(tmp_path / "r"), max_file_rows=4) as sink:
        await write(sink, rows)
    assert [pq.read_metadata(tmp_path / "r" / f).num_rows for f in files(tmp_path / "r")[1:]] == [
        4,
        4,
        2,
    ]
    async with ParquetSink(str(tmp_path / "b"), max_file_bytes=350) as sink:
        await write(sink, rows)
    assert [pq.read_metadata(tmp_path / "b" / f).num_rows for f in files(tmp_path / "b")[1:]] == [
        3,
        3,
        3,
        1,
    ]


async def test_declared_types_win_and_values_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "t"
    schema = {"id": "int32", "price": "decimal128(8, 2)", "day": "date32", "tag": "string"}
    async with ParquetSink(str(out), schema=schema) as sink:
        rejects = await write(
            sink,
            [
                {"id": 1, "price": Decimal("1.50"), "day": date(2024, 1, 1)},
                {"id": 2, "price": Decimal("1.505"), "day": date(2024, 1, 2)},
                {"id": 3, "price": Decimal("2"), "day": date(2024, 1, 3), "extra": 1},
            ],
        )
    assert [(r.record["id"], type(r.error).__name__) for r in rejects] == [  # type: ignore[index]
        (3, "ValueError"),
        (2, "ValueError"),
    ]
    assert str(rejects[0].error) == (
        f"record has column 'extra', which the Parquet files of {out} does not have; add the "
        "column, or set extra_columns = 'ignore' (leave it out) or 'evolve' (add it)"
    )
    assert str(rejects[1].error).startswith(
        f"column 'price' of the Parquet files of {out} is decimal128(8, 2), and value "
        "Decimal('1.505') (Decimal) does not convert to it exactly: "
    )
    table = ds.dataset(out, format="parquet").to_table()
    assert table.schema == pa.schema(
        [
            ("id", pa.int32()),
            ("price", pa.decimal128(8, 2)),
            ("day", pa.date32()),
            ("tag", pa.string()),
        ]
    )
    assert table.to_pylist() == [
        {"id": 1, "price": Decimal("1.50"), "day": date(2024, 1, 1), "tag": None}
    ]


async def test_a_replayed_batch_rewrites_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "p"
    batch = [{"k": "a", "n": 1}, {"k": "b", "n": 2}]
    async with ParquetSink(str(out), partition=["k"]) as sink:
        await write(sink, batch, position=5)
    before = files(out)
    async with ParquetSink(str(out), partition=["k"]) as sink:  # a run after a crash
        await write(sink, batch, position=5)
    assert files(out) == before
    assert read(out, "k", "n") == [("a", 1), ("b", 2)]
    assert len(orjson.loads((out / "_asyncetl_manifest.json").read_bytes())["files"]) == 2


async def test_batches_of_one_run_sharing_a_position_keep_their_files_apart(
    tmp_path: Path,
) -> None:
    out = tmp_path / "s"
    async with ParquetSink(str(out)) as sink:
        await write(sink, [{"n": 1}], position={"lsn": 7})
        await write(sink, [{"n": 2}], position={"lsn": 7})
    stem = "part-" + hashlib.sha256(b'{"lsn":7}').hexdigest()[:20]
    assert files(out) == [
        "_asyncetl_manifest.json",
        f"{stem}-00000.parquet",
        f"{stem}-00001.parquet",
    ]
    assert read(out, "n") == [(1,), (2,)]


async def test_files_no_commit_listed_are_deleted_at_open(tmp_path: Path) -> None:
    out = tmp_path / "o"
    async with ParquetSink(str(out)) as sink:
        await write(sink, [{"n": 1}], position=1)
    committed = files(out)
    orphan = out / ("part-" + "0" * 20 + "-00000.parquet")
    orphan.write_bytes(b"renamed but never committed")
    (out / ".part-x.parquet.tmp").write_bytes(b"half written")
    (out / "notes.parquet").write_bytes(b"not ours")
    async with ParquetSink(str(out)):
        pass
    assert files(out) == sorted([*committed, "notes.parquet"])


def doubled(n: int) -> dict[str, object]:
    return {"n": n, "twice": 2 * n, "even": n % 2 == 0}


def pipeline(out: Path, count: int) -> Pipeline:
    return Pipeline(
        "numbers",
        ListSource(list(range(count)), name="numbers"),
        ParquetSink(str(out), partition=["even"]),
        [Transform(doubled)],
        checkpoints=ParquetCheckpointStore(str(out)),
        max_batch_size=10,
    )


async def test_the_manifest_is_the_checkpoint_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m"
    with capture_logs():
        stats = await pipeline(out, 25).run()
    assert stats.records_out == 25
    manifest = orjson.loads((out / "_asyncetl_manifest.json").read_bytes())
    assert manifest["checkpoints"] == {"numbers": {"numbers": 25}}
    # Three batches gathered into one commit: one file per partition, not per batch.
    assert len(manifest["files"]) == 2
    saved = await ParquetCheckpointStore(str(out)).saved_at("numbers", "numbers")
    assert saved is not None
    assert saved.isoformat() == manifest["saved_at"]["numbers"]["numbers"]
    assert read(out, "n", "twice") == sorted(((n, 2 * n) for n in range(25)), key=repr)
    with capture_logs():
        again = await pipeline(out, 25).run()
    assert again.records_in == 0
    assert len(files(out)) == 3
    assert await ParquetCheckpointStore(str(out)).load("numbers", "numbers") == 25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"compression": "zip"},
            "ParquetSink parquet_sink: compression: must be one of 'zstd', "
            "'snappy', 'gzip', 'brotli', 'lz4', 'none', not 'zip'",
        ),
        (
            {"max_file_rows": 0},
            "ParquetSink parquet_sink: max_file_rows: must be a whole number above 0, not 0",
        ),
        (
            {"roll_interval": -1},
            "ParquetSink parquet_sink: roll_interval: must be a number of seconds, at least 0, "
            "not -1",
        ),
        (
            {"schema": {"id": "integer"}},
            "ParquetSink parquet_sink: schema: column 'id' has type "
            "'integer', which is not an Arrow type name; use one such as int64, float64, string, bool, "
            "date32, timestamp[us, tz=UTC] or decimal128(12, 2)",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_sentence(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ParquetSink("out", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


async def test_a_refused_record_under_the_fail_policy_leaves_no_file_in_place(
    tmp_path: Path,
) -> None:
    out = tmp_path / "f"
    run = Pipeline(
        "numbers",
        ListSource([{"n": 1}, {"n": "x"}], name="numbers"),
        ParquetSink(str(out), schema={"n": "int64"}),
        checkpoints=ParquetCheckpointStore(str(out)),
    )
    with capture_logs(), pytest.raises(StageError) as caught:
        await run.run()
    assert "column 'n' of the Parquet files of" in str(caught.value)
    assert [f for f in files(out) if not f.startswith(".")] == []
    async with ParquetSink(str(out)):
        pass  # opening again clears what the failed batch left hidden
    assert files(out) == []


async def test_a_pyarrow_filesystem_url_works_like_a_local_path(tmp_path: Path) -> None:
    out = tmp_path / "url"
    url = out.as_uri()  # file://… goes through pyarrow.fs, as s3://… would
    records = [{"k": "a", "n": 1}, {"k": "b", "n": 2}]
    sink = ParquetSink(url, partition=["k"])
    store = ParquetCheckpointStore(url)
    writer = sink.transactional_writer(store)
    assert writer is not None
    async with sink:
        await writer(Batch(0, records, 3), Checkpoint("p", "s", 3))
        await sink.flush()
    orphan = out / "k=a" / ("part-" + "0" * 20 + "-00000.parquet")
    orphan.write_bytes(b"renamed but never committed")
    async with sink:  # a run after a crash: the orphan goes, the replay rewrites the same files
        await writer(Batch(0, records, 3), Checkpoint("p", "s", 3))
        await sink.flush()
    stem = "part-" + hashlib.sha256(b"3").hexdigest()[:20]
    assert files(out) == [
        "_asyncetl_manifest.json",
        f"k=a/{stem}-00000.parquet",
        f"k=b/{stem}-00001.parquet",
    ]
    assert read(out, "k", "n") == [("a", 1), ("b", 2)]
    assert await store.load("p", "s") == 3
