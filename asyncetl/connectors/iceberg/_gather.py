"""Records and change events gathered per table until the next commit.

A mapping is one row of the sink's table. A
:class:`~asyncetl.core.changes.ChangeEvent` is routed to the sink's table, or
else to ``<schema>.<table>`` of its source, and applied by its key: inserts,
updates and snapshot rows become that key's row, deletes remove it, a
truncate empties the table. Values are made to fit their column here, so
that a record that cannot be stored is refused with its batch, never at
commit. Everything here blocks; the sink calls it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.catalog import Catalog

from asyncetl.connectors.iceberg._table import Changes, IcebergTable, Key, Partition, Row
from asyncetl.connectors.iceberg._types import arrow_type_of, sql_type
from asyncetl.core.batch import Reject
from asyncetl.core.changes import UNCHANGED, ChangeEvent

__all__ = ["Gatherer", "TableSettings"]

#: The overhead counted for a value that is neither text nor bytes.
_VALUE_BYTES = 8
#: How many rows of a batch are measured to estimate its size.
_SAMPLE = 16


@dataclass(frozen=True, slots=True)
class TableSettings:
    """How the sink's tables are made and keyed.

    :param table: every record's table, or ``None`` to route change events by source table.
    :param key: the columns rows are upserted by; change events default to their own key.
    :param declared: column types a new table is created with.
    :param partitions: a new table's partition fields.
    :param evolve: add columns that records bring to an existing table.
    """

    table: tuple[str, str] | None
    key: tuple[str, ...]
    declared: Mapping[str, pa.DataType]
    partitions: tuple[Partition, ...]
    evolve: bool


class Gatherer:
    """Holds each table's changes, and roughly how many bytes they take, until :meth:`take`."""

    def __init__(self, settings: TableSettings, catalog: Callable[[], Catalog]) -> None:
        self._settings = settings
        self._catalog = catalog
        self._tables: dict[tuple[str, str], IcebergTable] = {}
        self._changes: dict[tuple[str, str], Changes] = {}
        self.nbytes = 0

    def add(self, records: Sequence[object]) -> list[Reject]:
        """Gather ``records``; return those refused, each with the reason."""
        rejects: list[Reject] = []
        for target, group in self._by_table(records, rejects).items():
            table = self._table(target)
            self._add_columns(table, group, rejects)
            sizes: list[int] = []
            for record in group:
                try:
                    row = self._gather(table, record)
                except ValueError as exc:
                    rejects.append(Reject(record, exc))
                    continue
                if len(sizes) < _SAMPLE:
                    sizes.append(_size(row))
            # Measured on a sample: rows of one table and batch are much alike.
            self.nbytes += sum(sizes) * len(group) // max(1, len(sizes))
        return rejects

    def take(self) -> list[tuple[IcebergTable, Changes]]:
        """The tables with changes and their changes, in name order; holds nothing afterwards."""
        taken = [(self._tables[t], c) for t, c in sorted(self._changes.items()) if c]
        for table, changes in taken:
            self._fill_unchanged(table, changes)
        self._changes = {}
        self.nbytes = 0
        return taken

    # -- routing -------------------------------------------------------------------

    def _by_table(
        self, records: Sequence[object], rejects: list[Reject]
    ) -> dict[tuple[str, str], list[object]]:
        groups: dict[tuple[str, str], list[object]] = {}
        fixed = self._settings.table
        for record in records:
            if isinstance(record, ChangeEvent):
                target = fixed or (record.schema, record.table)
            elif isinstance(record, Mapping) and fixed is not None:
                target = fixed
            else:
                rejects.append(Reject(record, _unroutable(record)))
                continue
            groups.setdefault(target, []).append(record)
        return groups

    def _table(self, target: tuple[str, str]) -> IcebergTable:
        table = self._tables.get(target)
        if table is None:
            settings = self._settings
            table = IcebergTable(
                self._catalog(),
                target,
                declared=settings.declared,
                partitions=settings.partitions,
            )
            table.load()
            self._tables[target] = table
        return table

    # -- columns -------------------------------------------------------------------

    def _add_columns(self, table: IcebergTable, group: list[object], rejects: list[Reject]) -> None:
        """Add the columns ``group`` brings, typed by SQL type, else by the values."""
        values: dict[str, list[object]] = {}
        hints: dict[str, str] = {}
        for record in group:
            row = _row_of(record)
            if row is None or row.keys() <= table.columns.keys():
                continue
            if isinstance(record, ChangeEvent) and record.columns:
                hints.update(record.columns)
            for column, value in row.items():
                if column not in table.columns:
                    values.setdefault(column, []).append(value)
        if not values:
            return
        if table.exists and not self._settings.evolve:
            return  # each such record is refused by _gather, naming its column
        for column, seen in values.items():
            hint = sql_type(hints[column]) if column in hints else None
            kind = hint or arrow_type_of([v for v in seen if v is not UNCHANGED])
            if kind is not None:
                table.add_column(column, kind)

    # -- one record ----------------------------------------------------------------

    def _gather(self, table: IcebergTable, record: object) -> Row | None:
        """Hold ``record``'s change; return its row as held.

        :raises ValueError: naming why the record cannot be stored.
        """
        changes = self._changes_of(table, record)
        if isinstance(record, ChangeEvent) and record.op == "t":
            changes.truncate()
            return None
        row = _row_of(record)
        converted, unchanged = self._converted(table, row) if row is not None else (None, False)
        if not changes.key:
            if converted is None or (isinstance(record, ChangeEvent) and record.op == "u"):
                raise _keyless(table, record)
            changes.rows.append(converted)
            return converted
        key = _key_of(table, changes.key, record, converted)
        moved = _old_key(table, changes.key, record)
        if moved is not None and moved != key:  # the update changed the key: the old row goes
            changes.keyed.pop(moved, None)
            changes.keyed[moved] = None
        if unchanged:
            converted = _merged(converted, changes.keyed.get(key))  # type: ignore[arg-type]
        changes.keyed.pop(key, None)  # a re-inserted key goes last, as it happened
        changes.keyed[key] = converted
        return converted

    def _changes_of(self, table: IcebergTable, record: object) -> Changes:
        changes = self._changes.get(table.identifier)
        if changes is None:
            key = self._settings.key
            if not key and isinstance(record, ChangeEvent):
                key = record.key_columns
            changes = self._changes[table.identifier] = Changes(tuple(key))
        elif not changes.key and not changes.rows and isinstance(record, ChangeEvent):
            changes.key = record.key_columns  # the table's first change was a truncate
        return changes

    def _converted(self, table: IcebergTable, row: Mapping[str, object]) -> tuple[Row, bool]:
        """The row with each value made to fit its column, and whether some were unchanged."""
        converters, exact = table.converters, table.exact
        out: Row = {}
        unchanged = False
        for column, value in row.items():
            if type(value) is exact.get(column):
                out[column] = value
                continue
            convert = converters.get(column)
            if convert is None:
                if value is None:
                    continue  # a column never seen with a value reads as null anyway
                raise ValueError(
                    f"column {column!r} is not in Iceberg table {table.name!r}; "
                    "set evolve_schema = true to add it, or drop it in a transform"
                )
            if value is UNCHANGED:
                unchanged = True
                out[column] = value
            else:
                out[column] = convert(value)
        return out, unchanged

    def _fill_unchanged(self, table: IcebergTable, changes: Changes) -> None:
        """Fill values the source left out as unchanged from the rows the table holds."""
        missing = [k for k, row in changes.keyed.items() if row and _has_unchanged(row)]
        existing = table.existing_rows(changes.key, missing)
        for key in missing:
            row = changes.keyed[key]
            assert row is not None
            old = existing.get(key, {})
            changes.keyed[key] = {c: (old.get(c) if v is UNCHANGED else v) for c, v in row.items()}


def _row_of(record: object) -> Mapping[str, object] | None:
    if isinstance(record, ChangeEvent):
        return record.after if record.op in ("c", "u", "r") else None
    return record if isinstance(record, Mapping) else None


def _key_of(table: IcebergTable, key: tuple[str, ...], record: object, row: Row | None) -> Key:
    source: Mapping[str, object] | None = row
    if isinstance(record, ChangeEvent) and record.op == "d":
        source = record.key or record.before
    if source is not None and len(key) == 1:
        value = source.get(key[0])
        if value is not None and value is not UNCHANGED and row is not None:
            return (value,)
    values = tuple(None if source is None else source.get(c) for c in key)
    if any(v is None or v is UNCHANGED for v in values):
        column = key[next(i for i, v in enumerate(values) if v is None or v is UNCHANGED)]
        raise ValueError(
            f"record's key column {column!r} is missing or null; Iceberg table "
            f"{table.name!r} is keyed by it, and a record without its key cannot be stored"
        )
    if row is None:  # a delete: its key, converted as the table's rows were
        return tuple(
            table.converters[c](v) if c in table.converters else v
            for c, v in zip(key, values, strict=True)
        )
    return values


def _old_key(table: IcebergTable, key: tuple[str, ...], record: object) -> Key | None:
    """The key an update moved its row from, when the source sent it."""
    if not isinstance(record, ChangeEvent) or record.op != "u" or not record.before:
        return None
    values = [record.before.get(c) for c in key]
    if any(v is None or v is UNCHANGED for v in values):
        return None
    converters = table.converters
    return tuple(
        converters[c](v) if c in converters else v for c, v in zip(key, values, strict=True)
    )


def _has_unchanged(row: Row) -> bool:
    return any(value is UNCHANGED for value in row.values())


def _merged(row: Row, earlier: Row | None) -> Row:
    if earlier is None:
        return row
    return {c: (earlier.get(c, v) if v is UNCHANGED else v) for c, v in row.items()}


def _size(row: Row | None) -> int:
    if not row:
        return _VALUE_BYTES
    return sum(len(v) if isinstance(v, str | bytes) else _VALUE_BYTES for v in row.values())


def _unroutable(record: object) -> TypeError:
    if isinstance(record, Mapping):
        return TypeError(
            "a mapping record needs the sink's table; set table = 'namespace.table', "
            "or send change events, which name their own table"
        )
    return TypeError(
        f"an Iceberg record must be a mapping or a ChangeEvent, not a {type(record).__name__}"
    )


def _keyless(table: IcebergTable, record: object) -> ValueError:
    op = record.op if isinstance(record, ChangeEvent) else "?"
    return ValueError(
        f"a change ({op!r}) to Iceberg table {table.name!r}, which has no key, cannot be "
        "applied; give the source table a primary key, or set key in the sink"
    )
