"""Crash recovery of ``python -m asyncetl run``: kill -9 at random moments, SIGTERM mid-run.

The input is 200,000 small JSON lines loaded into SQLite in batches of 500, so
one run takes a few seconds and a kill lands mid-load. After every kill and
restart the table must end exactly as one clean run leaves it.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from asyncetl import CheckpointStore, JsonFileCheckpointStore
from asyncetl.connectors.sqlite import SqliteCheckpointStore
from tests.killing import kill_mid_run

RECORDS = 200_000

TRANSFORM = """
def enrich(record):
    return {"id": record["id"], "v": record["v"], "square": record["v"] * record["v"]}
"""

SPEC = """
[pipeline]
name = "recovery"
max_batch_size = 500
max_batch_age = 0.2

[source]
type = "jsonl"
path = "{input}"

[[transforms]]
function = "recovery_transform:enrich"

[sink]
type = "sqlite"
path = "{database}"
table = "items"
create = true
{key}

[checkpoints]
{checkpoints}
"""

#: Upsert by key, checkpoints in a JSON file: at-least-once, made exactly-once by the key.
UPSERT = {"key": 'key = ["id"]', "checkpoints": 'type = "json"\npath = "checkpoints.json"'}
#: No key (a duplicate would be a second row), checkpoint in the sink's transaction.
TRANSACTIONAL = {"key": "", "checkpoints": 'type = "sqlite"\npath = "{database}"'}


@dataclass(frozen=True)
class Input:
    path: Path
    line_ends: list[int]  # byte offset after each line

    def records_before(self, position: int) -> int:
        """How many records end at or before byte ``position``, which must be a line end."""
        count = bisect.bisect_right(self.line_ends, position)
        assert position == 0 or self.line_ends[count - 1] == position, position
        return count


def expected_rows(count: int) -> list[tuple[int, int, int]]:
    return [(i, i * 7 % 1000, (i * 7 % 1000) ** 2) for i in range(count)]


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Input:
    path = tmp_path_factory.mktemp("input") / "items.jsonl"
    lines = [f'{{"id":{i},"v":{i * 7 % 1000}}}\n'.encode() for i in range(RECORDS)]
    path.write_bytes(b"".join(lines))
    ends, offset = [], 0
    for line in lines:
        offset += len(line)
        ends.append(offset)
    return Input(path, ends)


def write_spec(directory: Path, source: Input, variant: dict[str, str], name: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "recovery_transform.py").write_text(TRANSFORM)
    database = str(directory / "items.db")
    text = SPEC.format(
        input=source.path,
        database=database,
        key=variant["key"],
        checkpoints=variant["checkpoints"].format(database=database),
    )
    spec = directory / name
    spec.write_text(text)
    return spec


def start(spec: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncetl", "run", spec.name, *extra],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(directory: Path) -> list[tuple[int, int, int]]:
    with sqlite3.connect(directory / "items.db") as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE name = 'items'").fetchall()
        if not found:
            return []
        return conn.execute("SELECT id, v, square FROM items ORDER BY id, rowid").fetchall()


def committed(directory: Path, variant: dict[str, str]) -> int:
    store: CheckpointStore
    if variant is UPSERT:
        store = JsonFileCheckpointStore(directory / "checkpoints.json")
    else:
        store = SqliteCheckpointStore(str(directory / "items.db"))

    async def load() -> object:
        await store.open()
        try:
            return await store.load("recovery", "jsonl")
        finally:
            await store.aclose()

    position = anyio.run(load)
    if position is None:
        return 0
    assert isinstance(position, dict) and isinstance(position["offset"], int), position
    return position["offset"]


@dataclass(frozen=True)
class CleanRun:
    """What one uninterrupted run leaves, and how long its pipeline ran."""

    table: list[tuple[int, int, int]]
    seconds: float


@pytest.fixture(scope="module")
def clean_run(source_file: Input, tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    directory = tmp_path_factory.mktemp("clean")
    spec = write_spec(directory, source_file, UPSERT, "clean.toml")
    process = start(spec, "--log-level", "warning")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"  records_out    {RECORDS}\n" in out
    table = rows(directory)
    assert table == expected_rows(RECORDS)
    elapsed = re.search(r"finished in ([0-9.]+) s", out)
    assert elapsed is not None, out
    return CleanRun(table, float(elapsed[1]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "seed"),
    [(UPSERT, 7), (TRANSACTIONAL, 11)],
    ids=["upsert-json-checkpoints", "no-key-transactional-checkpoints"],
)
def test_kill_9_at_random_moments(
    source_file: Input,
    clean_run: CleanRun,
    tmp_path: Path,
    variant: dict[str, str],
    seed: int,
) -> None:
    spec = write_spec(tmp_path / "run", source_file, variant, "items.toml")

    def left_behind() -> tuple[int, int]:
        position, loaded = committed(spec.parent, variant), rows(spec.parent)
        assert_consistent(source_file, variant, position, loaded)
        return position, len(loaded)

    # Each kill a random share of a clean run's time after the run's first commit.
    settle = clean_run.seconds / 8
    kills = kill_mid_run(spec, random.Random(seed), left_behind, kills=6, settle=settle)
    assert len(kills) >= 3, kills
    assert sum(0 < loaded < RECORDS for _, loaded in kills) >= 2, kills
    assert [position for position, _ in kills] == sorted(position for position, _ in kills)
    assert rows(spec.parent) == clean_run.table
    assert committed(spec.parent, variant) == source_file.line_ends[-1]


def assert_consistent(
    source: Input, variant: dict[str, str], position: int, loaded: list[tuple[int, int, int]]
) -> None:
    """What a killed run left: nothing committed is missing, nothing is duplicated."""
    prefix = source.records_before(position)
    assert loaded == expected_rows(len(loaded))  # every key once, in order, correct values
    if variant is TRANSACTIONAL:
        assert len(loaded) == prefix  # rows and checkpoint committed together
    else:
        assert len(loaded) >= prefix  # written but not yet committed: replayed, upserted


@pytest.mark.slow
def test_sigterm_drains_and_commits_what_was_read(source_file: Input, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "run", source_file, TRANSACTIONAL, "items.toml")
    process = start(spec, "--log-level", "debug", "--log-format", "json")
    assert process.stderr is not None
    for line in process.stderr:
        if json.loads(line)["event"] == "committed":
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err

    position = committed(spec.parent, TRANSACTIONAL)
    count = source_file.records_before(position)
    assert 0 < count < RECORDS
    assert rows(spec.parent) == expected_rows(count)
    match = re.fullmatch(
        r"pipeline recovery stopped by SIGTERM in \d+\.\d\d s\n  records_in     (\d+)\n"
        r"  records_out    (\d+)\n  unchanged      0\n  dead_lettered  0\n"
        r'  position       \{"path":"[^"]+","offset":(\d+)\}\n',
        out,
    )
    assert match is not None, out
    assert [int(group) for group in match.groups()] == [count, count, position]
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert "stopping; draining in-flight batches" in events
    assert events[-1] == "finished"

    process = start(spec, "--log-level", "warning")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"  records_in     {RECORDS - count}\n" in out
    assert rows(spec.parent) == expected_rows(RECORDS)
