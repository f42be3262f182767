"""One Iceberg table as the sink writes it: its columns, its creation, and one commit.

Everything here blocks (pyiceberg reads and writes files and the catalog
database); the sink calls it in a worker thread.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
    Or,
)
from pyiceberg.table import Table, Transaction
from pyiceberg.transforms import parse_transform

from asyncetl.connectors.iceberg._types import Converter, converter, exact_type
from asyncetl.core.errors import ConfigError, PermanentError

__all__ = ["Changes", "IcebergTable", "Partition", "parse_partitions"]

Row = dict[str, object]
Key = tuple[object, ...]

_PARTITION = re.compile(r"(?:(\w+)\(\s*(?:(\d+)\s*,\s*)?(\w+)\s*\)|(\w+))")
_TRANSFORMS = ("identity", "year", "month", "day", "hour", "bucket", "truncate")
_SIZED = ("bucket", "truncate")


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition field: ``day(created_at)``, ``bucket(16, id)``, or a column for identity."""

    column: str
    transform: str
    width: int | None = None

    @property
    def name(self) -> str:
        return self.column if self.transform == "identity" else f"{self.column}_{self.transform}"

    @property
    def iceberg_transform(self) -> str:
        return self.transform if self.width is None else f"{self.transform}[{self.width}]"


def parse_partitions(where: str, specs: Sequence[str]) -> tuple[Partition, ...]:
    """The partition fields of ``partition_by``.

    :raises ConfigError: naming the first entry that is not ``column`` or ``transform(column)``.
    """
    fields = []
    for text in specs:
        match = _PARTITION.fullmatch(text.strip())
        if match is None or (match[1] is not None and match[1] not in _TRANSFORMS):
            raise ConfigError(
                f"{text!r} is not a partition field; use a column name, or "
                "year/month/day/hour(column), bucket(N, column), truncate(W, column)",
                where=where,
                key="partition_by",
            )
        if match[4] is not None:
            fields.append(Partition(match[4], "identity"))
            continue
        transform, width = match[1], match[2]
        if (transform in _SIZED) != (width is not None):
            raise ConfigError(
                f"{text!r}: bucket and truncate take a number first, the others none",
                where=where,
                key="partition_by",
            )
        fields.append(Partition(match[3], str(transform), int(width) if width else None))
    return tuple(fields)


@dataclass(slots=True)
class Changes:
    """What one table gets at the next commit.

    Without a key, rows are appended. With one, :attr:`keyed` holds each key's
    final row (``None`` for a delete): only the last change of a key since the
    previous commit reaches the table.
    """

    key: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    keyed: dict[Key, Row | None] = field(default_factory=dict)
    truncated: bool = False

    def truncate(self) -> None:
        """Every row goes: the held ones, and the table's at commit."""
        self.rows.clear()
        self.keyed.clear()
        self.truncated = True

    def __bool__(self) -> bool:
        return bool(self.rows or self.keyed or self.truncated)


class IcebergTable:
    """The table at ``identifier``: known columns with their converters, and commits.

    :param declared: column types to create the table with, in this order, before
        the columns the records bring.
    """

    def __init__(
        self,
        catalog: Catalog,
        identifier: tuple[str, str],
        *,
        declared: Mapping[str, pa.DataType],
        partitions: Sequence[Partition],
    ) -> None:
        self.catalog = catalog
        self.identifier = identifier
        self.name = ".".join(identifier)
        self.partitions = tuple(partitions)
        self._declared = dict(declared)
        self._table: Table | None = None
        self.columns: dict[str, pa.DataType] = {}
        self.converters: dict[str, Converter] = {}
        #: Per column, the Python type whose values are stored as they are (see ``exact_type``).
        self.exact: dict[str, type | None] = {}
        self._new: dict[str, pa.DataType] = {}

    @property
    def exists(self) -> bool:
        return self._table is not None

    def load(self) -> None:
        """Read the table's columns; a missing table is created by the first commit."""
        try:
            self._table = self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            self._table = None
            for column, kind in self._declared.items():
                self.add_column(column, kind)
            return
        for arrow_field in self._table.schema().as_arrow():
            self._know(arrow_field.name, arrow_field.type)

    def add_column(self, column: str, kind: pa.DataType) -> None:
        """Add ``column`` to the table at the next commit."""
        self._know(column, kind)
        self._new[column] = kind

    def _know(self, column: str, kind: pa.DataType) -> None:
        self.columns[column] = kind
        self.converters[column] = converter(column, kind)
        self.exact[column] = exact_type(kind)

    def existing_rows(self, key: tuple[str, ...], keys: Sequence[Key]) -> dict[Key, Row]:
        """The table's current rows with these keys."""
        if self._table is None or not keys:
            return {}
        found = self._table.scan(row_filter=_matching(key, keys)).to_arrow().to_pylist()
        return {tuple(row[k] for k in key): row for row in found}

    def commit(self, changes: Changes, properties: Mapping[str, str]) -> None:
        """Apply ``changes`` in one Iceberg commit whose snapshots carry ``properties``."""
        if self._table is None:
            self._table = self._create()
        else:
            # Another writer (or a commit that failed midway and is retried) may have moved it.
            self._table.refresh()
        table, tx = self._table, self._table.transaction()
        self._evolve(tx)
        props = dict(properties)
        schema = tx.table_metadata.schema().as_arrow()
        with warnings.catch_warnings():
            # A delete that matches nothing is no news: the key was never loaded.
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            if changes.truncated:
                tx.delete(AlwaysTrue(), snapshot_properties=props)
            if changes.keyed:
                existing = None if changes.truncated else table
                self._replace_keys(tx, existing, changes, schema, props)
        if changes.rows:
            tx.append(pa.Table.from_pylist(changes.rows, schema=schema), snapshot_properties=props)
        self._table = tx.commit_transaction()
        self._new = {}

    def _replace_keys(
        self,
        tx: Transaction,
        existing: Table | None,
        changes: Changes,
        schema: pa.Schema,
        props: dict[str, str],
    ) -> None:
        """Delete the changed keys' rows and append their new ones.

        For one key column of integers or text, the rows in the changed keys'
        range are read and filtered with Arrow, and the range is overwritten with
        those kept plus the new ones: pyiceberg binds a filter of two values
        instead of one per key, which for thousands of keys is most of a
        commit's time. A range holding no rows yet (a first load) is appended to.
        """
        new = pa.Table.from_pylist(
            [r for r in changes.keyed.values() if r is not None], schema=schema
        )
        keys = list(changes.keyed)
        span = _span(changes.key, keys)
        if span is None:
            tx.delete(_matching(changes.key, keys), snapshot_properties=props)
        else:
            old = existing.scan(row_filter=span).to_arrow() if existing is not None else None
            if old is not None and old.num_rows:
                column = changes.key[0]
                changed = pa.array([k[0] for k in keys], type=schema.field(column).type)
                kept = old.filter(pc.invert(pc.is_in(old[column], value_set=changed)))
                rewritten = pa.concat_tables([_conformed(kept, schema), new])
                tx.overwrite(rewritten, overwrite_filter=span, snapshot_properties=props)
                return
        if new.num_rows:
            tx.append(new, snapshot_properties=props)

    def _evolve(self, tx: Transaction) -> None:
        if self._new:
            with tx.update_schema() as update:
                update.union_by_name(pa.schema([pa.field(c, t) for c, t in self._new.items()]))

    def _create(self) -> Table:
        absent = [p.column for p in self.partitions if p.column not in self.columns]
        if absent:
            raise PermanentError(
                f"Iceberg table {self.name!r} is partitioned by column {absent[0]!r}, which "
                "its first records lack; declare it in columns, or fix partition_by"
            )
        self.catalog.create_namespace_if_not_exists(self.identifier[0])
        schema = pa.schema([pa.field(c, t) for c, t in self.columns.items()])
        tx = self.catalog.create_table_transaction(self.identifier, schema=schema)
        if self.partitions:
            with tx.update_spec() as spec:
                for part in self.partitions:
                    spec.add_field(part.column, parse_transform(part.iceberg_transform), part.name)
        tx.commit_transaction()
        self._new = {}
        return self.catalog.load_table(self.identifier)


def _span(key: tuple[str, ...], keys: Sequence[Key]) -> BooleanExpression | None:
    """``min <= key <= max`` over ``keys``, for one key column of integers or of text."""
    if len(key) != 1:
        return None
    values = [k[0] for k in keys]
    if not (all(type(v) is int for v in values) or all(type(v) is str for v in values)):
        return None
    low, high = min(values), max(values)  # type: ignore[type-var]
    return And(GreaterThanOrEqual(key[0], low), LessThanOrEqual(key[0], high))  # type: ignore[call-arg, arg-type]


def _conformed(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` read before this commit's new columns, with those columns (null) added."""
    arrays = [
        rows[f.name].cast(f.type)
        if f.name in rows.column_names
        else pa.nulls(rows.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _matching(key: tuple[str, ...], keys: Sequence[Key]) -> BooleanExpression:
    if len(key) == 1:
        # pyiceberg's expressions are pydantic models whose signatures mypy misreads.
        return In(key[0], [k[0] for k in keys])  # type: ignore[call-arg, arg-type]
    rows = [
        reduce(And, [EqualTo(c, v) for c, v in zip(key, values, strict=True)])  # type: ignore[call-arg, arg-type]
        for values in keys
    ]
    return reduce(Or, rows)  # type: ignore[arg-type]
