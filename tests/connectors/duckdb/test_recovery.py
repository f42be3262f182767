"""kill -9 at random moments, rerun: the DuckDB table equals one clean run's, dead letters too.

The sink appends (no key: a replayed batch would be a second copy of its rows),
so only the checkpoint and dead letters committed in the batch's transaction
keep the result exact.
"""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.killing import kill_mid_run

RECORDS = 60_000

TRANSFORM = """
def enrich(record):
    if record["id"] % 997 == 0:
        raise ValueError(f"unlucky {record['id']}")
    return {"id": record["id"], "v": record["v"], "square": record["v"] * record["v"]}
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
on_error = "dead_letter"

[sink]
type = "duckdb"
path = "items.duckdb"
table = "items"
create = true

[checkpoints]
type = "duckdb"
path = "items.duckdb"

[dead_letters]
type = "duckdb"
path = "items.duckdb"
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "items.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"id": i, "v": i % 1000}) + b"\n" for i in range(RECORDS))
    )
    return path


def prepare(directory: Path, source: Path) -> Path:
    directory.mkdir()
    (directory / "recovery_transform.py").write_text(TRANSFORM)
    spec = directory / "items.toml"
    spec.write_text(SPEC.format(input=source))
    return spec


def state(directory: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], int]:
    """The table's rows, the dead letters' records, and how many records the checkpoint passed."""
    conn = duckdb.connect(str(directory / "items.duckdb"))
    try:
        tables = {
            row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        rows = (
            conn.execute("SELECT * FROM items ORDER BY id").fetchall() if "items" in tables else []
        )
        letters = (
            conn.execute("SELECT record FROM asyncetl_dead_letters ORDER BY id").fetchall()
            if "asyncetl_dead_letters" in tables
            else []
        )
        positions = (
            conn.execute("SELECT position FROM asyncetl_checkpoints").fetchall()
            if "asyncetl_checkpoints" in tables
            else []
        )
    finally:
        conn.close()
    offset = orjson.loads(str(positions[0][0]))["offset"] if positions else 0
    return rows, letters, offset


def expected(count: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    kept = [i for i in range(count) if i % 997]
    rows: list[tuple[object, ...]] = [(i, i % 1000, (i % 1000) ** 2) for i in kept]
    letters: list[tuple[object, ...]] = [
        (orjson.dumps({"id": i, "v": i % 1000}).decode(),) for i in range(count) if not i % 997
    ]
    return rows, letters


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_one_clean_runs_table(source: Path, tmp_path: Path) -> None:
    ends = []
    offset = 0
    for raw in source.read_bytes().splitlines(keepends=True):
        offset += len(raw)
        ends.append(offset)
    spec = prepare(tmp_path / "run", source)

    def records_committed() -> int:
        rows, letters, offset = state(spec.parent)
        count = ends.index(offset) + 1 if offset else 0
        assert (rows, letters) == expected(count)  # batch, checkpoint and letters together
        return count

    kills = kill_mid_run(spec, random.Random(15), records_committed, settle=0.3)
    assert kills == sorted(kills)
    assert sum(0 < count < RECORDS for count in kills) >= 3, kills
    rows, letters, offset = state(spec.parent)
    assert (rows, letters) == expected(RECORDS)
    assert offset == ends[-1]
