"""How a SQLite sink's records become rows: the plan its first batch fixes, a batch's
insert statements, and its bound values."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from functools import lru_cache
from itertools import chain, repeat
from operator import is_, itemgetter

from asyncetl.connectors.sqlite._sql import insert, quote_ident
from asyncetl.core.batch import Reject
from asyncetl.core.contract import SchemaContract
from asyncetl.core.jsonout import json_text
from asyncetl.core.logs import get_logger
from asyncetl.core.settings_check import identifier_names

__all__ = ["Plan", "Record", "Rows", "check_names", "infer_types", "not_mappings"]

Record = Mapping[str, object]

_NATIVE = frozenset({str, int, float, bytes, bool, type(None)})
_AFFINITY: dict[type, str] = {
    bool: "INTEGER",
    int: "INTEGER",
    float: "REAL",
    str: "TEXT",
    bytes: "BLOB",
}

#: Rows of a statement for the rest of a batch are a multiple of this, or fewer.
_STEP = 64
_log = get_logger("asyncetl.sqlite")


@dataclass(frozen=True, slots=True)
class Plan:
    """How records become rows: fixed by the first batch for the sink's lifetime."""

    table: str
    columns: list[str]
    insert: str
    contract: SchemaContract
    create: str | None = None
    key: tuple[str, ...] = ()

    def created(self) -> Plan:
        return self if self.create is None else replace(self, create=None)

    def evolved(
        self, records: Sequence[Record], existing: Sequence[str]
    ) -> tuple[Plan, list[tuple[str, str]]]:
        """This plan with a column for each key of ``records`` outside its columns, and
        those of them the table (``existing`` columns) lacks, with their declared types
        (inferred as ``create`` infers them)."""
        known = set(self.columns)
        new = {
            k: None
            for r in records
            if isinstance(r, Mapping)
            for k in r
            if isinstance(k, str) and k not in known
        }
        if not new:
            return self, []
        names = list(new)
        check_names(f"SQLite table {self.table!r}", "record keys", [*self.columns, *names])
        columns = [*self.columns, *names]
        plan = replace(self, columns=columns, insert=insert(self.table, columns, self.key))
        there = {name.lower() for name in existing}
        return plan, infer_types([n for n in names if n.lower() not in there], records)

    def statements(
        self, rows: Rows, most: int, whole: Collection[int] = ()
    ) -> Iterator[tuple[str, list[object]]]:
        """The inserts of ``rows``, each with its values: one if their count is among
        ``whole``; else parts of ``most`` rows (a power of two), then the rest in at most
        two parts, a multiple of :data:`_STEP` rows and fewer than :data:`_STEP`, so that
        few statement texts recur (each compiled one is kept by the connection) and a
        batch takes few statements."""
        width, values, count = len(self.columns), rows.values, len(rows.kept)
        if count in whole:
            yield _insert_rows(self.insert, self.table, self.columns, self.key, count), values
            return
        start = 0
        while start < count:
            left = count - start
            size = most if left >= most else (left if left < _STEP else left - left % _STEP)
            sql = _insert_rows(self.insert, self.table, self.columns, self.key, size)
            yield sql, values[start * width : (start + size) * width]
            start += size

    def rows(self, records: Sequence[Record]) -> Rows:
        """Bound parameters of the records kept, all in one list, and the records refused."""
        values = self._plain_values(records)
        if values is not None:
            return Rows(values, len(self.columns), list(records), [])
        return self._rows_one_by_one(records)

    def _plain_values(self, records: Sequence[Record]) -> list[object] | None:
        """The common batch's values, taken whole in C: plain dicts with exactly the columns
        as keys and no key column NULL. ``None`` for any other batch, which
        :meth:`_rows_one_by_one` sorts out record by record."""
        width = len(self.columns)
        if not records or set(map(type, records)) != {dict} or set(map(len, records)) != {width}:
            return None
        try:
            # As many keys as columns and every column there: no key outside them.
            values: list[object] = list(chain.from_iterable(map(_getter(self.columns), records)))
        except KeyError:
            return None
        for at in (self.columns.index(k) for k in self.key):
            # Compared by identity, in C: ``None in …`` would ask every value's __eq__.
            if any(map(is_, values[at::width], repeat(None))):
                return None
        return values if _NATIVE.issuperset(map(type, values)) else list(map(_adapt, values))

    def _rows_one_by_one(self, records: Sequence[Record]) -> Rows:
        columns, known = self.columns, frozenset(self.columns)
        width, check_known = len(columns), self.contract in ("freeze", "discard_row")
        every = _getter(columns)
        key_at = [columns.index(k) for k in self.key]
        values: list[object] = []
        extend = values.extend
        kept: list[Record] = []
        rejects: list[Reject] = []
        left_out = 0
        for record in records:
            if type(record) is dict:  # not a subclass: a defaultdict would add the column
                try:
                    row = every(record)
                    # Every column there and no more keys than columns: no key outside them.
                    exact = len(record) == width
                except KeyError:
                    row, exact = tuple(map(record.get, columns)), False
            elif isinstance(record, Mapping):
                row, exact = tuple(map(record.get, columns)), False
            else:
                rejects.append(_not_mapping(record))
                continue
            if check_known and not exact and not record.keys() <= known:
                if self.contract == "freeze":
                    rejects.append(self._extra(record, known))
                left_out += 1
                continue
            if key_at and _none_at(row, key_at):
                rejects.append(self._keyless(record))
                continue
            extend(row)
            kept.append(record)
        if not _NATIVE.issuperset(map(type, values)):
            values = list(map(_adapt, values))
        if left_out and self.contract == "discard_row":
            _log.warning(
                "records left out: fields without a column",
                table=self.table,
                records=left_out,
                fields=sorted({k for r in records if isinstance(r, Mapping) for k in r} - known),
            )
        return Rows(values, len(columns), kept, rejects)

    def _keyless(self, record: Record) -> Reject:
        column = next(k for k in self.key if record.get(k) is None)
        state = "is null" if column in record else "is missing"
        return Reject(
            record,
            ValueError(
                f"record's key column {column!r} {state}; SQLite table {self.table!r} is "
                "keyed by it, and a record without its key cannot be stored"
            ),
        )

    def _extra(self, record: Record, known: frozenset[str]) -> Reject:
        extra = next(column for column in record if column not in known)
        return Reject(
            record,
            ValueError(
                f"record has column {extra!r}, which is not loaded into SQLite table "
                f"{self.table!r}; add it to columns (and the table), or set schema_contract = "
                '"evolve" (or "discard_value", "discard_row")'
            ),
        )


@dataclass(slots=True)
class Rows:
    """A batch's rows as SQLite binds them: the values of every kept record in one flat
    list (no tuple per row), the records kept, and the records refused."""

    values: list[object]
    width: int
    kept: list[Record]
    rejects: list[Reject]

    @classmethod
    def refused(cls, rejects: list[Reject]) -> Rows:
        return cls([], 0, [], rejects)

    def each(self) -> Iterator[list[object]]:
        """The bound parameters of each kept record in turn."""
        width, values = self.width, self.values
        return (values[i : i + width] for i in range(0, len(values), width))


@lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: int) -> str:
    return insert(table, columns, key, rows)


def _insert_rows(
    one: str, table: str, columns: Sequence[str], key: tuple[str, ...], rows: int
) -> str:
    return one if rows == 1 else _insert_sql(table, tuple(columns), key, rows)


def _getter(columns: Sequence[str]) -> Callable[[Record], tuple[object, ...]]:
    """A function giving a record's values of ``columns`` as a tuple, in C; it raises
    ``KeyError`` for a missing column."""
    if len(columns) == 1:
        one = columns[0]
        return lambda record: (record[one],)
    return itemgetter(*columns)


def _none_at(row: tuple[object, ...], positions: Sequence[int]) -> bool:
    # Compared by identity, in C: ``None in row`` would ask every value's __eq__.
    return any(map(is_, map(row.__getitem__, positions), repeat(None)))


def _adapt(value: object) -> object:
    """``value`` as something SQLite binds."""
    if type(value) in _NATIVE:
        return value
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return bytes(value)
    for scalar in (bool, int, float, str):  # their subclasses: enums, numpy-like scalars…
        if isinstance(value, scalar):
            return scalar(value)
    return str(value)


def infer_types(columns: Sequence[str], records: Sequence[Record]) -> list[tuple[str, str]]:
    """Each column with the declared type of its first non-NULL value in ``records``."""
    mappings = [r for r in records if isinstance(r, Mapping)]
    types: list[tuple[str, str]] = []
    for column in columns:
        value = next((m[column] for m in mappings if m.get(column) is not None), None)
        types.append((column, "" if value is None else _AFFINITY[type(_adapt(value))]))
    return types


def not_mappings(records: Sequence[object]) -> list[Reject]:
    return [_not_mapping(record) for record in records]


def _not_mapping(record: object) -> Reject:
    return Reject(
        record,
        TypeError(
            f"a SQLite record must map column names to values, not be a {type(record).__name__}"
        ),
    )


def check_names(where: str, key: str, names: Sequence[object]) -> None:
    identifier_names(names, where, key, quote=quote_ident, system="SQLite")
