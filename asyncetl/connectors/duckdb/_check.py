"""What the DuckDB connectors' ``check()`` asks, without creating the file or a table."""

from __future__ import annotations

import duckdb

from asyncetl.core.file_check import table_file_problems
from asyncetl.core.interfaces import Problem

__all__ = ["table_problems"]


async def table_problems(path: str, table: str, *, create: bool) -> list[Problem]:
    """What stops writing ``table`` of the database ``path`` (creating it only if ``create``)."""
    return await table_file_problems(
        path, table, create=create, database="DuckDB", has_table=_has_table, errors=duckdb.Error
    )


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
