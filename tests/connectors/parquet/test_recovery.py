"""kill -9 at random moments, rerun: the Parquet directory equals one clean run's, file for file.

After each kill, the files the manifest lists hold exactly the records before
its checkpoint; after the last run, the directory holds exactly the files the
manifest lists, each once, together holding every record once. Files span
batches (a commit every ``roll_interval``), so a kill lands while several
batches are held in open files.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.killing import kill_mid_run

RECORDS = 60_000
BATCH = 500

TRANSFORM = """
def enrich(record):
    return {"id": record["id"], "square": record["v"] * record["v"], "bucket": record["id"] % 4}
"""

SPEC = """
[pipeline]
name = "recovery"
max_batch_size = 500
max_batch_age = 60

[source]
type = "jsonl"
path = "{input}"

[[transforms]]
function = "recovery_transform:enrich"

[sink]
type = "parquet"
path = "out"
partition = ["bucket"]
roll_interval = 0.05
max_file_rows = 3000

[checkpoints]
type = "parquet"
path = "out"
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "items.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"id": i, "v": i % 1000}) + b"\n" for i in range(RECORDS))
    )
    return path


def committed(out: Path) -> tuple[list[tuple[int, int, int]], int]:
    """The records in the files the manifest lists, and the checkpoint's offset."""
    manifest_path = out / "_asyncetl_manifest.json"
    if not manifest_path.exists():
        return [], 0
    manifest = orjson.loads(manifest_path.read_bytes())
    rows = []
    for name in manifest["files"]:
        bucket = int(name.split("/")[0].removeprefix("bucket="))
        table = pq.read_table(out / name)
        rows += [
            (i, s, bucket)
            for i, s in zip(table["id"].to_pylist(), table["square"].to_pylist(), strict=True)
        ]
    position = manifest["checkpoints"].get("recovery", {}).get("jsonl")
    return sorted(rows), 0 if position is None else position["offset"]


def expected(count: int) -> list[tuple[int, int, int]]:
    return [(i, (i % 1000) ** 2, i % 4) for i in range(count)]


def prepare(directory: Path, source: Path) -> Path:
    directory.mkdir()
    (directory / "recovery_transform.py").write_text(TRANSFORM)
    spec = directory / "items.toml"
    spec.write_text(SPEC.format(input=source))
    return spec


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_one_clean_runs_files(source: Path, tmp_path: Path) -> None:
    ends, offset = [], 0
    for raw in source.read_bytes().splitlines(keepends=True):
        offset += len(raw)
        ends.append(offset)
    spec = prepare(tmp_path / "run", source)
    out = spec.parent / "out"

    def records_committed() -> int:
        rows, offset = committed(out)
        count = ends.index(offset) + 1 if offset else 0
        assert rows == expected(count)  # the listed files and the checkpoint agree
        return count

    # Within 20 ms of a run's first commit: on a fast machine a run gets through a fifth
    # of the file in 50 ms, and kills that late left too few runs to kill mid-file.
    kills = kill_mid_run(spec, random.Random(15), records_committed, settle=0.02)
    assert kills == sorted(kills)
    assert sum(0 < count < RECORDS for count in kills) >= 3, kills
    assert committed(out) == (expected(RECORDS), ends[-1])
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    # No orphan and no duplicate: exactly the files the manifest lists, each once.
    # (Batch boundaries after a resume follow the source's reads from the resumed
    # offset, so names need not match a clean run's; a replay of one batch
    # rewriting its own files is tested in test_sink.)
    listed = orjson.loads((out / "_asyncetl_manifest.json").read_bytes())["files"]
    assert found == sorted(listed)
    assert len(set(listed)) == len(listed)
    # Files gather batches: some partition file holds more than one batch's 125 rows.
    assert max(pq.read_metadata(out / name).num_rows for name in listed) > BATCH // 4
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    everything = zip(*(table[c].to_pylist() for c in ("id", "square", "bucket")), strict=True)
    assert sorted(everything) == expected(RECORDS)
