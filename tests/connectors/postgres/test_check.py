"""``check()`` of the PostgreSQL sources, sinks and stores: every problem, nothing changed."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from asyncetl import Problem
from asyncetl.connectors.postgres import (
    ApplySink,
    PostgresCheckpointStore,
    PostgresDeadLetterStore,
    PostgresSink,
    TableSource,
    TablesSink,
    TablesSource,
)
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio


@pytest.fixture
async def limited_role(pg_database: str) -> AsyncIterator[str]:
    """A LOGIN role with no rights beyond PUBLIC's, dropped afterwards; yields its DSN."""
    role = f"asyncetl_check_{secrets.token_hex(4)}"
    await execute(pg_database, f"CREATE ROLE {role} LOGIN")
    try:
        yield pg_database.replace("postgres@", f"{role}@")
    finally:
        await execute(pg_database, f"DROP OWNED BY {role}; DROP ROLE {role}")


def where(dsn: str) -> str:
    return dsn.split("@")[1]


def role(dsn: str) -> str:
    return dsn.split("://")[1].split("@")[0]


async def test_a_ready_table_sink_and_stores_have_no_problems(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY, total int)")
    resources = [
        PostgresSink(pg_database, "orders"),
        TableSource(pg_database, "orders", cursor=["id"], columns=["id", "total"]),
        PostgresCheckpointStore(pg_database, schema="etl"),
        PostgresDeadLetterStore(pg_database),
    ]
    assert [await resource.check() for resource in resources] == [[], [], [], []]
    # Checking created neither the stores' schema nor their tables.
    assert await rows(pg_database, "SELECT count(*) FROM pg_namespace WHERE nspname = 'etl'") == [
        (0,)
    ]
    assert await rows(
        pg_database, "SELECT count(*) FROM pg_class WHERE relname LIKE 'asyncetl_%'"
    ) == [(0,)]


async def test_a_missing_sink_table_is_a_problem_only_without_create(pg_database: str) -> None:
    missing = f"table public.orders does not exist in {where(pg_database)} and create = false"
    assert await PostgresSink(pg_database, "public.orders").check() == [Problem("table", missing)]
    assert await PostgresSink(pg_database, "public.orders", create=True).check() == []
    assert await PostgresSink(pg_database, "nope.orders", create=True).check() == [
        Problem(
            "table",
            f"schema nope does not exist in {where(pg_database)}, so table nope.orders cannot "
            "be created",
        )
    ]


async def test_a_missing_source_table_and_columns_are_named_by_their_setting(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY)")
    assert await TableSource(pg_database, "nothing").check() == [
        Problem("table", f"table nothing does not exist in {where(pg_database)}")
    ]
    source = TableSource(pg_database, "orders", cursor=["updated_at"], columns=["id", "total"])
    assert await source.check() == [
        Problem("cursor", "column 'updated_at' is not in table public.orders"),
        Problem("columns", "column 'total' is not in table public.orders"),
    ]


async def test_a_role_without_rights_is_told_each_right_it_lacks(
    pg_database: str, limited_role: str
) -> None:
    await execute(pg_database, "CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE log (n int)")
    await execute(pg_database, f"GRANT INSERT ON log TO {role(limited_role)}")
    name = role(limited_role)
    assert await PostgresSink(limited_role, "orders").check() == [
        Problem("table", f"role '{name}' lacks INSERT/UPDATE on table public.orders")
    ]
    assert await PostgresSink(limited_role, "log", mode="append").check() == []
    assert await PostgresSink(
        limited_role, "log", mode="replace_partition", partition=["n"]
    ).check() == [Problem("table", f"role '{name}' lacks DELETE on table public.log")]
    assert await TableSource(limited_role, "orders").check() == [
        Problem("table", f"role '{name}' lacks SELECT on table public.orders")
    ]


async def test_a_role_that_cannot_create_is_told_where_it_lacks_create(
    pg_database: str, limited_role: str
) -> None:
    name, at = role(limited_role), where(limited_role)
    await execute(pg_database, f"REVOKE CREATE ON DATABASE {at.split('/')[1]} FROM PUBLIC")
    assert await PostgresSink(limited_role, "orders", create=True).check() == [
        Problem(
            "table",
            f"table orders does not exist in {at} and role '{name}' lacks CREATE on schema public",
        )
    ]
    assert await PostgresCheckpointStore(limited_role, schema="etl").check() == [
        Problem(
            "table",
            f"schema etl does not exist in {at} and role '{name}' lacks CREATE on the database",
        )
    ]
    assert await PostgresDeadLetterStore(limited_role).check() == [
        Problem(
            "table",
            f"table public.asyncetl_dead_letters does not exist in {at} and role '{name}' "
            "lacks CREATE on schema public",
        )
    ]


async def test_refresh_swap_needs_to_own_the_table(pg_database: str, limited_role: str) -> None:
    name = role(limited_role)
    await execute(
        pg_database,
        f"CREATE TABLE orders (id int PRIMARY KEY); GRANT INSERT ON orders TO {name}; "
        f"GRANT CREATE ON SCHEMA public TO {name}",
    )
    assert await PostgresSink(limited_role, "orders", mode="refresh_swap").check() == [
        Problem("table", f"role '{name}' does not own table public.orders, so cannot swap it")
    ]


async def test_an_unreachable_server_is_one_problem_naming_host_and_port_not_the_password() -> None:
    sink = PostgresSink("postgresql://etl:s3cret-pw@127.0.0.1:1/db", "orders", retries=5)
    assert await sink.check() == [
        Problem(
            "dsn",
            "cannot reach PostgreSQL at 127.0.0.1:1 while connecting as 'etl': Connect call "
            "failed ('127.0.0.1', 1); check that the server is running and that the DSN's "
            "host and port are right",
        )
    ]


async def test_a_missing_database_is_named(pg_database: str) -> None:
    dsn = pg_database.rsplit("/", 1)[0] + "/no_such_db"
    host = where(pg_database).split("/")[0]
    assert await PostgresSink(dsn, "orders").check() == [
        Problem("dsn", f"database 'no_such_db' does not exist on {host}; create it or fix the DSN")
    ]


async def test_multi_table_and_apply_sinks_name_their_tables_setting(
    pg_database: str, limited_role: str
) -> None:
    name, at = role(limited_role), where(limited_role)
    await execute(pg_database, f"CREATE TABLE a (id int PRIMARY KEY); GRANT SELECT ON a TO {name}")
    assert await TablesSource(limited_role, ["a", "b"]).check() == [
        Problem("tables", f"table b does not exist in {at}")
    ]
    assert await TablesSink(limited_role, tables=["a", "b"], source_dsn=pg_database).check() == [
        Problem("tables", f"role '{name}' lacks INSERT/UPDATE on table public.a"),
        Problem(
            "tables",
            f"table b does not exist in {at} and role '{name}' lacks CREATE on schema public",
        ),
    ]
    apply = ApplySink(pg_database, tables={"public.src": "public.dst"})
    assert await apply.check() == [
        Problem("tables", f"table public.dst does not exist in {at} and create = false")
    ]
