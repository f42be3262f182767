"""SQLite identifiers and the SQL this connector sends.

Every identifier that reaches SQL goes through :func:`quote_ident`; every value
is a bound parameter (``?``). The builders below return constant SQL text with
quoted identifiers spliced in, and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asyncetl.core.errors import ConfigError

__all__ = [
    "CheckpointSql",
    "DeadLetterQueries",
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
    updates = [quote_ident(c) for c in columns if c not in key]
    if not updates:
        return f"{sql} ON CONFLICT ({_columns(key)}) DO NOTHING"
    assignments = ", ".join(f"{c} = excluded.{c}" for c in updates)
    return f"{sql} ON CONFLICT ({_columns(key)}) DO UPDATE SET {assignments}"


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


@dataclass(frozen=True, slots=True)
class CheckpointSql:
    """The statements of a checkpoint table."""

    create: str
    load: str
    save: str
    saved_at: str

    @classmethod
    def of(cls, table: str) -> CheckpointSql:
        t = quote_ident(table)
        return cls(
            create=(
                f"CREATE TABLE IF NOT EXISTS {t} (pipeline TEXT NOT NULL, source TEXT NOT NULL, "
                "position TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (pipeline, source))"
            ),
            load=f"SELECT position FROM {t} WHERE pipeline = ? AND source = ?",  # noqa: S608
            saved_at=f"SELECT updated_at FROM {t} WHERE pipeline = ? AND source = ?",  # noqa: S608
            save=(
                f"INSERT INTO {t} (pipeline, source, position, updated_at) "  # noqa: S608
                "VALUES (?, ?, ?, ?) ON CONFLICT (pipeline, source) DO UPDATE SET "
                "position = excluded.position, updated_at = excluded.updated_at"
            ),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterSql:
    """The statements of a dead-letter table.

    ``key`` (unique where not NULL) makes :attr:`put` idempotent; a table made
    before keys existed gets the column from :attr:`add_key` and keeps its rows
    (with NULL keys, which never conflict).
    """

    create: str
    add_key: str
    index_key: str
    put: str
    list: str
    remove: str

    @classmethod
    def of(cls, table: str) -> DeadLetterSql:
        t, index = quote_ident(table), quote_ident(f"{table}_by_pipeline")
        by_key = quote_ident(f"{table}_by_key")
        columns = "pipeline, stage, error, error_type, record, position, time"
        return cls(
            create=(
                f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "pipeline TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL, "
                "error_type TEXT NOT NULL, record TEXT NOT NULL, position TEXT NOT NULL, "
                f"time TEXT NOT NULL, key TEXT); CREATE INDEX IF NOT EXISTS {index} ON {t} "
                "(pipeline, id)"
            ),
            add_key=f"ALTER TABLE {t} ADD COLUMN key TEXT",
            index_key=f"CREATE UNIQUE INDEX IF NOT EXISTS {by_key} ON {t} (key)",
            put=(
                f"INSERT INTO {t} ({columns}, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (key) DO NOTHING"
            ),
            list=(
                f"SELECT id, {columns} FROM {t} WHERE pipeline = ? "  # noqa: S608
                "ORDER BY id LIMIT ?"
            ),
            remove=f"DELETE FROM {t} WHERE pipeline = ? AND id = ?",  # noqa: S608
        )


#: The filters of a dead-letter query, named parameters that are ``NULL`` when unset;
#: ``:ids`` is a JSON array of integer ids.
_LETTER_FILTERS = (
    "pipeline = :pipeline AND (:stage IS NULL OR stage = :stage) "
    "AND (:since IS NULL OR time >= :since) AND (:before IS NULL OR time < :before) "
    "AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))"
)


@dataclass(frozen=True, slots=True)
class DeadLetterQueries:
    """The filtered reads and deletes of a dead-letter table (see :data:`_LETTER_FILTERS`).

    Times compare as text: every stored time is ISO 8601 in UTC, written the same way.
    """

    find: str
    count: str
    purge: str

    @classmethod
    def of(cls, table: str) -> DeadLetterQueries:
        t = quote_ident(table)
        columns = "id, pipeline, stage, error, error_type, record, position, time"
        return cls(
            find=(
                f"SELECT {columns} FROM {t} WHERE {_LETTER_FILTERS} "  # noqa: S608
                "ORDER BY id LIMIT :limit"
            ),
            count=f"SELECT count(*) FROM {t} WHERE {_LETTER_FILTERS}",  # noqa: S608
            purge=f"DELETE FROM {t} WHERE {_LETTER_FILTERS}",  # noqa: S608
        )
