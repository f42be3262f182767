"""Looking into SQLite files from tests, with a connection of their own."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def query(path: Path | str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """All rows of ``sql`` run on a fresh connection to ``path``."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def execute(path: Path | str, script: str) -> None:
    """Run ``script`` (several statements) and commit."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(script)
        conn.commit()
