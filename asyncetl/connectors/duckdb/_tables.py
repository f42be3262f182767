"""What the sink does to tables inside its transaction: read, create, evolve, load by mode.

Every function takes the connection of the sink's worker thread, inside the
batch's transaction, and the name under which the batch's Arrow table is
registered (:data:`BATCH`). Columns whose names start with :data:`META` are
the sink's own markers (a delete, a value to keep, the record's ordinal): they
are staged, never stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from asyncetl.connectors.duckdb._changes import DELETE, KEEP
from asyncetl.connectors.duckdb._sql import columns_sql, quote_ident

__all__ = [
    "BATCH",
    "META",
    "ORDINAL",
    "add_columns",
    "create_like",
    "append",
    "apply_changes",
    "create_table",
    "drop_table",
    "replace_partitions",
    "swap_in",
    "stored",
    "table_types",
    "truncate",
    "upsert",
]

BATCH = "__asyncetl_batch"
META = "__asyncetl_"
ORDINAL = "__asyncetl_ord"
_STAGE = "__asyncetl_stage"


def table_types(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, pa.DataType] | None:
    """The table's columns with their Arrow types, in table order; ``None`` when it is missing."""
    (found,) = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
        "AND schema_name = current_schema() AND database_name = current_database()",
        [table],
    ).fetchall()
    if not found[0]:
        return None
    schema = conn.sql(f"SELECT * FROM {quote_ident(table)} LIMIT 0").to_arrow_table().schema  # noqa: S608
    return {field.name: field.type for field in schema}


def _batch_types(conn: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[tuple[str, str]]:
    rows = conn.execute(f"DESCRIBE SELECT {columns_sql(names)} FROM {BATCH}").fetchall()  # noqa: S608
    return [(str(row[0]), str(row[1])) for row in rows]


def stored(names: Sequence[str]) -> list[str]:
    """``names`` without the sink's marker columns."""
    return [name for name in names if not name.startswith(META)]


def create_table(
    conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], key: Sequence[str]
) -> None:
    """Create ``table`` with the batch's columns ``names`` typed as DuckDB reads them."""
    definitions = [
        f"{quote_ident(name)} {kind}" + (" NOT NULL" if name in key else "")
        for name, kind in _batch_types(conn, stored(names))
    ]
    if key:
        definitions.append(f"PRIMARY KEY ({columns_sql(key)})")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({', '.join(definitions)})")


def add_columns(conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str]) -> None:
    """Add the batch's columns ``names`` to ``table``, typed as DuckDB reads them."""
    for name, kind in _batch_types(conn, stored(names)):
        conn.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} {kind}")


def drop_table(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")


def append(conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str]) -> None:
    """Insert every staged row."""
    columns = columns_sql(stored(names))
    conn.execute(
        f"INSERT INTO {quote_ident(table)} ({columns}) SELECT {columns} FROM {BATCH}"  # noqa: S608
    )


def upsert(
    conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], key: Sequence[str]
) -> None:
    """Replace the rows of the batch's keys by the batch's last row of each key."""
    t, columns = quote_ident(table), columns_sql(stored(names))
    conn.execute(f"DELETE FROM {t} USING {BATCH} AS s WHERE {_match(key, t, 's')}")  # noqa: S608
    conn.execute(
        f"INSERT INTO {t} ({columns}) SELECT {columns} FROM {BATCH} "  # noqa: S608
        f"QUALIFY row_number() OVER (PARTITION BY {columns_sql(key)} "
        f"ORDER BY {quote_ident(ORDINAL)} DESC) = 1"
    )


def replace_partitions(
    conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], partition: Sequence[str]
) -> None:
    """Delete every partition present in the batch (NULL matching NULL), then insert the batch."""
    t = quote_ident(table)
    same = " AND ".join(
        f"s.{quote_ident(p)} IS NOT DISTINCT FROM {t}.{quote_ident(p)}" for p in partition
    )
    conn.execute(f"DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {BATCH} AS s WHERE {same})")  # noqa: S608
    append(conn, table, names)


def apply_changes(
    conn: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], key: Sequence[str]
) -> None:
    """Apply folded change rows: delete each key, then insert the rows that are not deletes.

    Values marked to keep are first copied from the stored rows into a staging copy.
    """
    t, columns = quote_ident(table), columns_sql(stored(names))
    source = BATCH
    kept = [name.removeprefix(KEEP) for name in names if name.startswith(KEEP)]
    if kept:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE} AS SELECT * FROM {BATCH}")  # noqa: S608
        for name in kept:
            column, flag = quote_ident(name), quote_ident(KEEP + name)
            conn.execute(
                f"UPDATE {_STAGE} AS s SET {column} = {t}.{column} FROM {t} "  # noqa: S608
                f"WHERE {_match(key, t, 's')} AND s.{flag}"
            )
        source = _STAGE
    conn.execute(f"DELETE FROM {t} USING {source} AS s WHERE {_match(key, t, 's')}")  # noqa: S608
    conn.execute(
        f"INSERT INTO {t} ({columns}) SELECT {columns} FROM {source} "  # noqa: S608
        f"WHERE NOT {quote_ident(DELETE)}"
    )
    if kept:
        conn.execute(f"DROP TABLE {_STAGE}")


def truncate(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    conn.execute(f"DELETE FROM {quote_ident(table)}")  # noqa: S608


def create_like(conn: duckdb.DuckDBPyConnection, table: str, like: str) -> None:
    """Create ``table`` empty with the columns, PRIMARY KEY and constraints of ``like``.

    DuckDB keeps each table's ``CREATE TABLE`` statement; it is replayed under
    the new name, so the table swapped in later keeps the user's key, NOT NULL,
    CHECK, UNIQUE and defaults. A statement of another shape falls back to the
    columns alone.
    """
    (ddl,) = conn.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = ? "
        "AND schema_name = current_schema() AND database_name = current_database()",
        [like],
    ).fetchone() or (None,)
    body = _table_body(str(ddl or ""), like)
    if body is not None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)}{body}")
        return
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} AS "  # noqa: S608
        f"SELECT * FROM {quote_ident(like)} LIMIT 0"
    )


def _table_body(ddl: str, name: str) -> str | None:
    """The ``(columns, constraints)`` of DuckDB's ``CREATE TABLE name(…);``, or ``None``."""
    quoted = '"' + name.replace('"', '""') + '"'
    for spelled in (name, quoted):
        prefix = f"CREATE TABLE {spelled}("
        if ddl.startswith(prefix) and ddl.rstrip().endswith(");"):
            return ddl[len(prefix) - 1 : ddl.rstrip().rindex(";")]
    return None


def swap_in(conn: duckdb.DuckDBPyConnection, staging: str, table: str) -> None:
    """Replace ``table`` by ``staging`` (renamed to it), inside the caller's transaction."""
    drop_table(conn, table)
    conn.execute(f"ALTER TABLE {quote_ident(staging)} RENAME TO {quote_ident(table)}")


def _match(key: Sequence[str], table: str, alias: str) -> str:
    return " AND ".join(f"{table}.{quote_ident(k)} = {alias}.{quote_ident(k)}" for k in key)
