"""A kill between the tables of one commit leaves every append-only table with each row once.

The run is killed with SIGKILL right after the first table of its second
commit was committed, before the second table's: the first table then holds
that commit's rows and the second does not. The rerun resumes where the
commit started, rolls the first table back to before it, and commits the
replay into both tables.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.connectors.iceberg.helpers import rows, summaries

SCRIPT = """
import os, signal, sys

import anyio

from asyncetl import ListSource, Pipeline
from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from asyncetl.connectors.iceberg._table import IcebergTable
from asyncetl.core.changes import ChangeEvent

warehouse, kill_after = sys.argv[1], int(sys.argv[2])
commits = []
commit = IcebergTable.commit


def commit_then_maybe_die(self, changes, properties):
    commit(self, changes, properties)
    commits.append(self.name)
    if len(commits) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)


IcebergTable.commit = commit_then_maybe_die
events = [
    ChangeEvent("c", "shop", table, after={"id": i, "v": i * 10})
    for i in range(12)
    for table in ("orders", "payments")
]
pipeline = Pipeline(
    "cut",
    ListSource(events, name="events", chunk_size=8),
    IcebergSink(warehouse, commit_interval=0),
    checkpoints=IcebergCheckpointStore(warehouse),
    max_batch_size=8,
)
anyio.run(pipeline.run)
"""


def run(warehouse: Path, kill_after: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(warehouse), str(kill_after)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr.decode()
    return done.returncode


def ids(warehouse: Path, table: str) -> list[int]:
    return [int(row["id"]) for row in rows(warehouse, table)]  # type: ignore[call-overload]


def test_a_kill_between_two_tables_of_one_commit_leaves_no_row_twice(tmp_path: Path) -> None:
    # Commit 1 is 4 rows into each table; commit 2's first table is the 3rd table commit.
    assert run(tmp_path, kill_after=3) == -signal.SIGKILL
    first = summaries(tmp_path, "shop.orders")[-1]["asyncetl.commit"]
    second = summaries(tmp_path, "shop.payments")[-1]["asyncetl.commit"]
    assert sorted([first, second]) == ["1", "2"]  # one table holds commit 2, the other not
    assert sorted([len(ids(tmp_path, "shop.orders")), len(ids(tmp_path, "shop.payments"))]) == [
        4,
        8,
    ]
    assert run(tmp_path, kill_after=0) == 0
    assert ids(tmp_path, "shop.orders") == list(range(12))
    assert ids(tmp_path, "shop.payments") == list(range(12))
    assert [row["v"] for row in rows(tmp_path, "shop.payments")] == [i * 10 for i in range(12)]
