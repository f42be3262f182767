"""DuckDB identifiers and the SQL of this connector's stores.

Every identifier that reaches SQL goes through :func:`quote_ident`; every value
is a bound parameter (``?``) or an Arrow table registered under a fixed name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asyncetl.core.errors import ConfigError

__all__ = ["CheckpointSql", "DeadLetterSql", "columns_sql", "quote_ident"]


def quote_ident(name: str) -> str:
    """``name`` as a quoted DuckDB identifier: ``a"b`` becomes ``"a""b"``.

    :raises ConfigError: for a non-string, an empty name or one holding a NUL character.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"{name!r} is not a valid DuckDB identifier")
    return '"' + name.replace('"', '""') + '"'


def columns_sql(names: Sequence[str], prefix: str = "") -> str:
    """``"a", "b"`` (each with ``prefix``, e.g. ``s.``)."""
    return ", ".join(prefix + quote_ident(name) for name in names)


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
                f"CREATE TABLE IF NOT EXISTS {t} (pipeline VARCHAR NOT NULL, "
                "source VARCHAR NOT NULL, position VARCHAR NOT NULL, "
                "updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (pipeline, source))"
            ),
            load=f"SELECT position FROM {t} WHERE pipeline = ? AND source = ?",  # noqa: S608
            saved_at=f"SELECT updated_at FROM {t} WHERE pipeline = ? AND source = ?",  # noqa: S608
            save=(
                f"INSERT INTO {t} (pipeline, source, position, updated_at) "  # noqa: S608
                "VALUES (?, ?, ?, now()) ON CONFLICT (pipeline, source) DO UPDATE SET "
                "position = excluded.position, updated_at = excluded.updated_at"
            ),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterSql:
    """The statements of a dead-letter table; ``key`` (unique) makes :attr:`put` idempotent."""

    create: tuple[str, ...]
    put: str
    select: str
    remove: str
    find: str
    count: str
    purge: str

    @classmethod
    def of(cls, table: str) -> DeadLetterSql:
        t, ids = quote_ident(table), quote_ident(f"{table}_ids")
        columns = "pipeline, stage, error, error_type, record, position, time"
        return cls(
            create=(
                f"CREATE SEQUENCE IF NOT EXISTS {ids}",
                f"CREATE TABLE IF NOT EXISTS {t} (id BIGINT PRIMARY KEY DEFAULT nextval('"
                + ids.replace("'", "''")
                + "'), pipeline VARCHAR NOT NULL, stage VARCHAR NOT NULL, "
                "error VARCHAR NOT NULL, error_type VARCHAR NOT NULL, record VARCHAR NOT NULL, "
                "position VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, key VARCHAR UNIQUE)",
            ),
            put=(
                f"INSERT INTO {t} ({columns}, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (key) DO NOTHING"
            ),
            select=f"SELECT id, {columns} FROM {t} WHERE pipeline = ? ORDER BY id",  # noqa: S608
            remove=f"DELETE FROM {t} WHERE pipeline = ? AND id = ?",  # noqa: S608
            find=(
                f"SELECT id, {columns} FROM {t} WHERE {_LETTER_FILTERS} "  # noqa: S608
                "ORDER BY id LIMIT $limit"
            ),
            count=f"SELECT count(*) FROM {t} WHERE {_LETTER_FILTERS}",  # noqa: S608
            purge=f"DELETE FROM {t} WHERE {_LETTER_FILTERS} RETURNING id",  # noqa: S608
        )


#: The filters of a dead-letter query: named parameters that are NULL when unset;
#: ``$ids`` is a list of integer ids.
_LETTER_FILTERS = (
    "pipeline = $pipeline AND ($stage IS NULL OR stage = $stage) "
    "AND ($since IS NULL OR time >= $since) AND ($before IS NULL OR time < $before) "
    "AND ($ids IS NULL OR list_contains($ids, id))"
)
