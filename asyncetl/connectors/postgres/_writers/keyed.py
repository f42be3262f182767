"""What the writers by a key share: the key's checks, and one row per key in a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._writers.base import Writer
from asyncetl.connectors.postgres._writers.row_hash import Require
from asyncetl.connectors.postgres.schema import Column, TableSchema
from asyncetl.core.errors import PermanentError

__all__ = ["KeyedWriter"]

Row = tuple[Any, ...]


class KeyedWriter(Writer):
    """A writer that merges rows by a key with ``INSERT … ON CONFLICT``."""

    keyed = True

    @property
    def hash_column(self) -> str | None:
        """The row-hash column that skips unchanged rows, if any."""
        return self.options.row_hash.column if self.options.row_hash is not None else None

    def required_fields(self) -> list[str]:
        return [*self.key, *super().required_fields()]

    def table_ddl(self, columns: Sequence[Column], key: Sequence[str]) -> str:
        if not key:
            raise PermanentError(
                f"cannot create table {self.table} for {self.mode} without a "
                "key; give the sink key = [...]"
            )
        return super().table_ddl(columns, key)

    def check_identity(self, schema: TableSchema, require: Require) -> None:
        t, key = schema.table, self.key
        if not key:
            raise PermanentError(
                f'table {t} has no primary key; give the sink key = [...] or use mode = "append"'
            )
        for column in key:
            require(column, "key")
        if not schema.has_unique_key(key):
            raise PermanentError(
                f"table {t} has no unique index on exactly ({', '.join(key)}), "
                "which INSERT … ON CONFLICT needs; create one or change the key"
            )
        super().check_identity(schema, require)

    def one_per_key(self, columns: list[str], rows: list[Row]) -> Sequence[Row]:
        """The last row of each key; with a version column, the newest version's row.

        ``ON CONFLICT DO UPDATE`` cannot touch one row twice in a statement.
        """
        key_index = [columns.index(k) for k in self.key]
        latest = _load.last_per_key(rows, key_index)
        version_column = self.options.version_column
        if latest is rows or version_column is None:
            return latest
        v = columns.index(version_column)  # the newest version of a key wins, not the last
        return _load.last_per_key(
            sorted(rows, key=lambda row: (row[v] is not None, row[v])), key_index
        )
