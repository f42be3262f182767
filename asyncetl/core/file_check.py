"""What ``check()`` asks of a database kept in one file, without creating the file or a table.

Connecting would create a missing database file, so an existing file is opened
read-only (by the connector's ``has_table``) and a missing one is judged by its
directory alone. Nothing here knows a database: a connector passes how to look
for a table and which errors its driver raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

from asyncetl.core.interfaces import Problem

__all__ = ["table_file_problems"]


async def table_file_problems(
    path: str,
    table: str,
    *,
    create: bool,
    database: str,
    has_table: Callable[[str, str], bool],
    errors: type[Exception],
) -> list[Problem]:
    """What stops writing ``table`` of the database file ``path`` (creating it only if ``create``).

    :param database: names the kind of database in messages: ``SQLite``.
    :param has_table: whether the existing file ``path`` holds a table named so,
        opening it read-only; run in a worker thread.
    :param errors: what ``has_table`` raises when it cannot read the file.
    """

    def problems() -> list[Problem]:
        if not os.path.exists(path):
            found = _directory_problems(path)
            return found if create else [*found, _missing(path, table)]
        if not os.access(path, os.R_OK | os.W_OK):
            return [Problem("path", f"database {path} is not readable and writable")]
        try:
            exists = has_table(path, table)
        except errors as exc:
            return [Problem("path", f"cannot read {database} database {path}: {exc}")]
        return [] if exists or create else [_missing(path, table)]

    return await anyio.to_thread.run_sync(problems)


def _directory_problems(path: str) -> list[Problem]:
    directory = Path(path).parent
    if not directory.is_dir():
        return [Problem("path", f"directory {directory} of {path} does not exist")]
    if not os.access(directory, os.W_OK | os.X_OK):
        problem = f"directory {directory} is not writable, so database {path} cannot be created"
        return [Problem("path", problem)]
    return []


def _missing(path: str, table: str) -> Problem:
    return Problem("table", f"table {table!r} does not exist in {path} and create = false")
