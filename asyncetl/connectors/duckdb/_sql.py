"""DuckDB identifiers and the SQL of this connector's stores.

Every identifier that reaches SQL goes through :func:`quote_ident`; every value
is a bound parameter (``?``, or ``$n`` in the stores' statements from
:mod:`asyncetl.core.store_sql`) or an Arrow table registered under a fixed name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TypeAlias

from asyncetl.core.errors import ConfigError
from asyncetl.core.store_sql import CheckpointQueries, LetterQueries, SqlDialect

__all__ = [
    "DIALECT",
    "CheckpointSql",
    "checkpoint_sql",
    "dead_letter_sql",
    "DeadLetterSql",
    "columns_sql",
    "quote_ident",
]


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


#: How DuckDB spells the stores' statements: numbered ``$n`` parameters, id lists
#: as lists, and a purge that returns the ids it deleted (its row count is how many).
DIALECT = SqlDialect(
    quote=quote_ident,
    mark="${}".format,
    id_in="list_contains({ids}, id)",
    counted_delete="{delete} RETURNING id",
    no_limit=2**62,
)


#: The statements of a checkpoint table.
CheckpointSql: TypeAlias = CheckpointQueries

#: The columns of a checkpoint table.
_CHECKPOINT_COLUMNS = (
    "pipeline VARCHAR NOT NULL, source VARCHAR NOT NULL, position VARCHAR NOT NULL, "
    "updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (pipeline, source)"
)


def checkpoint_sql(table: str) -> CheckpointSql:
    """The statements of the checkpoint table ``table``."""
    return CheckpointQueries.of(DIALECT, table, columns=_CHECKPOINT_COLUMNS)


@dataclass(frozen=True, slots=True)
class DeadLetterSql(LetterQueries):
    """The statements of a dead-letter table: its creation and :class:`LetterQueries`.

    ``key`` (unique) makes :attr:`put` idempotent; ids come from a sequence.
    """

    create: tuple[str, ...]


def dead_letter_sql(table: str) -> DeadLetterSql:
    """The statements of the dead-letter table ``table``."""
    t, ids = quote_ident(table), quote_ident(f"{table}_ids")
    return DeadLetterSql(
        **asdict(LetterQueries.of(DIALECT, table)),
        create=(
            f"CREATE SEQUENCE IF NOT EXISTS {ids}",
            f"CREATE TABLE IF NOT EXISTS {t} (id BIGINT PRIMARY KEY DEFAULT nextval('"
            + ids.replace("'", "''")
            + "'), pipeline VARCHAR NOT NULL, stage VARCHAR NOT NULL, "
            "error VARCHAR NOT NULL, error_type VARCHAR NOT NULL, record VARCHAR NOT NULL, "
            "position VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, key VARCHAR UNIQUE)",
        ),
    )
