"""What the DuckDB connectors' ``check()`` asks, without creating the file or a table.

Connecting would create a missing database file, so an existing file is opened
read-only and a missing one is judged by its directory alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread
import duckdb

from asyncetl.core.interfaces import Problem

__all__ = ["table_problems"]


async def table_problems(path: str, table: str, *, create: bool) -> list[Problem]:
    """What stops writing ``table`` of the database ``path`` (creating it only if ``create``)."""
    return await anyio.to_thread.run_sync(_table_problems, path, table, create)


def _table_problems(path: str, table: str, create: bool) -> list[Problem]:
    if not os.path.exists(path):
        problems = _directory_problems(path)
        if not create:
            problems.append(_missing(path, table))
        return problems
    if not os.access(path, os.R_OK | os.W_OK):
        return [Problem("path", f"database {path} is not readable and writable")]
    try:
        exists = _has_table(path, table)
    except duckdb.Error as exc:
        return [Problem("path", f"cannot read DuckDB database {path}: {exc}")]
    return [] if exists or create else [_missing(path, table)]


def _directory_problems(path: str) -> list[Problem]:
    directory = Path(path).parent
    if not directory.is_dir():
        return [Problem("path", f"directory {directory} of {path} does not exist")]
    if not os.access(directory, os.W_OK | os.X_OK):
        problem = f"directory {directory} is not writable, so database {path} cannot be created"
        return [Problem("path", problem)]
    return []


def _has_table(path: str, table: str) -> bool:
    # Read-only, so that checking never changes the file.
    conn = duckdb.connect(path, read_only=True)
    try:
        (found,) = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchall()
        return bool(found[0])
    finally:
        conn.close()


def _missing(path: str, table: str) -> Problem:
    return Problem("table", f"table {table!r} does not exist in {path} and create = false")
