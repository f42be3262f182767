"""What rows that existed before an ``ADD COLUMN`` hold in the new column, from the source's
catalog, so that the apply sink gives the target's existing rows the same value.

``ALTER TABLE … ADD COLUMN c … DEFAULT x`` with a non-volatile ``x`` rewrites nothing: the
server evaluates ``x`` once and keeps the value in ``pg_attribute.attmissingval``, which every
row written before reads as its value (however the default is changed later). That value is
what the target's existing rows must hold too, and the sink adds the column with it as a
default, so that the target rewrites nothing either.

A volatile default (``now()``, ``random()``) gives each existing row its own value and keeps
none in the catalog: the sink copies those from the source's rows (see :mod:`._backfill`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from asyncetl.connectors.postgres._connect import Dsn, map_errors
from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres.cdc._values import SESSION_SETTINGS

__all__ = [
    "SourceDefault",
    "add_filled_column",
    "drop_fill_defaults",
    "read_defaults",
]

#: The settings that carry the existing rows' values into the target's ``ADD COLUMN``: DDL
#: takes no parameters, and a value never becomes SQL text. One per column: the default is
#: evaluated again for each row inserted without the column until it is dropped.
_FILL_SETTING = "asyncetl.fill_{}"

# The functions a default's expression calls, from its stored node tree (a built-in function
# has no pg_depend row to find it by).
_DEFAULTS = r"""
SELECT a.attname AS name,
       a.atthasmissing AS has_missing,
       CASE WHEN a.atthasmissing THEN a.attmissingval::text END AS missing,
       pg_get_expr(d.adbin, d.adrelid) AS expression,
       COALESCE((SELECT bool_or(f.provolatile = 'v') FROM pg_proc f
                 WHERE f.oid::text IN (SELECT m[1] FROM regexp_matches(
                     d.adbin::text, ':(?:func|opfunc)id (\d+)', 'g') AS m)), false) AS volatile
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass($1) AND a.attname = ANY($2::text[])
  AND a.attnum > 0 AND NOT a.attisdropped
"""
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SourceDefault:
    """A source column's default and the value that rows older than the column hold.

    :param existing: the text of that value when the catalog keeps it (a non-volatile
        default at ``ADD COLUMN``); ``None`` otherwise.
    :param expression: the default's expression as the catalog prints it, if any.
    :param volatile: whether the expression calls a volatile function.
    """

    name: str
    existing: str | None
    expression: str | None
    volatile: bool

    @property
    def unknown(self) -> bool:
        """Whether the column has a default but the value of older rows is not in the
        catalog (a volatile default, one set after the column was added, or a rewrite)."""
        return self.existing is None and self.expression is not None


async def read_defaults(
    dsn: Dsn, table: TableName, names: Sequence[str]
) -> dict[str, SourceDefault]:
    """The defaults of columns ``names`` of ``table`` in the source database at ``dsn``.

    :raises ConnectorError: when the source cannot be read.
    """
    with map_errors(dsn, f"reading the defaults of source table {table}"):
        # ISO dates and UTC times: the target parses the values whatever its own settings.
        settings = {k: v for k, v in SESSION_SETTINGS.items() if k != "client_encoding"}
        conn = await asyncpg.connect(dsn.url, server_settings=settings, timeout=10)
        try:
            rows = await conn.fetch(_DEFAULTS, table.sql, list(names))
        finally:
            await conn.close()
    return {
        r["name"]: SourceDefault(
            r["name"],
            _element(r["missing"]) if r["has_missing"] else None,
            r["expression"],
            r["volatile"],
        )
        for r in rows
    }


def _element(array_text: str) -> str | None:
    """The one element of a one-element array's text (``{5}``, ``{"a \\"b\\""}``)."""
    inner = array_text[1:-1]
    if inner.startswith('"'):
        return _ESCAPED.sub(r"\1", inner[1:-1])
    return None if inner.upper() == "NULL" else inner


async def add_filled_column(
    conn: asyncpg.Connection, table: TableName, name: str, sql_type: str, value: str, index: int
) -> None:
    """Add column ``name`` to ``table``, every existing row holding ``value`` (its text).

    The value is the column's default until :func:`drop_fill_defaults`: a row inserted
    meanwhile without the column (a change from before the source added it) gets it too.

    :param index: the column's number among those added in this transaction.
    """
    setting = _FILL_SETTING.format(index)
    await conn.execute("SELECT set_config($1, $2, true)", setting, value)
    # current_setting is stable, so the server evaluates it once and rewrites no row.
    await conn.execute(
        f"ALTER TABLE {table.sql} ADD COLUMN IF NOT EXISTS {quote_ident(name)} {sql_type} "
        f"DEFAULT current_setting('{setting}')::{sql_type}"
    )


async def drop_fill_defaults(
    conn: asyncpg.Connection, table: TableName, names: Sequence[str]
) -> None:
    """Drop the defaults :func:`add_filled_column` gave ``names``: existing rows keep their
    values; changes made since the source added the columns carry theirs."""
    for name in names:
        await conn.execute(f"ALTER TABLE {table.sql} ALTER COLUMN {quote_ident(name)} DROP DEFAULT")
