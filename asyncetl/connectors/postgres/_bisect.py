"""Finding the records the server refuses, so that only they take the failure policy.

When a batch fails on data (a constraint, a value out of range, JSON nested too deep…),
its groups are loaded again in one transaction, each part under a savepoint: a part
that fails is halved and tried again, down to the single records that fail on their
own. Those are refused with the server's reason; every other record lands in the same
transaction. A batch with k bad records of n costs about k·log2(n) extra statements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from asyncetl.connectors.postgres._load import CopyRows
from asyncetl.connectors.postgres._plan import Group
from asyncetl.core.batch import Reject
from asyncetl.core.errors import PermanentError

__all__ = ["bisectable", "is_record_error", "load_bisecting"]

#: Server errors that one record can cause: integrity violations (23), data exceptions
#: (22) and program limits such as the stack depth of deeply nested JSON (54).
_RECORD_CLASSES = ("22", "23", "54")

Load = Callable[[asyncpg.Connection, Group], Awaitable[int]]


def is_record_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (a failed batch's cause) is a failure some record alone may cause."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and str(state)[:2] in _RECORD_CLASSES


def bisectable(groups: Sequence[Group]) -> bool:
    """Whether every group holds rows planned in Python (COPY text lines are not split)."""
    return all(not isinstance(g.rows, CopyRows) for g in groups)


async def load_bisecting(
    conn: asyncpg.Connection, load: Load, group: Group, table: str
) -> tuple[int, list[Reject]]:
    """Load ``group`` through ``load``, refusing the records the server refuses alone.

    :returns: rows changed, and the records refused with the server's reason.
    """
    assert not isinstance(group.rows, CopyRows)
    rows: list[Any] = list(group.rows)
    records = list(group.records)
    rejects: list[Reject] = []
    changed = 0
    pending = [(0, len(rows))]
    while pending:
        start, end = pending.pop()
        part = Group(group.columns, records[start:end], rows[start:end])
        try:
            async with conn.transaction():  # a savepoint inside the batch's transaction
                changed += await load(conn, part)
        except asyncpg.PostgresError as exc:
            if not is_record_error(exc):
                raise
            if end - start == 1:
                rejects.append(Reject(records[start], PermanentError(_refusal(table, exc))))
                continue
            middle = (start + end) // 2
            pending += [(middle, end), (start, middle)]  # the first half is tried first
    return changed, rejects


def _refusal(table: str, exc: asyncpg.PostgresError) -> str:
    detail = getattr(exc, "detail", None)
    return (
        f"table {table} refused the record: {exc.message}"
        + (f" ({detail})" if detail else "")
        + "; fix the record, or the table's constraint"
    )
