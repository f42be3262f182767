"""Backfill stores of every kind, each a fresh one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from asyncetl.backfill import BackfillStore, MemoryBackfillStore
from asyncetl.connectors.postgres.backfill_store import PostgresBackfillStore
from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore
from tests.conftest import throwaway_database

#: Makes store objects that all see the same partitions, like workers sharing one store.
StoreFactory = Callable[[], BackfillStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of stores over one backing database, of each kind in turn."""
    if request.param == "memory":
        shared = MemoryBackfillStore()
        yield lambda: shared
    elif request.param == "sqlite":
        yield lambda: SqliteBackfillStore(tmp_path / "backfill.db")
    else:
        async with throwaway_database() as dsn:
            yield lambda: PostgresBackfillStore(dsn)
