"""Catalog discovery: a table's columns, their types, its primary key and unique keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from asyncetl.connectors.postgres._connect import Dsn, map_errors
from asyncetl.connectors.postgres._sql import TableName, WholeText, quote_ident, unmodified
from asyncetl.core.errors import PermanentError
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = [
    "Column",
    "TableSchema",
    "add_column_ddl",
    "describe_remote",
    "describe_source",
    "describe_table",
    "table_ddl",
    "types_read_as_text",
    "unmodified",
]

# read_as_text: asyncpg would decode the type (or its array element) into an object of
# its own (Range, Point, BitString, Record…) or, for interval, lose the months; a source
# reads its text instead, as change data capture does. t is the column's type, b its
# base type (for a domain), e the element type of b (for an array) or b.
_READ_AS_TEXT = """(e.typtype IN ('c', 'r', 'm') OR e.oid = ANY(
    '{bit,varbit,point,line,lseg,box,path,polygon,circle,interval,timetz}'::regtype[]))"""
_BASE_AND_ELEMENT = """
JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
JOIN pg_type e ON e.oid = CASE WHEN b.typcategory = 'A' THEN b.typelem ELSE b.oid END"""

# text_io: asyncpg has no binary codec for the type (or its array element), so
# binary COPY cannot take it: types of extensions, and a few built-in ones; or its
# codec cannot hold every value (interval's months; dates BC, time and timetz 24:00);
# or a source reads it as text (read_as_text). Constants only: no value is formatted in.
_COLUMNS = f"""
SELECT a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       (e.typtype = 'b' AND e.typnamespace <> 'pg_catalog'::regnamespace)
         OR (e.typnamespace = 'pg_catalog'::regnamespace
             AND e.typname = ANY('{{money,macaddr,macaddr8,tsvector,tsquery}}'))
         OR b.oid IN ('date'::regtype, 'time'::regtype)
         OR {_READ_AS_TEXT} AS text_io,
       {_READ_AS_TEXT} AS read_as_text,
       CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated,
       CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END AS identity,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default,
       b.oid = 'bpchar'::regtype
         AND CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END < 0 AS unbounded_bpchar
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
JOIN pg_type t ON t.oid = a.atttypid{_BASE_AND_ELEMENT}
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""  # noqa: S608

_UNIQUE_KEYS = """
SELECT i.indisprimary AS is_primary,
       array_agg(a.attname ORDER BY k.ord) AS columns
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL
  AND i.indexprs IS NULL AND i.indimmediate
GROUP BY i.indexrelid, i.indisprimary
ORDER BY i.indisprimary DESC, i.indexrelid
"""

_TYPES_READ_AS_TEXT = f"""
SELECT t.oid, format_type(t.oid, NULL) AS type FROM pg_type t{_BASE_AND_ELEMENT}
WHERE t.oid = ANY($1::oid[]) AND {_READ_AS_TEXT}
"""  # noqa: S608

_RESOLVE = """
SELECT c.oid, n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, its SQL type as ``format_type`` spells it, and nullability.

    :param text_io: asyncpg has no binary codec for the type (``money``,
        ``tsvector``, types of extensions such as ``citext``…) or its codec
        loses information (``interval``) or cannot hold every value (dates BC,
        time 24:00): values are written as their text,
        staged in a ``text`` column and cast (a ``timedelta`` as its days,
        seconds and microseconds).
    """

    name: str
    type: str
    not_null: bool = False
    text_io: bool = False
    #: The expression of a stored generated column: it is never written.
    generated: str | None = None
    #: ``ALWAYS`` or ``BY DEFAULT`` for an identity column; its values are kept when written.
    identity: str | None = None
    #: The column's default expression, if any.
    default: str | None = None
    #: ``bpchar`` without a length, or a domain over it: its values keep trailing
    #: spaces, which its cast to ``text`` drops (``character(n)`` pads them back).
    unbounded_bpchar: bool = False
    #: A source reads the column's text (an array's as a list of its elements' text):
    #: ranges, composites, geometric types, bit strings, interval, timetz.
    read_as_text: bool = False


@dataclass(frozen=True, slots=True)
class TableSchema:
    """What the catalog says about a table.

    :param table: the table, schema-qualified as the catalog resolved it.
    :param primary_key: primary-key columns in key order (empty when there is none).
    :param unique_keys: column lists of every unique index usable by ``ON CONFLICT``.
    """

    table: TableName
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column | None:
        """The column called ``name``, or ``None``."""
        for column in self.columns:
            if column.name == name:
                return column
        return None

    def has_unique_key(self, key: Sequence[str]) -> bool:
        """Whether some unique index covers exactly the columns ``key`` (in any order)."""
        wanted = set(key)
        return any(set(unique) == wanted for unique in self.unique_keys)


async def describe_table(
    conn: asyncpg.Connection, table: TableName, *, arrays_as_text: bool = False
) -> TableSchema | None:
    """Look ``table`` up in the catalog; ``None`` when it does not exist.

    An unqualified name is resolved through the ``search_path``, as PostgreSQL does.

    :param arrays_as_text: array columns are written as one text each, the array's
        literal (:class:`WholeText`), which keeps lower bounds other than 1.
    """
    row = await conn.fetchrow(_RESOLVE, table.sql)
    if row is None:
        return None
    oid = row["oid"]
    columns = tuple(
        Column(
            r["name"],
            WholeText(r["type"]) if whole else r["type"],
            r["not_null"],
            r["text_io"] or whole,
            r["generated"],
            r["identity"],
            r["default"],
            r["unbounded_bpchar"],
            r["read_as_text"],
        )
        for r in await conn.fetch(_COLUMNS, oid)
        for whole in [arrays_as_text and r["type"].endswith("]")]
    )
    keys = await conn.fetch(_UNIQUE_KEYS, oid)
    primary = next((tuple(r["columns"]) for r in keys if r["is_primary"]), ())
    return TableSchema(
        table=TableName(row["nspname"], row["relname"]),
        columns=columns,
        primary_key=primary,
        unique_keys=tuple(tuple(r["columns"]) for r in keys),
    )


async def types_read_as_text(conn: asyncpg.Connection, oids: Sequence[int]) -> dict[int, str]:
    """The types of ``oids`` a source reads as their text (``Column.read_as_text``), each
    with its SQL name (an array's ends in ``[]``)."""
    return {r["oid"]: r["type"] for r in await conn.fetch(_TYPES_READ_AS_TEXT, list(oids))}


async def describe_remote(dsn: Dsn, table: TableName, *, policy: RetryPolicy) -> TableSchema | None:
    """:func:`describe_table` in the database at ``dsn``, over a connection of its own.

    :raises ConnectorError: when the database stays unreachable through ``policy``'s retries.
    """

    async def fetch() -> TableSchema | None:
        with map_errors(dsn, f"reading the catalog for {table}"):
            conn = await asyncpg.connect(dsn.url)
            try:
                return await describe_table(conn, table)
            finally:
                await conn.close()

    return await retry_call(fetch, policy=policy, what=f"describe {table} on {dsn}")


async def describe_source(dsn: Dsn, table: TableName, *, policy: RetryPolicy) -> TableSchema:
    """:func:`describe_remote` of a sink's ``source_table``, which must exist.

    :raises PermanentError: when it does not, naming the setting.
    """
    schema = await describe_remote(dsn, table, policy=policy)
    if schema is None:
        raise PermanentError(
            f"source table {table} does not exist in {dsn.where}; "
            "fix source_table or create the table",
            setting="source_table",
        )
    return schema


def _definition(column: Column) -> str:
    definition = f"{quote_ident(column.name)} {column.type}"
    if column.generated is not None:
        definition += f" GENERATED ALWAYS AS ({column.generated}) STORED"
    if column.identity is not None:
        definition += f" GENERATED {column.identity} AS IDENTITY"
    # A default drawing on a sequence (serial) would need that sequence in the target.
    if column.default is not None and "nextval(" not in column.default:
        definition += f" DEFAULT {column.default}"
    return definition + (" NOT NULL" if column.not_null else "")


def add_column_ddl(table: TableName, column: Column) -> str:
    """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` for ``column`` as :func:`table_ddl` makes it
    (a default fills the rows already there: a constant one without rewriting them)."""
    return f"ALTER TABLE {table.sql} ADD COLUMN IF NOT EXISTS {_definition(column)}"


def table_ddl(
    table: TableName,
    columns: Sequence[Column],
    *,
    primary_key: Sequence[str] = (),
    unique: Sequence[str] = (),
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``columns`` with an optional primary key and unique key.

    Column types are spliced as the catalog spelled them (``format_type``) or as
    :func:`~asyncetl.connectors.postgres._rows.infer_columns` chose them; names are quoted.
    """
    parts = [_definition(c) for c in columns]
    if primary_key:
        parts.append(f"PRIMARY KEY ({', '.join(quote_ident(c) for c in primary_key)})")
    if unique:
        parts.append(f"UNIQUE ({', '.join(quote_ident(c) for c in unique)})")
    return f"CREATE TABLE IF NOT EXISTS {table.sql} ({', '.join(parts)})"
