"""What the sink does to tables inside its transaction: read, create, evolve, load by mode.

Every function takes the connection of the sink's worker thread, inside the
batch's transaction, and the name under which the batch's Arrow table is
registered (:data:`BATCH`). Columns whose names start with :data:`META` are
the sink's own markers (a delete, a value to keep, the record's ordinal): they
are staged, never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
_STAGED_INDEX = "__asyncetl_new"  # after the name of an index copied onto a staging table


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
    columns alone. ``like``'s unique indexes are made on ``table`` too, under
    names of their own, so that a row breaking one is refused while loading
    rather than failing the swap; :func:`swap_in` replaces them by the originals.
    """
    (ddl,) = conn.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = ? "
        "AND schema_name = current_schema() AND database_name = current_database()",
        [like],
    ).fetchone() or (None,)
    body = _table_body(str(ddl or ""), like)
    if body is not None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)}{body}")
    else:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} AS "  # noqa: S608
            f"SELECT * FROM {quote_ident(like)} LIMIT 0"
        )
    for index in _indexes(conn, like):
        keys = _index_keys(index, like)
        if index.unique and keys is not None:
            conn.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {quote_ident(index.name + _STAGED_INDEX)} "
                f"ON {quote_ident(table)}{keys}"
            )


def _table_body(ddl: str, name: str) -> str | None:
    """The ``(columns, constraints)`` of DuckDB's ``CREATE TABLE name(…);``, or ``None``."""
    for spelled in (name, _quoted(name)):
        prefix = f"CREATE TABLE {spelled}("
        if ddl.startswith(prefix) and ddl.rstrip().endswith(");"):
            return ddl[len(prefix) - 1 : ddl.rstrip().rindex(";")]
    return None


def swap_in(conn: duckdb.DuckDBPyConnection, staging: str, table: str) -> None:
    """Replace ``table`` by ``staging`` (renamed to it), inside the caller's transaction.

    The indexes of ``table`` (``CREATE INDEX``) are made again on the table
    swapped in, under their names. DuckDB renames no table that has an index,
    so the staging table's own indexes are dropped first.
    """
    kept = _indexes(conn, table)
    for index in _indexes(conn, staging):
        conn.execute(f"DROP INDEX {quote_ident(index.name)}")
    drop_table(conn, table)
    conn.execute(f"ALTER TABLE {quote_ident(staging)} RENAME TO {quote_ident(table)}")
    for index in kept:
        conn.execute(index.sql)


@dataclass(frozen=True, slots=True)
class _Index:
    name: str
    sql: str  # DuckDB's own CREATE INDEX statement, naming the table
    unique: bool


def _indexes(conn: duckdb.DuckDBPyConnection, table: str) -> list[_Index]:
    """The indexes made on ``table`` with ``CREATE INDEX`` (not those of its constraints)."""
    rows = conn.execute(
        "SELECT index_name, sql, is_unique FROM duckdb_indexes() WHERE table_name = ? "
        "AND schema_name = current_schema() AND database_name = current_database() "
        "AND sql IS NOT NULL ORDER BY index_name",
        [table],
    ).fetchall()
    return [_Index(str(name), str(sql), bool(unique)) for name, sql, unique in rows]


def _index_keys(index: _Index, table: str) -> str | None:
    """The ``(columns or expressions)`` of ``index`` on ``table``, or ``None`` if unread."""
    kind = "UNIQUE INDEX" if index.unique else "INDEX"
    for name in (index.name, _quoted(index.name)):
        for on in (table, _quoted(table)):
            prefix = f"CREATE {kind} {name} ON {on}("
            if index.sql.startswith(prefix) and index.sql.rstrip().endswith(");"):
                return index.sql[len(prefix) - 1 : index.sql.rstrip().rindex(";")]
    return None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _match(key: Sequence[str], table: str, alias: str) -> str:
    return " AND ".join(f"{table}.{quote_ident(k)} = {alias}.{quote_ident(k)}" for k in key)
