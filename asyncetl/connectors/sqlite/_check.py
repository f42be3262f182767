"""What the SQLite connectors' ``check()`` asks, without creating the file or a table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from asyncetl.connectors.sqlite._sql import TABLE_COLUMNS
from asyncetl.core.file_check import table_file_problems
from asyncetl.core.interfaces import Problem

__all__ = ["table_problems"]


async def table_problems(path: str, table: str, *, create: bool) -> list[Problem]:
    """What stops writing ``table`` of the database ``path`` (creating it only if ``create``)."""
    return await table_file_problems(
        path, table, create=create, database="SQLite", has_table=_has_table, errors=sqlite3.Error
    )


def _has_table(path: str, table: str) -> bool:
    # Read-only, so that checking never creates or changes the file.
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(TABLE_COLUMNS, (table,)).fetchone() is not None
    finally:
        conn.close()
