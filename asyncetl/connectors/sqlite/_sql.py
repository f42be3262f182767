"""SQLite identifiers and the SQL this connector sends.

Every identifier that reaches SQL goes through :func:`quote_ident`; every value
is a bound parameter (``?``, or ``?NNN`` in the stores' statements from
:mod:`asyncetl.core.store_sql`). The builders below return constant SQL text with
quoted identifiers spliced in, and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TypeAlias

import orjson

from asyncetl.core.errors import ConfigError
from asyncetl.core.store_sql import CheckpointQueries, LetterQueries, SqlDialect

__all__ = [
    "DIALECT",
    "CheckpointSql",
    "checkpoint_sql",
    "dead_letter_sql",
    "DeadLetterSql",
    "TABLE_COLUMNS",
    "add_column",
    "create_table",
    "insert",
    "quote_ident",
]

#: The columns of a table (or view), by its unquoted name, bound as the one parameter.
TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?)"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQLite identifier: ``a"b`` becomes ``"a""b"``.

    :raises ConfigError: for a non-string, an empty name or one containing a NUL
        character, which SQLite cannot take in an identifier.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"{name!r} is not a valid SQLite identifier")
    return '"' + name.replace('"', '""') + '"'


def _columns(names: Sequence[str]) -> str:
    return ", ".join(map(quote_ident, names))


def insert(table: str, columns: Sequence[str], key: Sequence[str] = (), rows: int = 1) -> str:
    """Insert ``rows`` rows of ``columns`` (their values in turn, row after row); with
    ``key``, an upsert replacing the other columns.

    SQLite applies the rows of one statement in order, so a later row with the same
    key updates an earlier one, as separate statements would.
    """
    row = "(" + ", ".join("?" * len(columns)) + ")"
    marks = ", ".join([row] * rows)
    sql = f"INSERT INTO {quote_ident(table)} ({_columns(columns)}) VALUES {marks}"  # noqa: S608
    if not key:
        return sql
    return f"{sql} {DIALECT.upsert(key, [c for c in columns if c not in key])}"


def add_column(table: str, name: str, kind: str) -> str:
    """``ALTER TABLE … ADD COLUMN`` ``name`` with declared type ``kind`` (one of the affinities
    the sink infers, or empty)."""
    return f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} {kind}".rstrip()


def create_table(table: str, columns: Sequence[tuple[str, str]], key: Sequence[str] = ()) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``(name, declared type)`` columns, key columns NOT NULL.

    An empty declared type gives the column no type (and so no affinity).
    """
    definitions = [
        " ".join(
            part for part in (quote_ident(name), kind, "NOT NULL" if name in key else "") if part
        )
        for name, kind in columns
    ]
    if key:
        definitions.append(f"PRIMARY KEY ({_columns(key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({', '.join(definitions)})"


def _utc_text(moment: datetime) -> str:
    """A filter's time as the letters' times are stored: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat()


def _json_array(ids: list[int]) -> str:
    return orjson.dumps(ids).decode()


#: How SQLite spells the stores' statements: numbered ``?NNN`` parameters, times
#: as ISO 8601 text in UTC (so they compare as text), id lists as JSON arrays.
DIALECT = SqlDialect(
    quote=quote_ident,
    mark="?{}".format,
    id_in="id IN (SELECT value FROM json_each({ids}))",
    now=None,
    no_limit=-1,
    time_value=_utc_text,
    ids_value=_json_array,
)


#: The statements of a checkpoint table.
CheckpointSql: TypeAlias = CheckpointQueries

#: The columns of a checkpoint table.
_CHECKPOINT_COLUMNS = (
    "pipeline TEXT NOT NULL, source TEXT NOT NULL, position TEXT NOT NULL, "
    "updated_at TEXT NOT NULL, PRIMARY KEY (pipeline, source)"
)


def checkpoint_sql(table: str) -> CheckpointSql:
    """The statements of the checkpoint table ``table``."""
    return CheckpointQueries.of(DIALECT, table, columns=_CHECKPOINT_COLUMNS)


@dataclass(frozen=True, slots=True)
class DeadLetterSql(LetterQueries):
    """The statements of a dead-letter table: its creation and :class:`LetterQueries`.

    ``key`` (unique where not NULL) makes :attr:`put` idempotent; a table made
    before keys existed gets the column from :attr:`add_key` and keeps its rows
    (with NULL keys, which never conflict). Times compare as text: every stored
    time is ISO 8601 in UTC, written the same way.
    """

    create: str
    add_key: str
    index_key: str


def dead_letter_sql(table: str) -> DeadLetterSql:
    """The statements of the dead-letter table ``table``."""
    t, index = quote_ident(table), quote_ident(f"{table}_by_pipeline")
    by_key = quote_ident(f"{table}_by_key")
    return DeadLetterSql(
        **asdict(LetterQueries.of(DIALECT, table)),
        create=(
            f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "pipeline TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL, "
            "error_type TEXT NOT NULL, record TEXT NOT NULL, position TEXT NOT NULL, "
            f"time TEXT NOT NULL, key TEXT); CREATE INDEX IF NOT EXISTS {index} ON {t} "
            "(pipeline, id)"
        ),
        add_key=f"ALTER TABLE {t} ADD COLUMN key TEXT",
        index_key=f"CREATE UNIQUE INDEX IF NOT EXISTS {by_key} ON {t} (key)",
    )
