"""Planning a PostgreSQL sink's batch: dict records to COPY rows, one group per shape.

A :class:`Planner` knows the target table and the sink's writer; it refuses the
records that cannot be loaded (unknown fields, a missing key) with their
reasons, and turns the rest into tuples ready for COPY: json values as text,
row hashes appended, the soft-delete flag last. Lines in COPY's text format
(from ``TableSource(format="copy")``) and pages of its binary format (from
``format="binary"``) pass through as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, time, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from asyncetl.connectors.postgres._binary import BinaryPage, distinct_pages
from asyncetl.connectors.postgres._encode import find_bad_values
from asyncetl.connectors.postgres._load import BinaryRows, CopyRows, TextRows
from asyncetl.connectors.postgres._objects import object_text
from asyncetl.connectors.postgres._rows import group_by_shape, json_text, rows_of, uniform_rows
from asyncetl.connectors.postgres._sql import WholeText
from asyncetl.connectors.postgres._value_check import find_changed_values
from asyncetl.connectors.postgres.cdc._values import pg_text
from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.batch import Reject
from asyncetl.core.columnar import RowBlock
from asyncetl.core.errors import PermanentError

if TYPE_CHECKING:
    from asyncetl.connectors.postgres._writers import Writer
    from asyncetl.connectors.postgres._writers.base import Transact

__all__ = ["Group", "Planner", "is_copy_data", "reject_bad_values"]

_JSON_TYPES = frozenset({"json", "jsonb"})
_COPY_DATA = (bytes, bytearray, BinaryPage)

Record = Mapping[str, Any]
Row = tuple[Any, ...]


def _values_as_text(row: Row, index: list[int], whole: frozenset[int] = frozenset()) -> Row:
    """``row`` with its values at ``index`` as the text their column is staged in: a
    ``timedelta`` as interval text, a date or time in ISO form, a list for a column at
    ``whole`` (see :class:`~._sql.WholeText`) as an array literal, asyncpg's objects as
    their text (:func:`~._objects.object_text`); text stays as it is."""
    values = list(row)
    for i in index:
        v = values[i]
        if isinstance(v, timedelta):
            values[i] = f"{v.days} days {v.seconds} seconds {v.microseconds} microseconds"
        elif isinstance(v, date | time):
            values[i] = v.isoformat()
        elif isinstance(v, list | tuple) and i in whole:
            values[i] = pg_text(v)
        elif v is not None and not isinstance(v, str):
            values[i] = object_text(v)  # asyncpg's Range, Point…, a tuple for a row
    return tuple(values)


def is_copy_data(records: Sequence[Any]) -> bool:
    """Whether ``records`` are COPY data, loaded as they are: text lines, binary pages.

    A :class:`RowBlock` holds records, and reading its first would make a dict of every row.
    """
    return type(records) is not RowBlock and bool(records) and isinstance(records[0], _COPY_DATA)


class Group:
    """Records of one shape, turned into rows for one COPY."""

    __slots__ = ("columns", "records", "rows")

    def __init__(
        self, columns: list[str], records: Sequence[Any], rows: list[Row] | CopyRows
    ) -> None:
        self.columns = columns
        self.records = records
        self.rows = rows


class Planner:
    """Turns records into :class:`Group` s for one table and the writer of the sink's mode.

    :param writer: says which fields records need, and whether rows carry a
        row hash or a delete flag.
    :param text_columns: the columns COPY text lines fill, in order (default: the
        table's columns in table order).
    """

    def __init__(
        self,
        schema: TableSchema,
        writer: Writer,
        *,
        text_columns: Sequence[str] | None = None,
    ) -> None:
        self.schema = schema
        self.writer = writer
        self._known = frozenset(schema.column_names)
        self._generated = frozenset(c.name for c in schema.columns if c.generated is not None)
        self.text_columns = list(text_columns or schema.column_names)

    def plan_copy(self, lines: Sequence[bytes] | Sequence[BinaryPage]) -> list[Group]:
        """COPY text lines, or binary pages, as one group, for the modes that need no values.

        :raises PermanentError: for ``soft_delete`` and ``row_hash``, which do.
        """
        flag, hashed = self.writer.delete_flag, self.writer.options.row_hash
        if flag is not None or hashed is not None:
            needs = self.writer.mode if flag is not None else "row_hash"
            raise PermanentError(
                f"{needs} needs records, not COPY lines: read the source with "
                'format = "records", or drop ' + needs
            )
        if isinstance(lines[0], BinaryPage):
            pages = distinct_pages(lines)
            return [Group(self.text_columns, pages, BinaryRows(pages))]
        return [Group(self.text_columns, list(lines), TextRows(lines))]  # type: ignore[arg-type]

    def plan(self, records: Sequence[Record]) -> tuple[list[Group], list[Reject]]:
        """The groups to load and the records refused, with their reasons."""
        keyless: list[Reject] = []
        if self.writer.keyed:
            records, keyless = self._keyed(records)
        groups, rejects = self._plan(records)
        return groups, keyless + rejects

    def plan_block(self, block: Sequence[Record]) -> tuple[list[Group], list[Reject]] | None:
        """:meth:`plan` for an unread :class:`RowBlock` whose names are all columns, taking
        its rows as they are instead of making a dict per row and back.

        ``None`` when the records need :meth:`plan`: they are no RowBlock or it was read,
        a name repeats or is no column, the writer needs a delete flag, or a key is
        missing or null.
        """
        if type(block) is not RowBlock:
            return None
        rows, names = block.rows(), block.names
        if rows is None or len(set(names)) < len(names) or self.writer.delete_flag is not None:
            return None
        if not self._known.issuperset(names):
            return None  # refused, or added as a column, by the schema contract
        if self.writer.keyed:
            if not set(self.writer.key) <= set(names):
                return None
            for column in self.writer.key:
                if None in map(itemgetter(names.index(column)), rows):
                    return None
        # A driver's rows (asyncpg's Record) index, slice and unpack like tuples, and
        # COPY takes them as they are: no tuple is made of each.
        return self._groups([(list(names), block, cast(list[Row], list(rows)))])

    def _keyed(self, records: Sequence[Record]) -> tuple[Sequence[Record], list[Reject]]:
        """``records`` without those whose key is null, and those refused for it.

        A record missing a key field is refused by its shape (see ``_shape_problem``).
        """
        key = self.writer.key
        if not key or all(None not in map(r.get, key) for r in records):
            return records, []
        kept: list[Record] = []
        rejects: list[Reject] = []
        for record in records:
            column = next((k for k in key if k in record and record[k] is None), None)
            if column is None:
                kept.append(record)
                continue
            message = (
                f"record's key field {column!r} is null; table {self.schema.table} is keyed "
                "by it, and a record without its key cannot be stored"
            )
            rejects.append(Reject(record, PermanentError(message)))
        return kept, rejects

    def _plan(self, records: Sequence[Record]) -> tuple[list[Group], list[Reject]]:
        flag = self.writer.delete_flag
        uniform = uniform_rows(records) if flag is None else None
        if uniform is not None:  # the usual case: every record has the same fields
            names, rows = uniform
            return self._groups([(list(names), list(records), rows)])
        shapes: list[tuple[list[str], Sequence[Record], list[Row] | None]] = []
        for shape, members in group_by_shape(records).items():
            shapes.append(([c for c in shape if c != flag], members, None))
        return self._groups(shapes)

    def _groups(
        self, shapes: list[tuple[list[str], Sequence[Record], list[Row] | None]]
    ) -> tuple[list[Group], list[Reject]]:
        groups: list[Group] = []
        rejects: list[Reject] = []
        for columns, members, rows in shapes:
            if self._generated.intersection(columns):  # the server computes them
                columns = [c for c in columns if c not in self._generated]
                rows = None
            problem = self._shape_problem(columns)
            if problem is not None:
                rejects.extend(Reject(record, PermanentError(problem)) for record in members)
                continue
            if rows is None:
                rows = rows_of(members, columns)
            changed = find_changed_values(self.schema, columns, rows, members, self.writer.key)
            if changed:
                rejects += [Reject(members[i], PermanentError(why)) for i, why in changed.items()]
                members = [r for i, r in enumerate(members) if i not in changed]
                rows = [row for i, row in enumerate(rows) if i not in changed]
            groups.append(self._group(columns, members, rows))
        return groups, rejects

    def _shape_problem(self, columns: list[str]) -> str | None:
        for column in columns:
            if column not in self._known:
                return (
                    f"field {column!r} is not a column of table {self.schema.table}; add the "
                    "column or drop the field with a transform"
                )
        for column in self.writer.required_fields():
            if column not in columns:
                return (
                    f"record has no field {column!r}, which the sink needs for {self.writer.mode}"
                )
        return None

    def _group(
        self, columns: list[str], records: Sequence[Record], rows: list[Row] | None
    ) -> Group:
        if rows is None:
            rows = rows_of(records, columns)
        json_columns = [
            i
            for i, c in enumerate(columns)
            if self.schema.column(c).type in _JSON_TYPES  # type: ignore[union-attr]
        ]
        if json_columns:
            rows = json_text(rows, json_columns)
        staged_as_text = [
            i
            for i, c in enumerate(columns)
            if self.schema.column(c).text_io  # type: ignore[union-attr]
        ]
        if staged_as_text:
            whole = frozenset(
                i
                for i in staged_as_text
                if isinstance(self.schema.column(columns[i]).type, WholeText)  # type: ignore[union-attr]
            )
            rows = [_values_as_text(row, staged_as_text, whole) for row in rows]
        hashed = self.writer.options.row_hash
        if hashed is not None:
            rows = hashed.append_hashes(columns, rows, numbered=self.writer.numbered)
            columns = [*columns, hashed.column]
        flag = self.writer.delete_flag
        if flag is not None:
            rows = [(*row, bool(r.get(flag))) for row, r in zip(rows, records, strict=True)]
            columns = [*columns, flag]
        return Group(columns, records, rows)


async def reject_bad_values(
    groups: Sequence[Group], schema: TableSchema, table: str, transact: Transact
) -> list[Reject]:
    """Reject the records holding values their column cannot take; drop them from ``groups``.

    For after a load failed with a ``TypeError``/``ValueError`` from asyncpg's encoder.
    """
    rejects: list[Reject] = []
    for group in groups:
        rows = group.rows
        if isinstance(rows, CopyRows):
            continue  # never encoded here: the server checks COPY data
        columns = [c for c in group.columns if schema.column(c) is not None]
        types = [schema.column(c).type for c in columns]  # type: ignore[union-attr]

        async def find(
            conn: asyncpg.Connection,
            rows: list[Row] = rows,
            columns: list[str] = columns,
            types: list[str] = types,
        ) -> list[Any]:
            return await find_bad_values(
                conn, columns, types, [row[: len(columns)] for row in rows]
            )

        bad = await transact("checking values", find)
        doomed = {b.row for b in bad}
        rejects += [Reject(group.records[b.row], PermanentError(b.message(table))) for b in bad]
        group.rows = [row for i, row in enumerate(rows) if i not in doomed]
        group.records = [r for i, r in enumerate(group.records) if i not in doomed]
    return rejects
