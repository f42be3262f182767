"""Shared fixtures: the asyncio backend and throwaway PostgreSQL databases."""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import structlog

PG_HOST = os.environ.get("ASYNCETL_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ASYNCETL_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ASYNCETL_TEST_PG_USER", "postgres")


def pg_dsn(database: str) -> str:
    """A DSN for ``database`` on the test server."""
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Start each test from structlog's defaults, whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _default_gc() -> Iterator[None]:
    """Undo the collector settings of a command run in the test process (see ``tune_gc``)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def anyio_backend() -> str:
    # asyncpg and aiohttp are asyncio-only; asyncetl runs on anyio over asyncio.
    return "asyncio"


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A fresh database with a random name, dropped afterwards; yields its DSN."""
    name = f"asyncetl_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield pg_dsn(name)
    finally:
        admin = await asyncpg.connect(pg_dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh database with a random name; yields its DSN and drops it afterwards."""
    async with throwaway_database() as dsn:
        yield dsn
