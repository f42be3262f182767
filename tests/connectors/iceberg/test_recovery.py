"""Kill -9 at random moments while loading into Iceberg: the table ends as one clean run leaves it.

No key, so a batch committed twice would show as duplicate rows; the position
travels in the snapshot summary of the commit holding its rows. A kill between
writing data files and committing them leaves files no snapshot refers to,
which no reader sees, and the rerun writes those rows again.
"""

from __future__ import annotations

import bisect
import random
from pathlib import Path

import anyio
import pytest

from asyncetl.connectors.iceberg import IcebergCheckpointStore
from tests.connectors.iceberg.helpers import catalog
from tests.killing import kill_mid_run

RECORDS = 6_000

SPEC = """
[pipeline]
name = "recovery"
max_batch_size = 200
max_batch_age = 0.2

[source]
type = "jsonl"
path = "{input}"

[sink]
type = "iceberg"
warehouse = "warehouse"
table = "lake.items"
commit_interval = 0

[checkpoints]
type = "iceberg"
warehouse = "warehouse"
"""


def write_input(directory: Path) -> list[int]:
    """The input file; returns the byte offset after each line."""
    lines = [f'{{"id":{i},"v":{i * 7 % 1000}}}\n'.encode() for i in range(RECORDS)]
    (directory / "items.jsonl").write_bytes(b"".join(lines))
    ends, offset = [], 0
    for line in lines:
        offset += len(line)
        ends.append(offset)
    return ends


def loaded(directory: Path) -> list[tuple[int, int]]:
    lake = catalog(directory / "warehouse")
    if not lake.table_exists("lake.items"):
        return []
    found = lake.load_table("lake.items").scan().to_arrow().to_pylist()
    return sorted((row["id"], row["v"]) for row in found)


def committed_offset(directory: Path) -> int:
    async def load() -> object:
        async with IcebergCheckpointStore(str(directory / "warehouse")) as store:
            return await store.load("recovery", "jsonl")

    position = anyio.run(load)
    if position is None:
        return 0
    assert isinstance(position, dict)
    offset = position["offset"]
    assert isinstance(offset, int)
    return offset


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_exactly_one_clean_runs_rows(tmp_path: Path) -> None:
    ends = write_input(tmp_path)
    (tmp_path / "items.toml").write_text(SPEC.format(input=tmp_path / "items.jsonl"))
    expected = [(i, i * 7 % 1000) for i in range(RECORDS)]

    def rows_committed() -> int:
        rows, offset = loaded(tmp_path), committed_offset(tmp_path)
        # Exactly the rows up to the committed position: none missing, none twice.
        assert rows == expected[: bisect.bisect_right(ends, offset)]
        return len(rows)

    kills = kill_mid_run(
        tmp_path / "items.toml", random.Random(5), rows_committed, kills=4, settle=0.2
    )
    assert len(kills) >= 3, kills
    assert sum(0 < n < RECORDS for n in kills) >= 2, kills
    assert kills == sorted(kills)
    assert loaded(tmp_path) == expected
    assert committed_offset(tmp_path) == ends[-1]
