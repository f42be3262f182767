"""The quickstart, exactly as the README tells users to run it."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, cast

import anyio

from asyncetl import DeadLetter
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteDeadLetterStore
from examples.make_orders import GOOD_ORDERS, INVALID, MALFORMED, OUTPUT, generate
from examples.quickstart_transforms import parse_order

REPO = Path(__file__).resolve().parents[2]
SPEC = "examples/quickstart.toml"


def quickstart(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args, SPEC],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "QUICKSTART_DB": str(database)},
    )


def table(database: Path, name: str) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2')
        return [dict(row) for row in rows]


def letters(database: Path) -> list[DeadLetter]:
    store = SqliteDeadLetterStore(str(database))
    return anyio.run(partial(store.list, "quickstart"))


def committed(database: Path) -> object:
    store = SqliteCheckpointStore(str(database))
    return anyio.run(store.load, "quickstart", "jsonl")


def test_shipped_input_is_the_generators_output() -> None:
    orders = generate()
    assert OUTPUT.read_text(encoding="utf-8") == "".join(line + "\n" for line in orders.lines)
    assert len(orders.lines) == GOOD_ORDERS + len(INVALID) + len(MALFORMED) == 10_012
    assert OUTPUT.stat().st_size < 2_000_000
    assert sorted(orders.malformed) == sorted(MALFORMED)


def test_quickstart_loads_good_orders_and_dead_letters_bad_ones(tmp_path: Path) -> None:
    database = tmp_path / "quickstart.db"
    orders = generate()
    size = OUTPUT.stat().st_size

    result = quickstart(database, "run")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"pipeline quickstart finished in \d+\.\d\d s\n"
        r"  records_in     10012\n  records_out    10000\n  unchanged      0\n  dead_lettered  12\n"
        rf'  position       {{"path":"examples/data/orders.jsonl","offset":{size}}}\n',
        result.stdout,
    )
    assert "Traceback" not in result.stderr

    good = []
    for line in orders.lines:
        if line in MALFORMED or json.loads(line)["order_id"] in orders.invalid:
            continue
        good.append(parse_order(json.loads(line)))
    assert len(good) == GOOD_ORDERS
    assert table(database, "orders") == sorted(good, key=lambda row: row["order_id"])

    stored = letters(database)
    by_stage = {
        stage: [x for x in stored if x.stage == stage] for stage in ("jsonl", "parse_order")
    }
    assert len(stored) == 12
    assert [x.record for x in by_stage["jsonl"]] == orders.malformed
    assert all(x.error_type == "ValueError" for x in stored)
    assert all(
        re.fullmatch(
            r"line at byte \d+ of examples/data/orders\.jsonl is not valid JSON: .+", x.error
        )
        for x in by_stage["jsonl"]
    )
    assert {
        cast(dict[str, str], x.record)["order_id"]: x.error for x in by_stage["parse_order"]
    } == {order_id: f"order {order_id}: {reason}" for order_id, reason in orders.invalid.items()}
    assert committed(database) == {"path": "examples/data/orders.jsonl", "offset": size}


def test_second_run_reads_nothing_and_changes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "quickstart.db"
    assert quickstart(database, "run").returncode == 0
    before = {
        name: table(database, name)
        for name in ("orders", "asyncetl_checkpoints", "asyncetl_dead_letters")
    }

    result = quickstart(database, "run")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"pipeline quickstart finished in \d+\.\d\d s\n"
        r"  records_in     0\n  records_out    0\n  unchanged      0\n  dead_lettered  0\n"
        rf'  position       {{"path":"examples/data/orders.jsonl","offset":{OUTPUT.stat().st_size}}}\n',
        result.stdout,
    )
    after = {name: table(database, name) for name in before}
    # Only the recorded outcome of the last run changes: it ended later.
    outcomes = [row for row in after["asyncetl_checkpoints"] if row["source"] == "~run outcome"]
    assert [json.loads(str(row["position"]))["state"] for row in outcomes] == ["finished"]
    for rows in (before, after):
        rows["asyncetl_checkpoints"] = [
            row for row in rows["asyncetl_checkpoints"] if row["source"] != "~run outcome"
        ]
    assert after == before

    listing = quickstart(database, "dlq", "list")
    assert listing.stdout.splitlines()[-1] == "12 dead letters shown"
    replay = quickstart(database, "dlq", "replay")
    assert replay.stdout.splitlines()[0] == (
        "replayed 12 dead letters: 0 loaded and removed, 12 still failing and kept"
    )
    assert len(letters(database)) == 12
    assert table(database, "orders") == before["orders"]
    validate = quickstart(database, "validate")
    assert (validate.returncode, validate.stdout) == (0, "ok: quickstart\n")
