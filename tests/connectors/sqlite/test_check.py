"""``check()`` of the SQLite sink and stores: the file and table, never created by asking."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from asyncetl import Problem
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteDeadLetterStore, SqliteSink

pytestmark = pytest.mark.anyio


async def test_a_missing_table_is_a_problem_only_without_create(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE present (id INTEGER)")
    conn.close()
    assert await SqliteSink(str(db), "present").check() == []
    assert await SqliteSink(str(db), "orders", create=True).check() == []
    assert await SqliteSink(str(db), "orders").check() == [
        Problem("table", f"table 'orders' does not exist in {db} and create = false")
    ]
    with sqlite3.connect(db) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    assert tables == [("present",)]


async def test_a_missing_file_is_judged_by_its_directory_and_not_created(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    assert await SqliteCheckpointStore(str(fresh)).check() == []
    assert await SqliteDeadLetterStore(str(fresh)).check() == []
    assert await SqliteSink(str(fresh), "orders").check() == [
        Problem("table", f"table 'orders' does not exist in {fresh} and create = false")
    ]
    assert not fresh.exists()
    nowhere = tmp_path / "no" / "state.db"
    assert await SqliteCheckpointStore(str(nowhere)).check() == [
        Problem("path", f"directory {nowhere.parent} of {nowhere} does not exist")
    ]
