"""Fixtures of the CDC tests: a source database that decodes logically, and a target."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import pg_dsn
from tests.connectors.postgres.cdc.support import fresh_database


@pytest.fixture
async def cdc_db(logical_pg: str) -> AsyncIterator[str]:
    """A fresh source database on a server with logical decoding (see ``logical_pg``); its
    slots, publications and the database itself go afterwards, even on failure."""
    async with fresh_database(logical_pg) as dsn:
        yield dsn


@pytest.fixture
async def target_db() -> AsyncIterator[str]:
    """A second fresh database, for apply targets."""
    async with fresh_database(pg_dsn("postgres")) as dsn:
        yield dsn
