"""Row-hash change detection: a hash of each row's values, kept in a column of the table.

A keyed writer (``upsert``, ``soft_delete``) does not rewrite a row whose stored
hash is unchanged. An appending writer (``append``, ``refresh_swap``) keeps the
hash column unique and skips rows already there, so a replay appends nothing;
identical rows of one batch are numbered into their hash, so each is kept
(and rows that differ but hash alike are numbered apart across batches too:
see :mod:`.hash_numbers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncetl.connectors.postgres._rows import hash_payload, salted_hash
from asyncetl.connectors.postgres.schema import Column, TableSchema
from asyncetl.core.errors import PermanentError

__all__ = ["Require", "RowHash"]

Row = tuple[Any, ...]
#: ``require(column, role)`` refuses a table that lacks ``column``, naming its ``role``.
Require = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class RowHash:
    """Which fields are hashed, and the column holding the hash.

    :param fields: the hashed fields; ``("*",)``: every field of the record.
    :param column: the column holding the hash.
    """

    fields: tuple[str, ...]
    column: str = "_row_hash"

    def required_fields(self) -> list[str]:
        """The fields every record must have to be hashed."""
        return [c for c in self.fields if c != "*"]

    def extra_columns(self, names: set[str]) -> list[Column]:
        """The hash column, for a new table whose ``names`` lack it."""
        return [] if self.column in names else [Column(self.column, "text")]

    def check(self, schema: TableSchema, require: Require, *, keyed: bool, mode: str) -> None:
        """Refuse a table without the hash column, or without the unique index appending needs.

        :raises PermanentError: naming the table and the fix.
        """
        require(self.column, "row_hash_column")
        if not keyed and not schema.has_unique_key([self.column]):
            raise PermanentError(
                f"table {schema.table} needs a unique index on {self.column!r} for "
                f"{mode} with row_hash; create one or use create = true on a new table"
            )

    def hashed(self, columns: Sequence[str]) -> list[int]:
        """Where the hashed values are in a row of ``columns`` (the hash column aside)."""
        hashed: Sequence[str] = columns if self.fields == ("*",) else self.fields
        return [columns.index(c) for c in hashed if c != self.column]

    def append_hashes(self, columns: list[str], rows: list[Row], *, numbered: bool) -> list[Row]:
        """``rows`` with their hash as one more value.

        :param numbered: tell identical rows apart by their occurrence number.
        """
        index = self.hashed(columns)
        # Numbered by payload, not by value: NaN equals no NaN, and -0.0 equals 0.0.
        seen: dict[bytes, int] = {}
        out = []
        for row in rows:
            payload = hash_payload(tuple(row[i] for i in index))
            salt = 0
            if numbered:
                salt = seen[payload] = seen.get(payload, -1) + 1
            out.append((*row, salted_hash(payload, salt)))
        return out
