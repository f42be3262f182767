"""Backfill stores of every kind, each a fresh one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import structlog

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


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """Undo the logging set-up a CLI run makes (it binds the test's captured stderr)."""
    yield
    structlog.reset_defaults()
