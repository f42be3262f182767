"""Looking into DuckDB files from tests, with a connection of their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from asyncetl import Batch, Position, Reject, Sink


def query(path: Path | str, sql: str) -> list[tuple[object, ...]]:
    """All rows of ``sql`` on a fresh connection to ``path`` (closed again at once)."""
    conn = duckdb.connect(str(path))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def write(
    sink: Sink[object], records: Sequence[object], seq: int = 0, position: Position = 0
) -> list[Reject]:
    return list(await sink.write(Batch(seq, records, position)))


def reasons(rejects: Sequence[Reject]) -> list[tuple[object, str, str]]:
    return [(r.record, type(r.error).__name__, str(r.error)) for r in rejects]


def orders(*ids: int, qty: int = 1) -> list[Mapping[str, object]]:
    return [{"id": i, "sku": f"s{i}", "qty": qty} for i in ids]
