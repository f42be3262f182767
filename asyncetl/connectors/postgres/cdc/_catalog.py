"""What CDC asks the catalog, over asyncpg: slots, publications, tables, the consumer lock.

Every identifier is quoted by :func:`~asyncetl.connectors.postgres._sql.quote_ident`
and every value is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from asyncetl.connectors.postgres._connect import Dsn, map_errors
from asyncetl.connectors.postgres._sql import TableName, quote_ident, quote_qualified
from asyncetl.connectors.postgres.cdc._lsn import parse_lsn
from asyncetl.connectors.postgres.cdc._values import SESSION_SETTINGS
from asyncetl.core.errors import ConfigError, PermanentError

__all__ = [
    "SlotInfo",
    "TableInfo",
    "check_slot_name",
    "connect",
    "drop_publication",
    "drop_slot",
    "ensure_publication",
    "publication_exists",
    "consumer_attached",
    "release_lock",
    "resolve_tables",
    "slot_info",
    "table_info",
    "try_lock",
]

_SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")
_LOCK_NAMESPACE = "asyncetl.cdc"


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A replication slot as ``pg_replication_slots`` shows it, with lag measured now."""

    name: str
    plugin: str | None
    database: str | None
    active: bool
    active_pid: int | None
    confirmed_flush: int | None
    restart_lsn: int | None
    wal_status: str | None
    current_lsn: int
    lag_bytes: int | None
    restart_lag_bytes: int | None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table's columns (name, type OID, SQL type) and primary key, from the catalog."""

    schema: str
    name: str
    columns: tuple[tuple[str, int, str], ...]
    key: tuple[str, ...]
    replica_identity: str

    @property
    def sql(self) -> str:
        return quote_qualified(self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def sql_type(self, column: str) -> str:
        return next(sql for name, _, sql in self.columns if name == column)


def check_slot_name(slot: str) -> str:
    """``slot`` if PostgreSQL accepts it as a slot name.

    :raises ConfigError: otherwise, saying what is allowed.
    """
    if not isinstance(slot, str) or not _SLOT_NAME.fullmatch(slot):
        raise ConfigError(
            f"replication slot name {slot!r} is invalid; use 1 to 63 lower-case letters, "
            "digits and underscores",
            key="slot",
        )
    return slot


async def connect(dsn: Dsn, what: str) -> asyncpg.Connection:
    """An asyncpg connection whose text output the value converters can parse."""
    settings = {k: v for k, v in SESSION_SETTINGS.items() if k != "client_encoding"}
    with map_errors(dsn, what):
        return await asyncpg.connect(dsn.url, server_settings=settings, timeout=10)


async def slot_info(conn: asyncpg.Connection, slot: str) -> SlotInfo | None:
    """The slot named ``slot``, or ``None`` when there is none."""
    row = await conn.fetchrow(
        """
        SELECT slot_name, plugin, database, active, active_pid,
               confirmed_flush_lsn::text AS confirmed, restart_lsn::text AS restart,
               wal_status, pg_current_wal_lsn()::text AS current,
               pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag,
               pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS restart_lag
        FROM pg_replication_slots WHERE slot_name = $1
        """,
        slot,
    )
    if row is None:
        return None
    return SlotInfo(
        row["slot_name"],
        row["plugin"],
        row["database"],
        row["active"],
        row["active_pid"],
        _lsn(row["confirmed"]),
        _lsn(row["restart"]),
        row["wal_status"],
        parse_lsn(row["current"]),
        row["lag"],
        row["restart_lag"],
    )


async def row_estimates(
    conn: asyncpg.Connection, tables: Sequence[TableInfo]
) -> dict[str, int | None]:
    """Each table's rows per the planner (``pg_class.reltuples``); ``None`` if never analysed."""
    estimates: dict[str, int | None] = {}
    for table in tables:
        value = await conn.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", table.sql
        )
        estimates[table.qualified] = value if value is not None and value >= 0 else None
    return estimates


def _lsn(text: str | None) -> int | None:
    return parse_lsn(text) if text is not None else None


async def try_lock(conn: asyncpg.Connection, slot: str) -> bool:
    """Take the session advisory lock that makes one process the consumer of ``slot``."""
    locked: bool = await conn.fetchval(
        "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, slot
    )
    return locked


async def consumer_attached(conn: asyncpg.Connection, slot: str) -> bool:
    """Whether a process holds the consumer lock of ``slot`` (see :func:`try_lock`).

    It does from before its snapshot until it stops, while the slot itself is
    active only once streaming.
    """
    held: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 2 AND classid = hashtext($1)::oid AND objid = hashtext($2)::oid "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        _LOCK_NAMESPACE,
        slot,
    )
    return held


async def release_lock(conn: asyncpg.Connection, slot: str) -> None:
    """Release the consumer lock of ``slot`` held by this session."""
    await conn.execute(
        "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, slot
    )


async def resolve_tables(conn: asyncpg.Connection, tables: Sequence[str]) -> list[TableName]:
    """Each of ``tables`` as a schema-qualified name, resolved with the search path.

    :raises PermanentError: naming the first table that does not exist.
    """
    resolved = []
    for text in tables:
        name = TableName.parse(text)
        row = await conn.fetchrow(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            name.sql,
        )
        if row is None:
            raise PermanentError(
                f"table {text!r} does not exist in the source database; "
                "create it or remove it from tables"
            )
        resolved.append(TableName(row[0], row[1]))
    return resolved


async def publication_exists(conn: asyncpg.Connection, publication: str) -> bool:
    """Whether a publication named ``publication`` exists."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", publication
    )
    return found


async def ensure_publication(
    conn: asyncpg.Connection, publication: str, tables: Sequence[TableName] | None, *, create: bool
) -> list[TableName]:
    """The tables ``publication`` publishes, creating it first when asked and missing.

    A publication this creates publishes a partitioned table's changes as its own
    (``publish_via_partition_root``): one table in the snapshot, the stream and the target,
    whichever partition a row lives in (or moves to).

    :param tables: what to publish when creating it; ``None`` publishes all tables.
    :raises PermanentError: when it is missing and ``create`` is false.
    """
    if not await publication_exists(conn, publication):
        if not create:
            raise PermanentError(
                f"publication {publication!r} does not exist; create it "
                "(CREATE PUBLICATION … FOR TABLE …) or set create_publication = true"
            )
        target = "ALL TABLES" if tables is None else "TABLE " + ", ".join(t.sql for t in tables)
        await conn.execute(
            f"CREATE PUBLICATION {quote_ident(publication)} FOR {target} "
            "WITH (publish_via_partition_root = true)"
        )
    rows = await conn.fetch(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 "
        "ORDER BY schemaname, tablename",
        publication,
    )
    return [TableName(r[0], r[1]) for r in rows]


async def table_info(conn: asyncpg.Connection, table: TableName) -> TableInfo:
    """Columns, types, primary key and replica identity of ``table``.

    :raises PermanentError: when the table does not exist.
    """
    rows = await conn.fetch(
        """
        SELECT a.attname, a.atttypid::int AS oid, format_type(a.atttypid, a.atttypmod) AS sql,
               COALESCE(a.attnum = ANY (i.indkey::int2[]), false) AS in_key, c.relreplident
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE n.nspname = $1 AND c.relname = $2
        ORDER BY a.attnum
        """,
        table.schema,
        table.name,
    )
    if not rows:
        raise PermanentError(
            f"table {table} does not exist in the source database", setting="tables"
        )
    key_order = await conn.fetch(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
        WHERE i.indrelid = to_regclass($1) AND i.indisprimary
        ORDER BY array_position(i.indkey::int2[], a.attnum)
        """,
        table.sql,
    )
    return TableInfo(
        table.schema or "public",
        table.name,
        tuple((r["attname"], r["oid"], r["sql"]) for r in rows),
        tuple(r[0] for r in key_order),
        str(rows[0]["relreplident"]),
    )


async def drop_slot(conn: asyncpg.Connection, slot: str) -> bool:
    """Drop ``slot`` if it exists (waiting for a consumer that still holds it); whether it did."""
    dropped: bool = await conn.fetchval(
        "SELECT count(pg_drop_replication_slot(slot_name)) > 0 FROM pg_replication_slots "
        "WHERE slot_name = $1",
        slot,
    )
    return dropped


async def drop_publication(conn: asyncpg.Connection, publication: str) -> bool:
    """Drop ``publication`` if it exists; whether it did."""
    if not await publication_exists(conn, publication):
        return False
    await conn.execute(f"DROP PUBLICATION IF EXISTS {quote_ident(publication)}")
    return True
