"""Finding the values asyncpg cannot encode for their column, to name them in errors.

asyncpg's binary COPY fails with a bare ``TypeError`` (``must be real number,
not str``) that names neither row nor column. After such a failure the rows are
bound, a hundred at a time, to a prepared ``SELECT $1::type, …`` with
``executemany``, whose error names the element and the argument: the record and
the column. This runs only after a failure, so its cost does not matter.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import asyncpg.exceptions as pgerr

__all__ = ["BadValue", "find_bad_values"]

_WHERE = re.compile(r"query argument \$(\d+) in element #(\d+)")
_CHUNK = 100


@dataclass(frozen=True, slots=True)
class BadValue:
    """Row ``row`` holds, in column ``column``, a value its type cannot take."""

    row: int
    column: str
    value: Any
    type: str
    reason: str

    def message(self, table: str) -> str:
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return (
            f"column {self.column!r} of table {table} is {self.type}, which cannot take the "
            f"value {shown} ({self.reason}); convert it with a transform or fix the table"
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, decimal.InvalidOperation):
        return "not a decimal number"
    return str(exc).strip() or type(exc).__name__


async def find_bad_values(
    conn: asyncpg.Connection,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> list[BadValue]:
    """The first unencodable value of each row that has one.

    :param types: the SQL type of each column, as ``format_type`` spells it.
    """
    casts = ", ".join(f"${i}::{sql_type}" for i, sql_type in enumerate(types, 1))
    statement = await conn.prepare(f"SELECT {casts}")
    bad: list[BadValue] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        offset = 0
        while offset < len(chunk):
            try:
                await statement.executemany(chunk[offset:])
                break
            except pgerr.DataError as exc:
                where = _WHERE.search(str(exc))
                if where is None:
                    raise
                arg, element = int(where[1]) - 1, int(where[2])
                index = offset + element
                reason = _reason(exc.__cause__ or exc)
                bad.append(
                    BadValue(start + index, columns[arg], chunk[index][arg], types[arg], reason)
                )
                offset = index + 1
    return bad
