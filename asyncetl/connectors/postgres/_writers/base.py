"""What every writer of a PostgresSink shares: its settings, the table, the key and the checks.

A writer is one mode of :class:`~asyncetl.connectors.postgres.PostgresSink`,
chosen once when the sink is made. The sink owns the pool, the retries and the
batch's transaction; the writer says what a new table needs, checks an existing
one, and writes a planned group inside the transaction it is given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

import asyncpg

from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres._writers.row_hash import Require, RowHash
from asyncetl.connectors.postgres.schema import Column, TableSchema, table_ddl
from asyncetl.core.errors import PermanentError

if TYPE_CHECKING:
    from asyncetl.connectors.postgres._plan import Group

__all__ = ["Transact", "WriteOptions", "Writer"]

T = TypeVar("T")


class Transact(Protocol):
    """Runs ``body`` in one transaction of the sink, retried whole; ``what`` names it."""

    async def __call__(
        self, what: str, body: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T: ...


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """The sink's settings that shape how rows are written (see ``PostgresSink``).

    :param key: the conflict key given to the sink (empty: the table's primary key).
    :param partition: the columns a ``replace_partition`` batch replaces by.
    :param version_column: never overwrite a row whose version is newer.
    :param row_hash: row-hash change detection, if asked for.
    :param deleted_at: the ``soft_delete`` timestamp column.
    :param delete_flag: the record field that marks a delete in ``soft_delete`` mode.
    :param skip_unchanged: ``upsert`` does not rewrite a row whose stored values
        are unchanged, compared in the server: change detection without a hash column.
    """

    key: tuple[str, ...] = ()
    partition: tuple[str, ...] = ()
    version_column: str | None = None
    row_hash: RowHash | None = None
    deleted_at: str = "deleted_at"
    delete_flag: str = "_deleted"
    skip_unchanged: bool = False


class Writer:
    """Writes planned groups of one table in one mode; subclasses are the modes."""

    #: The mode's name, as ``mode =`` spells it.
    mode: ClassVar[str]
    #: Writes by a key (``INSERT … ON CONFLICT``), so the table needs a unique index on it.
    keyed: ClassVar[bool] = False
    #: Identical rows of a batch are numbered into their row hash (writers that append).
    numbered: ClassVar[bool] = False

    def __init__(self, table: TableName, options: WriteOptions) -> None:
        self.table = table
        self.options = options
        self.schema: TableSchema | None = None

    @classmethod
    def check_options(cls, options: WriteOptions, where: str) -> None:
        """Refuse settings this mode cannot work with.

        :raises ConfigError: naming the setting.
        """

    def bind(self, schema: TableSchema) -> None:
        """Write to the table ``schema`` describes from now on."""
        self.schema = schema

    @property
    def key(self) -> list[str]:
        """The conflict key: the sink's ``key`` or the table's primary key."""
        if self.options.key:
            return list(self.options.key)
        return list(self.schema.primary_key) if self.schema is not None else []

    @property
    def target(self) -> TableName:
        """The table rows are written to."""
        return self.schema.table if self.schema is not None else self.table

    @property
    def casts(self) -> dict[str, str]:
        """Columns staged as text and cast to their type: asyncpg has no binary codec for it."""
        if self.schema is None:
            return {}
        return {c.name: c.type for c in self.schema.columns if c.text_io}

    def column_types(self, columns: Sequence[str]) -> list[str] | None:
        """The SQL types of ``columns``, as the catalog spells them; ``None`` if one is not
        a column of the table."""
        if self.schema is None:
            return None
        found = [self.schema.column(c) for c in columns]
        return [c.type for c in found if c is not None] if None not in found else None

    @property
    def delete_flag(self) -> str | None:
        """The record field carried as the last value of each row to mark a delete, if any."""
        return None

    def required_fields(self) -> list[str]:
        """The fields every record must have."""
        options = self.options
        fields = list(options.partition)
        fields += [options.version_column] if options.version_column else []
        return fields + (options.row_hash.required_fields() if options.row_hash else [])

    # -- the table -----------------------------------------------------------

    def table_ddl(self, columns: Sequence[Column], key: Sequence[str]) -> str:
        """``CREATE TABLE`` for a new table of ``columns``, plus the columns this mode needs.

        :raises PermanentError: when the mode needs a key and ``key`` is empty.
        """
        extra = self.extra_columns({c.name for c in columns})
        row_hash = self.options.row_hash
        unique = [row_hash.column] if row_hash is not None and not self.keyed else []
        return table_ddl(
            self.table,
            [*columns, *extra],
            primary_key=key if self.keyed or not unique else (),
            unique=unique,
        )

    def extra_columns(self, names: set[str]) -> list[Column]:
        """Columns a new table whose columns are ``names`` gets for this mode."""
        row_hash = self.options.row_hash
        return row_hash.extra_columns(names) if row_hash is not None else []

    def check(self, schema: TableSchema, text_columns: Sequence[str]) -> None:
        """Refuse a table this mode cannot write, or that lacks a column the sink names.

        :raises PermanentError: naming the column, the table and the fix.
        """
        names = schema.column_names

        def require(column: str, role: str) -> None:
            if column not in names:
                raise PermanentError(
                    f"{role} column {column!r} is missing from table {schema.table} (its "
                    f"columns: {', '.join(names)}); fix the sink's {role} or add the column"
                )

        self.check_identity(schema, require)
        for column in text_columns:
            require(column, "columns")
        if self.options.version_column:
            require(self.options.version_column, "version_column")
        self.check_columns(require)
        if self.options.row_hash is not None:
            self.options.row_hash.check(schema, require, keyed=self.keyed, mode=self.mode)

    def check_identity(self, schema: TableSchema, require: Require) -> None:
        """Check what identifies the rows a batch replaces: here, its ``partition`` columns."""
        for column in self.options.partition:
            require(column, "partition")

    def check_columns(self, require: Require) -> None:
        """Check the columns only this mode writes (none here)."""

    # -- writing -------------------------------------------------------------

    async def open(self, transact: Transact, *, resume: bool) -> None:
        """Get ready to write to the bound table (nothing to do here).

        :param resume: the sink's checkpoints share its transactions, so what a
            crashed run left matches its checkpoint and may be resumed.
        """

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        """Write ``group`` through ``conn``, inside the caller's transaction.

        :returns: target rows inserted, updated or flagged (unchanged rows not counted).
        """
        raise NotImplementedError

    @property
    def compares(self) -> bool:
        """Whether rows the target already holds are left unwritten (skip_unchanged, row_hash).

        Then every row of a group that :meth:`load` did not count is unchanged.
        """
        return self.options.skip_unchanged or self.options.row_hash is not None
