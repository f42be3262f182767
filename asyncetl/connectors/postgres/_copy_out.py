"""``COPY (SELECT …) TO STDOUT`` of a query bounded by values, which COPY cannot bind.

COPY takes no parameters, so the values become settings local to the
transaction (``set_config(…, true)``, themselves bound) and the query reads
them back with :func:`copy_setting`: no value is ever spliced into SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import asyncpg

__all__ = ["copy_query_out", "copy_query_parts", "copy_setting", "set_copy_setting"]


def copy_setting(n: int) -> str:
    """The SQL that reads value ``n`` (from 1) given to :func:`copy_query_out`, as text."""
    return f"current_setting('asyncetl.p{n}')"


def set_copy_setting(n: int, value: str) -> str:
    """The SQL that makes ``value`` (an SQL expression) value ``n`` for :func:`copy_setting`."""
    return f"set_config('asyncetl.p{n}', {value}, true)"


async def copy_query_out(
    conn: asyncpg.Connection,
    sql: str,
    values: Sequence[str],
    *,
    format: Literal["text", "binary"] | None = None,
) -> tuple[bytes, int]:
    """What ``COPY (sql) TO STDOUT`` prints, and how many rows, ``values`` readable in ``sql``.

    Must run inside a transaction: the settings holding ``values`` last until its end.
    """
    parts, rows = await copy_query_parts(conn, sql, values, format=format)
    return b"".join(parts), rows


async def copy_query_parts(
    conn: asyncpg.Connection,
    sql: str,
    values: Sequence[str],
    *,
    format: Literal["text", "binary"] | None = None,
) -> tuple[list[bytes], int]:
    """Like :func:`copy_query_out`, with the output in the parts it arrived in, not joined."""
    if values:
        settings = ", ".join(set_copy_setting(n, f"${n}") for n in range(1, len(values) + 1))
        await conn.execute(f"SELECT {settings}", *values)
    parts: list[bytes] = []

    async def keep(data: bytes) -> None:
        parts.append(data)

    status = await conn.copy_from_query(sql, output=keep, format=format)
    return parts, int(status.rsplit(" ", 1)[-1])
