"""What the PostgreSQL connectors' ``check()`` asks of the catalog, changing nothing.

One connection, tried once within a short time limit (no retries: an operator
checking a spec wants the answer now), then catalog queries only:
``to_regclass`` for tables, ``has_table_privilege`` and ``has_schema_privilege``
for the role's rights, ``pg_has_role`` for ownership.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg
import asyncpg.exceptions as pgerr

from asyncetl.connectors.postgres._connect import Dsn, to_connector_error
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.schema import describe_table
from asyncetl.core.interfaces import Problem

__all__ = [
    "CONNECT_TIMEOUT",
    "SINK_PRIVILEGES",
    "Needs",
    "checking",
    "column_problems",
    "sink_problems",
    "table_problems",
]

#: Seconds the one connection attempt of a check may take.
CONNECT_TIMEOUT = 5.0

#: The rights each sink mode uses on its target table.
SINK_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "upsert": ("INSERT", "UPDATE"),
    "append": ("INSERT",),
    "replace_partition": ("INSERT", "DELETE"),
    "refresh_swap": ("INSERT",),
    "soft_delete": ("INSERT", "UPDATE"),
}

_CREATE_SCHEMA = "SELECT coalesce($1::text, current_schema())"
_SCHEMA_EXISTS = "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)"
_HAS_SCHEMA_PRIVILEGE = "SELECT has_schema_privilege($1, $2)"
_MAY_CREATE_SCHEMA = "SELECT has_database_privilege(current_database(), 'CREATE')"
_HAS_TABLE_PRIVILEGE = "SELECT has_table_privilege(to_regclass($1), $2)"
_OWNS = "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass($1)"


@dataclass(frozen=True, slots=True)
class Needs:
    """What a table must allow: the rights on it, or on its schema when it must be created.

    :param privileges: table privileges the role needs (``INSERT``…).
    :param create: whether a missing table would be created (else it is a problem).
    :param own: whether the role must own the table (to rename it away).
    :param create_schema: whether a missing schema would be created too.
    """

    privileges: tuple[str, ...]
    create: bool
    own: bool = False
    create_schema: bool = False


async def sink_problems(dsn: Dsn, table: TableName, mode: str, *, create: bool) -> list[Problem]:
    """What keeps a ``PostgresSink`` of ``mode`` from writing to ``table``.

    The table must exist (or ``create`` be set) and allow the mode's rights;
    ``refresh_swap`` also needs CREATE on the schema (for its staging table) and
    ownership of the table (to rename it away).
    """
    swap = mode == "refresh_swap"
    problems: list[Problem] = []
    async with checking(dsn, problems) as conn:
        if conn is not None:
            needs = Needs(SINK_PRIVILEGES[mode], create=create, own=swap)
            problems += await table_problems(conn, dsn, table, needs)
            if swap:
                staging = table.sibling("__asyncetl_new")  # RefreshSwapWriter's
                problems += await table_problems(conn, dsn, staging, Needs((), create=True))
    return problems


@asynccontextmanager
async def checking(dsn: Dsn, problems: list[Problem]) -> AsyncIterator[asyncpg.Connection | None]:
    """A connection to ``dsn``, or ``None`` after adding why there is none to ``problems``.

    A catalog query that fails adds its error to ``problems`` too.
    """
    try:
        conn = await asyncpg.connect(dsn.url, timeout=CONNECT_TIMEOUT)
    except (pgerr.PostgresError, pgerr.InterfaceError, OSError, TimeoutError) as exc:
        problems.append(
            Problem("dsn", str(to_connector_error(exc, dsn, f"connecting as {dsn.user!r}")))
        )
        yield None
        return
    try:
        yield conn
    except (pgerr.PostgresError, pgerr.InterfaceError) as exc:
        problems.append(Problem(None, str(to_connector_error(exc, dsn, "reading the catalog"))))
    finally:
        with anyio.move_on_after(CONNECT_TIMEOUT, shield=True):
            await conn.close()


async def table_problems(
    conn: asyncpg.Connection, dsn: Dsn, table: TableName, needs: Needs, setting: str = "table"
) -> list[Problem]:
    """What stops role ``dsn.user`` from using ``table`` as ``needs`` says."""
    schema = await describe_table(conn, table)
    if schema is None:
        return await _creation_problems(conn, dsn, table, needs, setting)
    problems = await _privilege_problems(conn, dsn, schema.table, needs.privileges, setting)
    if needs.own and not await conn.fetchval(_OWNS, schema.table.sql):
        problems.append(
            Problem(
                setting, f"role {dsn.user!r} does not own table {schema.table}, so cannot swap it"
            )
        )
    return problems


async def column_problems(
    conn: asyncpg.Connection,
    dsn: Dsn,
    table: TableName,
    columns: Mapping[str, Sequence[str]],
    setting: str = "table",
) -> list[Problem]:
    """What stops reading ``table``: its absence, a missing right or a missing column.

    :param columns: column names by the setting that named them (``cursor``, ``key``…).
    :param setting: the setting that names the table.
    """
    schema = await describe_table(conn, table)
    if schema is None:
        return [Problem(setting, f"table {table} does not exist in {dsn.where}")]
    present = {column.name for column in schema.columns}
    problems = await _privilege_problems(conn, dsn, schema.table, ("SELECT",), setting)
    problems += [
        Problem(named_by, f"column {name!r} is not in table {schema.table}")
        for named_by, names in columns.items()
        for name in names
        if name not in present
    ]
    return problems


async def _privilege_problems(
    conn: asyncpg.Connection, dsn: Dsn, table: TableName, privileges: Sequence[str], setting: str
) -> list[Problem]:
    missing = [p for p in privileges if not await conn.fetchval(_HAS_TABLE_PRIVILEGE, table.sql, p)]
    if not missing:
        return []
    rights = "/".join(missing)
    return [Problem(setting, f"role {dsn.user!r} lacks {rights} on table {table}")]


async def _creation_problems(
    conn: asyncpg.Connection, dsn: Dsn, table: TableName, needs: Needs, setting: str
) -> list[Problem]:
    if not needs.create:
        return [Problem(setting, f"table {table} does not exist in {dsn.where} and create = false")]
    schema: str | None = await conn.fetchval(_CREATE_SCHEMA, table.schema)
    if schema is None:
        message = f"no schema of the search_path exists in {dsn.where} to create table {table} in"
        return [Problem(setting, message)]
    if not await conn.fetchval(_SCHEMA_EXISTS, schema):
        return await _missing_schema_problems(conn, dsn, schema, table, needs, setting)
    if not await conn.fetchval(_HAS_SCHEMA_PRIVILEGE, schema, "CREATE"):
        message = (
            f"table {table} does not exist in {dsn.where} and role {dsn.user!r} lacks "
            f"CREATE on schema {schema}"
        )
        return [Problem(setting, message)]
    return []


async def _missing_schema_problems(
    conn: asyncpg.Connection, dsn: Dsn, schema: str, table: TableName, needs: Needs, setting: str
) -> list[Problem]:
    if not needs.create_schema:
        message = (
            f"schema {schema} does not exist in {dsn.where}, so table {table} cannot be created"
        )
        return [Problem(setting, message)]
    if await conn.fetchval(_MAY_CREATE_SCHEMA):
        return []
    message = (
        f"schema {schema} does not exist in {dsn.where} and role {dsn.user!r} lacks "
        "CREATE on the database"
    )
    return [Problem(setting, message)]
