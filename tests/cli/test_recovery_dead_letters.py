"""Crash recovery with dead letters: kill -9 at random moments, every record in its place once.

A quickstart-like spec: JSON lines (some not JSON) → a validating transform
(some records invalid) → SQLite, with checkpoints and dead letters in the same
file (or dead letters in a JSON Lines file: the path without a shared
transaction). After twenty kills and a final run, the table and the
dead letters (pipeline, stage, record, position of each) equal one clean run's.

Dead-letter positions do not depend on where a run resumed (see
:mod:`tests.cli.recovery_letters`).
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from tests.cli.recovery_letters import (
    LINE,
    SPEC_HEAD,
    Letter,
    clean_run,
    dead_lettered,
    line,
    write_spec,
)
from tests.killing import kill_anywhere

RECORDS = 60_000
BATCH = 500

SPEC = (
    SPEC_HEAD
    + """
[sink]
type = "sqlite"
path = "items.db"
table = "items"
key = ["id"]
create = true

[checkpoints]
{checkpoints}

[dead_letters]
{dead_letters}
"""
)

#: Sink, checkpoints and dead letters in one SQLite file: one transaction per batch.
SHARED = {
    "checkpoints": 'type = "sqlite"\npath = "items.db"',
    "dead_letters": 'type = "sqlite"\npath = "items.db"',
}
#: Checkpoints in a JSON file, dead letters in a JSON Lines file: stored idempotently.
SEPARATE = {
    "checkpoints": 'type = "json"\npath = "checkpoints.json"',
    "dead_letters": 'type = "jsonl"\npath = "letters.jsonl"',
}


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "items.jsonl"
    lines = [line(i) for i in range(RECORDS)]
    assert {len(each) for each in lines} == {LINE}
    path.write_bytes(b"".join(lines))
    return path


def variant_spec(directory: Path, source: Path, variant: dict[str, str]) -> Path:
    return write_spec(
        directory, SPEC.format(input=source, batch=BATCH, block=LINE * BATCH, **variant)
    )


def table(directory: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(directory / "items.db") as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchall():
            return []
        return conn.execute("SELECT id, v FROM items ORDER BY id").fetchall()


def letters(directory: Path, variant: dict[str, str]) -> list[Letter]:
    """Every stored dead letter, in the order stored."""
    if variant is SEPARATE:
        path = directory / "letters.jsonl"
        if not path.exists():
            return []
        found = []
        for text in path.read_text().splitlines():
            try:
                document = json.loads(text)
            except ValueError:
                continue  # a line torn by a kill, never read back
            found.append(
                (document["pipeline"], document["stage"], document["record"], document["position"])
            )
        return found
    with sqlite3.connect(directory / "items.db") as conn:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'asyncetl_dead_letters'"
        ).fetchall():
            return []
        rows = conn.execute(
            "SELECT pipeline, stage, record, position FROM asyncetl_dead_letters ORDER BY id"
        ).fetchall()
    return [(p, s, json.loads(r), json.loads(pos)) for p, s, r, pos in rows]


@pytest.mark.parametrize(
    ("variant", "seed"),
    [(SHARED, 3), (SEPARATE, 5)],
    ids=["one-sqlite-file", "jsonl-dead-letters"],
)
def test_kill_9_leaves_every_row_and_dead_letter_exactly_once(
    source_file: Path, tmp_path: Path, variant: dict[str, str], seed: int
) -> None:
    seconds = clean_run(variant_spec(tmp_path / "clean", source_file, variant))
    expected_table, expected_letters = (
        table(tmp_path / "clean"),
        letters(tmp_path / "clean", variant),
    )
    bad_json, invalid = dead_lettered(RECORDS)
    assert len(expected_letters) == bad_json + invalid
    assert len(expected_table) == RECORDS - bad_json - invalid

    spec = variant_spec(tmp_path / "run", source_file, variant)
    kill_anywhere(spec, random.Random(seed), kills=20, longest=0.06 * seconds)
    assert table(spec.parent) == expected_table
    assert letters(spec.parent, variant) == expected_letters
