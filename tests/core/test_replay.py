"""Replaying dead letters: fixed ones load and leave the store, still-bad ones stay."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from asyncetl import (
    Batch,
    Chunk,
    ConfigError,
    JsonValue,
    ListSink,
    ListSource,
    MemoryDeadLetterStore,
    Pipeline,
    Position,
    Reject,
    Sink,
    Source,
    StageError,
    Transform,
)
from asyncetl.core.replay import ReplayFailure, replay_dead_letters

#: What the "deployed code" currently gets right; tests flip these to simulate a fix.
FIXED = {"check": False, "decode": False, "sink": False}

Record = dict[str, Any]


@pytest.fixture(autouse=True)
def broken_code() -> Iterator[None]:
    FIXED.update(check=False, decode=False, sink=False)
    yield
    FIXED.update(check=False, decode=False, sink=False)


def check(record: Record) -> Record | None:
    n = record["n"]
    if n == 10:
        raise ValueError("10 is always wrong")
    if n % 5 == 0 and not FIXED["check"]:
        raise ValueError(f"{n} is a multiple of 5")
    if n == 12 and FIXED["check"]:
        return None  # the fix drops it on purpose
    return record


def refuse(record: Record) -> Record:
    raise ValueError("refused")


def tag(record: Record) -> Record:
    return {**record, "tagged": True}


def parse(raw: object) -> Record:
    text = str(raw)
    if text.startswith(" ") and not FIXED["decode"]:
        raise ValueError(f"leading space in {text!r}")
    return {"n": int(text)}


class TextSource(Source[Record]):
    """Lines of text; the position counts lines."""

    name = "text"

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[Record]]:
        records: list[Record] = []
        rejects: list[Reject] = []
        for line in self.lines:
            try:
                records.append(parse(line))
            except ValueError as exc:
                rejects.append(Reject(line, exc))
        yield Chunk(records, len(self.lines), rejects)

    def decode(self, raw: JsonValue) -> Record:
        return parse(raw)


class PickySink(ListSink[Record]):
    """Refuses records with ``n`` over 100 until fixed, and ``n == 999`` always."""

    def __init__(self) -> None:
        super().__init__(name="picky")

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        refused = [
            r for r in batch.records if r["n"] == 999 or (r["n"] > 100 and not FIXED["sink"])
        ]
        kept = [r for r in batch.records if not any(r is x for x in refused)]
        await super().write(batch.replace(kept))
        return [Reject(r, ValueError(f"n={r['n']} is too big")) for r in refused]


def pipeline(source: Source[Any], sink: Sink[Any], store: MemoryDeadLetterStore) -> Pipeline:
    return Pipeline(
        "replay",
        source,
        sink,
        [Transform(check, name="check", on_error="dead_letter"), Transform(tag, name="tag")],
        dead_letters=store,
        source_errors="dead_letter",
        sink_errors="dead_letter",
    )


@pytest.mark.anyio
async def test_transform_letters_replay_from_their_stage() -> None:
    store, sink = MemoryDeadLetterStore(), ListSink[Record]()
    run = pipeline(ListSource([{"n": n} for n in range(1, 21)]), sink, store)
    await run.run()
    assert [(x.stage, x.record) for x in store.letters] == [
        ("check", {"n": n}) for n in (5, 10, 15, 20)
    ]
    assert len(sink.records) == 16

    FIXED["check"] = True
    with structlog.testing.capture_logs() as logs:
        result = await replay_dead_letters(run)
    assert logs == [
        {
            "event": "replayed",
            "log_level": "info",
            "pipeline": "replay",
            "removed": 3,
            "still_failing": 1,
            "records_written": 3,
        }
    ]
    assert result.removed == ["1", "3", "4"]
    assert result.records_written == 3
    assert [(f.letter.id, f.stage, f.error) for f in result.failed] == [
        ("2", "check", "ValueError: 10 is always wrong")
    ]
    assert sink.records[16:] == [{"n": n, "tagged": True} for n in (5, 15, 20)]
    assert [(x.id, x.record) for x in store.letters] == [("2", {"n": 10})]
    assert result.attempted == 4


@pytest.mark.anyio
async def test_source_letters_are_decoded_again() -> None:
    store, sink = MemoryDeadLetterStore(), ListSink[Record]()
    run = pipeline(TextSource(["1", " 2", "x", " 3"]), sink, store)
    await run.run()
    assert [(x.stage, x.record) for x in store.letters] == [
        ("text", " 2"),
        ("text", "x"),
        ("text", " 3"),
    ]

    unfixed = await replay_dead_letters(run)
    assert unfixed.removed == []
    assert [(f.stage, f.error) for f in unfixed.failed] == [
        ("text", "ValueError: leading space in ' 2'"),
        ("text", "ValueError: invalid literal for int() with base 10: 'x'"),
        ("text", "ValueError: leading space in ' 3'"),
    ]
    assert len(store.letters) == 3

    FIXED["decode"] = True
    result = await replay_dead_letters(run)
    assert result.removed == ["1", "3"]
    assert sink.records == [{"n": n, "tagged": True} for n in (1, 2, 3)]
    assert [x.record for x in store.letters] == ["x"]


@pytest.mark.anyio
async def test_sink_letters_go_straight_to_the_sink() -> None:
    store, sink = MemoryDeadLetterStore(), PickySink()
    run = pipeline(ListSource([{"n": 1}, {"n": 101}, {"n": 999}, {"n": 12}]), sink, store)
    await run.run()
    assert [(x.stage, x.record) for x in store.letters] == [
        ("picky", {"n": 101, "tagged": True}),
        ("picky", {"n": 999, "tagged": True}),
    ]

    FIXED.update(sink=True, check=True)
    result = await replay_dead_letters(run)
    assert result.removed == ["1"]
    assert [(f.letter.id, f.stage, f.error) for f in result.failed] == [
        ("2", "picky", "ValueError: n=999 is too big")
    ]
    # Written as stored: the transforms did not run again (no second tag, 12 not dropped).
    assert sink.records == [
        {"n": 1, "tagged": True},
        {"n": 12, "tagged": True},
        {"n": 101, "tagged": True},
    ]


@pytest.mark.anyio
async def test_dropped_by_the_fix_is_removed_without_writing() -> None:
    store, sink = MemoryDeadLetterStore(), ListSink[Record]()
    run = pipeline(ListSource([{"n": 12}]), sink, store)
    run.transforms[0] = Transform(refuse, name="check", on_error="dead_letter")
    await run.run()
    assert [x.record for x in store.letters] == [{"n": 12}]
    run.transforms[0] = Transform(check, name="check", on_error="dead_letter")
    FIXED["check"] = True
    result = await replay_dead_letters(run)
    assert (result.removed, result.records_written, result.failed) == (["1"], 0, [])
    assert sink.records == []
    assert store.letters == []


@pytest.mark.anyio
async def test_letters_of_a_stage_that_is_gone_stay() -> None:
    store = MemoryDeadLetterStore()
    run = pipeline(ListSource([{"n": 5}, {"n": 7}]), ListSink[Record](), store)
    await run.run()
    renamed = Pipeline(
        "replay", run.source, run.sink, [Transform(tag, name="tag")], dead_letters=store
    )
    result = await replay_dead_letters(renamed, limit=5)
    assert result.failed == [
        ReplayFailure(store.letters[0], "check", "the pipeline has no stage of this name any more")
    ]


@pytest.mark.anyio
async def test_limit_replays_the_oldest_first() -> None:
    store, sink = MemoryDeadLetterStore(), ListSink[Record]()
    run = pipeline(ListSource([{"n": n} for n in (5, 15, 20)]), sink, store)
    await run.run()
    FIXED["check"] = True
    result = await replay_dead_letters(run, limit=2)
    assert result.removed == ["1", "2"]
    assert [x.record for x in store.letters] == [{"n": 20}]


@pytest.mark.anyio
async def test_a_failing_sink_removes_nothing() -> None:
    class Down(ListSink[Record]):
        async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
            raise ConnectionError("database is down")

    store = MemoryDeadLetterStore()
    run = pipeline(ListSource([{"n": 5}]), ListSink[Record](), store)
    await run.run()
    FIXED["check"] = True
    broken = Pipeline("replay", run.source, Down(name="down"), run.transforms, dead_letters=store)
    with pytest.raises(
        StageError,
        match=r"^stage 'down' failed on the batch ending at position "
        r"None: ConnectionError: database is down$",
    ):
        await replay_dead_letters(broken)
    assert len(store.letters) == 1


@pytest.mark.anyio
async def test_no_store_is_a_config_error() -> None:
    run = Pipeline("plain", ListSource([1]), ListSink[int]())
    with pytest.raises(
        ConfigError,
        match="^pipeline plain: dead_letters: the pipeline has no "
        "dead-letter store to replay from$",
    ):
        await replay_dead_letters(run)


# -- end to end: JSONL → transform → SQLite, fixed by an environment variable --------------

TRANSFORM = """
import os

def price(record):
    if record["price"] < 0:
        raise ValueError(f"order {record['id']}: negative price")
    if record["price"] > 1000 and os.environ.get("ALLOW_BIG_ORDERS") != "1":
        raise ValueError(f"order {record['id']}: needs approval")
    return {"id": record["id"], "price": record["price"], "vat": round(record["price"] * 0.2, 2)}
"""

SPEC = """
[pipeline]
name = "prices"
source_errors = "dead_letter"

[source]
type = "jsonl"
path = "orders.jsonl"

[[transforms]]
function = "replay_transform:price"
on_error = "dead_letter"

[sink]
type = "sqlite"
path = "db.sqlite"
table = "orders"
key = ["id"]
create = true

[checkpoints]
type = "sqlite"
path = "db.sqlite"

[dead_letters]
type = "sqlite"
path = "db.sqlite"
"""


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args, "spec.toml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, price, vat FROM orders ORDER BY id").fetchall()


def stored_letters(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT stage, record FROM asyncetl_dead_letters ORDER BY id"
        ).fetchall()


def test_replay_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "replay_transform.py").write_text(textwrap.dedent(TRANSFORM))
    (tmp_path / "spec.toml").write_text(SPEC)
    lines = [
        '{"id":1,"price":10}',
        '{"id":2,"price":2000}',
        '{"id":3,"price":-1}',
        "{broken",
        '{"id":4,"price":5000}',
        '{"id":5,"price":20}',
    ]
    (tmp_path / "orders.jsonl").write_text("".join(line + "\n" for line in lines))
    db = tmp_path / "db.sqlite"

    first = cli(tmp_path, "run", "--log-level", "error")
    assert first.returncode == 0, first.stderr
    assert "  dead_lettered  4\n" in first.stdout
    assert rows(db) == [(1, 10, 2.0), (5, 20, 4.0)]
    before = stored_letters(db)
    assert [stage for stage, _ in before] == [
        "jsonl",
        "replay_transform:price",
        "replay_transform:price",
        "replay_transform:price",
    ]

    unfixed = cli(tmp_path, "dlq", "replay", "--log-level", "error")
    assert (unfixed.returncode, unfixed.stderr) == (0, "")
    assert unfixed.stdout.splitlines()[0] == (
        "replayed 4 dead letters: 0 loaded and removed, 4 still failing and kept"
    )
    assert stored_letters(db) == before

    fixed = cli(tmp_path, "dlq", "replay", "--log-level", "error", ALLOW_BIG_ORDERS="1")
    assert (fixed.returncode, fixed.stderr) == (0, "")
    report = fixed.stdout.splitlines()
    assert report[0] == "replayed 4 dead letters: 2 loaded and removed, 2 still failing and kept"
    # Columns are padded to one width: split on runs of two or more spaces.
    assert [re.split(r" {2,}", line.strip())[1:] for line in report[1:]] == [
        [
            "jsonl",
            "ValueError: the line is not valid JSON: unexpected character, expected a "
            "string key: line 1 column 2 (char 1)",
        ],
        ["replay_transform:price", "ValueError: order 3: negative price"],
    ]
    assert rows(db) == [(1, 10, 2.0), (2, 2000, 400.0), (4, 5000, 1000.0), (5, 20, 4.0)]
    assert stored_letters(db) == [before[0], before[2]]


@pytest.mark.anyio
async def test_replay_of_chosen_ids_or_stage_touches_no_other_letter() -> None:
    store, sink = MemoryDeadLetterStore(), PickySink()
    run = pipeline(ListSource([{"n": n} for n in (5, 101, 15, 999, 20)]), sink, store)
    await run.run()
    before = list(store.letters)
    assert [(x.id, x.stage, x.record) for x in before] == [
        ("1", "check", {"n": 5}),
        ("2", "check", {"n": 15}),
        ("3", "check", {"n": 20}),
        ("4", "picky", {"n": 101, "tagged": True}),
        ("5", "picky", {"n": 999, "tagged": True}),
    ]
    FIXED.update(check=True, sink=True)
    chosen = await replay_dead_letters(run, ids=["2", "5", "404"])
    assert chosen.removed == ["2"]
    assert [(f.letter.id, f.error) for f in chosen.failed] == [
        ("5", "ValueError: n=999 is too big")
    ]
    assert store.letters == [before[0], before[2], before[3], before[4]]
    by_stage = await replay_dead_letters(run, stage="picky")
    assert (by_stage.removed, [f.letter.id for f in by_stage.failed]) == (["4"], ["5"])
    assert store.letters == [before[0], before[2], before[4]]
    assert sink.records[-2:] == [{"n": 15, "tagged": True}, {"n": 101, "tagged": True}]


@pytest.mark.anyio
async def test_a_dry_run_checks_the_transforms_and_changes_nothing() -> None:
    class Unopenable(ListSink[Record]):
        async def open(self) -> None:
            raise AssertionError("a dry run opened the sink")

    store, sink = MemoryDeadLetterStore(), PickySink()
    run = pipeline(ListSource([{"n": n} for n in (5, 10, 101, 12)]), sink, store)
    await run.run()
    before, written = list(store.letters), list(sink.records)
    FIXED["check"] = True
    dry = Pipeline(
        "replay", run.source, Unopenable(name="picky"), run.transforms, dead_letters=store
    )
    with structlog.testing.capture_logs() as logs:
        result = await replay_dead_letters(dry, dry_run=True)
    assert [x.id for x in result.would_reach_sink] == ["1", "3"]
    assert [(f.letter.id, f.stage, f.error) for f in result.failed] == [
        ("2", "check", "ValueError: 10 is always wrong")
    ]
    assert (result.removed, result.records_written, result.attempted) == ([], 0, 3)
    assert store.letters == before
    assert sink.records == written
    assert logs == [
        {
            "event": "checked replay",
            "log_level": "info",
            "pipeline": "replay",
            "would_reach_sink": 2,
            "still_failing": 1,
        }
    ]
