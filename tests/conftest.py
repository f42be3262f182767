"""Shared fixtures: the asyncio backend, PostgreSQL servers and throwaway databases."""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import pytest
import structlog

from tests.postgres_servers import (
    LOGICAL_DSN_VARIABLE,
    PrivateServer,
    ServerSetupError,
    private_server,
    wal_level,
)

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


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateServer]:
    """This run's secure private cluster (TLS, password users, logical WAL), for tests of
    authentication and TLS or that change server-wide settings; started on first use,
    stopped and deleted when the run ends."""
    with _private_cluster(secure=True) as server:
        yield server


@pytest.fixture(scope="session")
def private_logical_pg() -> Iterator[PrivateServer]:
    """This run's plain private cluster with ``wal_level = logical``: no TLS, trust, like
    the shared server; started on first use, stopped and deleted when the run ends."""
    with _private_cluster(secure=False) as server:
        yield server


@contextmanager
def _private_cluster(*, secure: bool) -> Iterator[PrivateServer]:
    try:
        with private_server(secure=secure) as server:
            yield server
    except ServerSetupError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def logical_pg(request: pytest.FixtureRequest) -> str:
    """The DSN of the ``postgres`` database of a server with ``wal_level = logical``, for CDC.

    The server named by ``ASYNCETL_TEST_PG_LOGICAL_DSN``; else the shared server when it
    already decodes logically; else this run's private cluster, so a system server left at
    ``replica`` needs no restart.
    """
    named = os.environ.get(LOGICAL_DSN_VARIABLE)
    if named:
        level = wal_level(named)
        if level != "logical":
            pytest.fail(
                f"{LOGICAL_DSN_VARIABLE} names a server with wal_level = {level}; "
                "the CDC tests need logical",
                pytrace=False,
            )
        return named
    if wal_level(pg_dsn("postgres")) == "logical":
        return pg_dsn("postgres")
    server: PrivateServer = request.getfixturevalue("private_logical_pg")
    return server.dsn()


@asynccontextmanager
async def throwaway_database(admin_dsn: str | None = None) -> AsyncIterator[str]:
    """A fresh database with a random name, dropped afterwards; yields its DSN.

    :param admin_dsn: a DSN of the server to make it on; the shared server by default.
    """
    admin_dsn = admin_dsn or pg_dsn("postgres")
    name = f"asyncetl_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh database with a random name; yields its DSN and drops it afterwards."""
    async with throwaway_database() as dsn:
        yield dsn
