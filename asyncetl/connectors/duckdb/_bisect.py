"""Which records of a batch DuckDB refuses, when one statement fails for some of its rows.

DuckDB checks NOT NULL, PRIMARY KEY, UNIQUE and CHECK constraints (and casts)
per statement, so one bad row fails the bulk load of its whole batch, and the
transaction with it. The records are then tried in order, in halves, each
try in a transaction that is rolled back: a part that loads together with the
records accepted so far is accepted whole, a single record that does not is
refused with DuckDB's error. A duplicate key within the batch thus refuses
the later record and keeps the first. A batch with k bad records costs about
2·k·log₂(n) tries; a batch with none costs nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import duckdb

__all__ = ["RECORD_ERRORS", "refused_rows"]

#: DuckDB errors a row's values can cause, as opposed to the table's or the database's.
RECORD_ERRORS: tuple[type[duckdb.Error], ...] = (
    duckdb.ConstraintException,
    duckdb.ConversionException,
)


def refused_rows(
    count: int, fails: Callable[[Sequence[int]], BaseException | None]
) -> dict[int, BaseException]:
    """The rows (of ``count``) that fail when added, in order, to the rows that load.

    :param fails: loads the given rows in a transaction it rolls back; returns the
        error of a failed load, ``None`` when they loaded.
    :returns: row → the error that refused it.
    """
    accepted: list[int] = []
    refused: dict[int, BaseException] = {}
    parts = deque([list(range(count))])
    while parts:
        part = parts.popleft()
        error = fails([*accepted, *part])
        if error is None:
            accepted += part
        elif len(part) == 1:
            refused[part[0]] = error
        else:
            half = len(part) // 2
            parts.extendleft([part[half:], part[:half]])
    return refused
