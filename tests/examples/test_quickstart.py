"""The quickstart, exactly as the README tells users to run it."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from functools import partial
from pathlib import Path
from typing import Any, cast

import anyio

from asyncetl import DeadLetter
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteDeadLetterStore
from examples.make_orders import GOOD_ORDERS, INVALID, MALFORMED, OUTPUT, generate
from tests.examples.helpers import loaded_orders, run_example

SPEC = "examples/quickstart.toml"


def quickstart(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_example(SPEC, *args, env={"QUICKSTART_DB": str(database)})


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

    good = loaded_orders(orders)
    assert len(good) == GOOD_ORDERS
    assert table(database, "orders") == good

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


def test_a_dry_run_replay_lists_the_letters_in_aligned_columns(tmp_path: Path) -> None:
    database = tmp_path / "quickstart.db"
    assert quickstart(database, "run").returncode == 0
    result = quickstart(database, "dlq", "replay", "--dry-run", "--log-level", "warning")
    assert (result.returncode, result.stderr) == (0, "")
    not_json = "ValueError: the line is not valid JSON: "
    assert result.stdout.splitlines() == [
        "dry run, nothing written or removed: of 12 dead letters, 0 pass the transforms and "
        "would go to the sink (not tried), 12 still failing",
        # A batch's letters are stored with it: the source's first, then the transforms'.
        f"  1   jsonl        {not_json}unexpected end of data: line 1 column 59 (char 58)",
        f"  2   jsonl        {not_json}trailing comma is not allowed: line 1 column 37 (char 36)",
        f"  3   jsonl        {not_json}unexpected end of data: line 1 column 46 (char 45)",
        f"  4   jsonl        {not_json}unexpected character, expected a string key: "
        "line 1 column 23 (char 22)",
        "  5   parse_order  ValueError: order ORD-005000: customer is missing",
        "  6   parse_order  ValueError: order ORD-005828: unknown country 'Atlantis'",
        "  7   parse_order  ValueError: order ORD-006154: quantity must be a positive integer, "
        "got -2",
        "  8   parse_order  ValueError: order ORD-006614: unit_price must be a number, "
        "got 'twelve'",
        f"  9   jsonl        {not_json}unexpected character, expected a string key: "
        "line 1 column 2 (char 1)",
        f"  10  jsonl        {not_json}unexpected character, expected ',' or '}}': "
        "line 1 column 23 (char 22)",
        f"  11  jsonl        {not_json}unexpected character, expected a JSON value: "
        "line 1 column 1 (char 0)",
        "  12  parse_order  ValueError: order ORD-008597: ordered_at must be an ISO 8601 time "
        "with a UTC offset, got 'yesterday'",
    ]
