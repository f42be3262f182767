"""Planning a PostgreSQL sink's batch: dict records to COPY rows, one group per shape.

A :class:`Planner` knows the target table and the sink's mode; it refuses the
records that cannot be loaded (unknown fields, a missing key) with their
reasons, and turns the rest into tuples ready for COPY: json values as text,
row hashes appended, the soft-delete flag last. Lines in COPY's text format
(from ``TableSource(format="copy")``) pass through as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._load import TextRows
from asyncetl.connectors.postgres._rows import (
    group_by_shape,
    json_text,
    row_hash,
    rows_of,
    uniform_rows,
)
from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.batch import Reject
from asyncetl.core.errors import PermanentError

__all__ = ["KEYED_MODES", "Group", "Planner"]

#: Modes that write by a key.
KEYED_MODES = ("upsert", "soft_delete")
_JSON_TYPES = frozenset({"json", "jsonb"})

Record = Mapping[str, Any]
Row = tuple[Any, ...]


class Group:
    """Records of one shape, turned into rows for one COPY."""

    __slots__ = ("columns", "records", "rows")

    def __init__(self, columns: list[str], records: list[Any], rows: list[Row] | TextRows) -> None:
        self.columns = columns
        self.records = records
        self.rows = rows


class Planner:
    """Turns records into :class:`Group` s for one table and mode.

    :param key: the conflict key of keyed modes (already resolved against the table).
    :param row_hash: columns hashed into ``row_hash_column`` (``["*"]``: all).
    :param text_columns: the columns COPY text lines fill, in order (default: the
        table's columns in table order).
    """

    def __init__(
        self,
        schema: TableSchema,
        *,
        mode: str,
        key: Sequence[str],
        partition: Sequence[str],
        version_column: str | None,
        row_hash: Sequence[str] | None,
        row_hash_column: str,
        delete_flag: str,
        text_columns: Sequence[str] | None = None,
    ) -> None:
        self.schema = schema
        self.mode = mode
        self.key = list(key)
        self.partition = list(partition)
        self.version_column = version_column
        self.row_hash = list(row_hash) if row_hash is not None else None
        self.row_hash_column = row_hash_column
        self.delete_flag = delete_flag
        self._known = frozenset(schema.column_names)
        self.text_columns = list(text_columns or schema.column_names)

    def plan_text(self, lines: Sequence[bytes]) -> list[Group]:
        """COPY text lines as one group, for the modes that need no values in Python.

        :raises PermanentError: for ``soft_delete`` and ``row_hash``, which do.
        """
        if self.mode == "soft_delete" or self.row_hash is not None:
            needs = "soft_delete" if self.mode == "soft_delete" else "row_hash"
            raise PermanentError(
                f"{needs} needs records, not COPY lines: read the source with "
                'format = "records", or drop ' + needs
            )
        return [Group(self.text_columns, list(lines), TextRows(lines))]

    def plan(self, records: Sequence[Record]) -> tuple[list[Group], list[Reject]]:
        """The groups to load and the records refused, with their reasons."""
        uniform = uniform_rows(records) if self.mode != "soft_delete" else None
        if uniform is not None:  # the usual case: every record has the same fields
            names, rows = uniform
            return self._groups([(list(names), list(records), rows)])
        shapes: list[tuple[list[str], list[Record], list[Row] | None]] = []
        for shape, members in group_by_shape(records).items():
            columns = [
                c for c in shape if not (self.mode == "soft_delete" and c == self.delete_flag)
            ]
            shapes.append((columns, members, None))
        return self._groups(shapes)

    def _groups(
        self, shapes: list[tuple[list[str], list[Record], list[Row] | None]]
    ) -> tuple[list[Group], list[Reject]]:
        groups: list[Group] = []
        rejects: list[Reject] = []
        for columns, members, rows in shapes:
            problem = self._shape_problem(columns)
            if problem is not None:
                rejects.extend(Reject(record, PermanentError(problem)) for record in members)
                continue
            groups.append(self._group(columns, members, rows))
        return groups, rejects

    def _shape_problem(self, columns: list[str]) -> str | None:
        for column in columns:
            if column not in self._known:
                return (
                    f"field {column!r} is not a column of table {self.schema.table}; add the "
                    "column or drop the field with a transform"
                )
        needed = list(self.key) if self.mode in KEYED_MODES else list(self.partition)
        needed += [self.version_column] if self.version_column else []
        needed += [c for c in self.row_hash or () if c != "*"]
        for column in needed:
            if column not in columns:
                return f"record has no field {column!r}, which the sink needs for {self.mode}"
        return None

    def _group(self, columns: list[str], records: list[Record], rows: list[Row] | None) -> Group:
        if rows is None:
            rows = rows_of(records, columns)
        json_columns = [
            i
            for i, c in enumerate(columns)
            if self.schema.column(c).type in _JSON_TYPES  # type: ignore[union-attr]
        ]
        if json_columns:
            rows = json_text(rows, json_columns)
        if self.row_hash is not None:
            rows = self._with_hashes(columns, rows)
            columns = [*columns, self.row_hash_column]
        if self.mode == "soft_delete":
            flag = self.delete_flag
            rows = [(*row, bool(r.get(flag))) for row, r in zip(rows, records, strict=True)]
            columns = [*columns, flag]
        return Group(columns, records, rows)

    def _with_hashes(self, columns: list[str], rows: list[Row]) -> list[Row]:
        hashed = columns if self.row_hash == ["*"] else self.row_hash or []
        index = [columns.index(c) for c in hashed if c != self.row_hash_column]
        seen: dict[Row, int] = {}
        out = []
        for row in rows:
            values = tuple(row[i] for i in index)
            salt = 0
            if self.mode in ("append", "refresh_swap"):  # tell identical rows apart
                salt = seen[values] = seen.get(values, -1) + 1
            out.append((*row, row_hash(values, salt)))
        return out

    def one_per_key(self, columns: list[str], rows: list[Row]) -> Sequence[Row]:
        """The last row of each key; with a version column, the newest version's row."""
        key_index = [columns.index(k) for k in self.key]
        latest = _load.last_per_key(rows, key_index)
        if latest is rows or self.version_column is None:
            return latest
        v = columns.index(self.version_column)  # the newest version of a key wins, not the last
        return _load.last_per_key(
            sorted(rows, key=lambda row: (row[v] is not None, row[v])), key_index
        )
