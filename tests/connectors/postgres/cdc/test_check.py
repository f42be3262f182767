"""``CdcSource.check()``: logical WAL, REPLICATION, slot and publication, and nothing created."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from asyncetl import Problem
from asyncetl.connectors.postgres.cdc import CdcSource
from tests.conftest import pg_dsn, throwaway_database
from tests.connectors.postgres.cdc.support import (
    execute,
    fetchval,
    random_name,
    server_and_database,
)
from tests.postgres_servers import wal_level

pytestmark = pytest.mark.anyio


def host_port(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}"


@pytest.fixture
async def plain_role(cdc_db: str) -> AsyncIterator[str]:
    """A LOGIN role without REPLICATION on the logical server; yields its DSN to ``cdc_db``."""
    role = random_name("asyncetl_norepl")
    await execute(cdc_db, f"CREATE ROLE {role} LOGIN")
    try:
        yield f"postgresql://{role}@{host_port(cdc_db)}{urlsplit(cdc_db).path}"
    finally:
        await execute(cdc_db, f"DROP OWNED BY {role}; DROP ROLE {role}")


async def test_a_ready_server_has_no_problems_and_gets_no_slot_or_publication(
    cdc_db: str,
) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    slot, publication = random_name("slot"), random_name("pub")
    source = CdcSource(cdc_db, slot=slot, publication=publication, tables=["t"])
    assert await source.check() == []
    assert await fetchval(cdc_db, "SELECT count(*) FROM pg_replication_slots") == 0
    assert await fetchval(cdc_db, "SELECT count(*) FROM pg_publication") == 0


async def test_a_role_without_replication_hears_every_problem_at_once(
    cdc_db: str, plain_role: str
) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    role = urlsplit(plain_role).username
    source = CdcSource(
        plain_role,
        slot="absent_slot",
        publication="absent_pub",
        tables=["t", "missing"],
        create_slot=False,
        create_publication=False,
    )
    where = server_and_database(cdc_db)
    assert await source.check() == [
        Problem(
            "dsn",
            f"role '{role}' has neither REPLICATION nor SUPERUSER; "
            f"ALTER ROLE {role} REPLICATION, or use another role",
        ),
        Problem(
            "slot",
            f"replication slot 'absent_slot' does not exist on {host_port(cdc_db)} "
            "and create_slot = false",
        ),
        Problem(
            "publication",
            f"publication 'absent_pub' does not exist in {where} and create_publication = false",
        ),
        Problem("tables", f"role '{role}' lacks SELECT on table public.t"),
        Problem("tables", f"table missing does not exist in {where}"),
    ]


async def test_a_server_without_logical_wal_is_named() -> None:
    async with throwaway_database() as dsn:
        level = wal_level(pg_dsn("postgres"))
        source = CdcSource(dsn, slot="s", publication="p")
        expected = [
            Problem(
                "dsn",
                f"PostgreSQL at {host_port(dsn)} runs with wal_level = {level}; "
                "CDC needs wal_level = logical (set it and restart the server)",
            )
        ]
        assert await source.check() == ([] if level == "logical" else expected)
