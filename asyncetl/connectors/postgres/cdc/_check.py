"""What :meth:`CdcSource.check` asks the server: logical WAL, the role's rights, slot room.

Catalog queries only; nothing is created, locked or consumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from asyncetl.connectors.postgres._check import column_problems
from asyncetl.connectors.postgres._connect import Dsn
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.cdc import _catalog as catalog
from asyncetl.core.interfaces import Problem

__all__ = ["cdc_problems"]

_SERVER = """
SELECT current_setting('wal_level') AS wal_level,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS replicates,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots) AS slots,
       has_database_privilege(current_database(), 'CREATE') AS may_create
"""


async def cdc_problems(
    conn: asyncpg.Connection,
    dsn: Dsn,
    *,
    slot: str,
    create_slot: bool,
    publication: str,
    create_publication: bool,
    tables: Sequence[TableName] | None,
) -> list[Problem]:
    """Every reason a CDC source on ``conn`` could not stream ``slot`` now."""
    server = await conn.fetchrow(_SERVER)
    assert server is not None  # a SELECT without FROM returns one row
    problems = _server_problems(dsn, server["wal_level"], server["replicates"])
    problems += await _slot_problems(conn, dsn, slot, create_slot, server)
    if not await catalog.publication_exists(conn, publication):
        if not create_publication:
            problems.append(
                Problem(
                    "publication",
                    f"publication {publication!r} does not exist in {dsn.where} and "
                    "create_publication = false",
                )
            )
        elif not server["may_create"]:
            problems.append(
                Problem(
                    "publication",
                    f"publication {publication!r} does not exist in {dsn.where} and role "
                    f"{dsn.user!r} lacks CREATE on the database",
                )
            )
    for table in tables or ():
        problems += await column_problems(conn, dsn, table, {}, setting="tables")
    return problems


def _server_problems(dsn: Dsn, wal_level: str, replicates: bool) -> list[Problem]:
    problems = []
    if wal_level != "logical":
        problems.append(
            Problem(
                "dsn",
                f"PostgreSQL at {dsn.host}:{dsn.port} runs with wal_level = {wal_level}; "
                "CDC needs wal_level = logical (set it and restart the server)",
            )
        )
    if not replicates:
        problems.append(
            Problem(
                "dsn",
                f"role {dsn.user!r} has neither REPLICATION nor SUPERUSER; "
                f"ALTER ROLE {dsn.user} REPLICATION, or use another role",
            )
        )
    return problems


async def _slot_problems(
    conn: asyncpg.Connection, dsn: Dsn, slot: str, create: bool, server: asyncpg.Record
) -> list[Problem]:
    info = await catalog.slot_info(conn, slot)
    if info is not None:
        if info.plugin != "pgoutput" or info.database != dsn.database:
            return [
                Problem(
                    "slot",
                    f"slot {slot!r} on {dsn.host}:{dsn.port} decodes database "
                    f"{info.database!r} with {info.plugin!r}, not {dsn.database!r} with pgoutput",
                )
            ]
        return []
    if not create:
        return [
            Problem(
                "slot",
                f"replication slot {slot!r} does not exist on {dsn.host}:{dsn.port} "
                "and create_slot = false",
            )
        ]
    if server["slots"] >= server["max_slots"]:
        return [
            Problem(
                "slot",
                f"all {server['max_slots']} replication slots (max_replication_slots) on "
                f"{dsn.host}:{dsn.port} are in use, so slot {slot!r} cannot be created",
            )
        ]
    return []
