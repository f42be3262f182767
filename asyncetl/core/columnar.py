"""Mapping records turned into columns of plain values, for columnar targets.

Analytics targets (DuckDB, Parquet) load whole columns at once. What they share
knows no file format and no client library, so it lives here: which columns a
batch has, which records a target must refuse (not a mapping, a column the
target does not take, a missing key), and each value made into something a
columnar library takes as it is — dicts and lists as JSON text, UUIDs as their
text. The connectors build their own Arrow arrays from the result.

A source whose rows share one shape (a database query) may hand them on as a
:class:`RowBlock`: records to whoever reads records, and its columns as they
are to a columnar target, with no dict made per row on the way.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import Literal, TypeAlias, overload

from asyncetl.core.batch import Reject
from asyncetl.core.jsonout import json_text

__all__ = ["Columns", "ExtraColumns", "RowBlock", "plain_value", "to_columns"]

#: What happens to a record key outside the target's columns: the record is
#: refused, the key is left out, or the column is added to the target.
ExtraColumns: TypeAlias = Literal["reject", "ignore", "evolve"]

_AS_IS = (str, int, float, bool, bytes, type(None))
#: Types a columnar library takes as they are, for the quick check of a whole column.
_TAKEN = frozenset(
    {*_AS_IS, datetime.datetime, datetime.date, datetime.time, datetime.timedelta, Decimal}
)


class RowBlock(Sequence[dict[str, object]]):
    """Rows of one shape as records: ``dict(zip(names, row))`` each, made only when read.

    The dicts are made all at once, the first time a record is read (by
    index or by iterating), and kept: a transform that changes them in place
    changes the batch. Until then :meth:`columns` gives the values column by
    column straight from the rows, which is what a columnar sink loads.

    :param names: the column names, in row order.
    :param rows: the rows, each a sequence of values in ``names`` order
        (tuples, or a driver's row objects that index like them).
    """

    __slots__ = ("_records", "_rows", "names")

    def __init__(self, names: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.names = list(names)
        self._rows = rows
        self._records: list[dict[str, object]] | None = None

    def __len__(self) -> int:
        return len(self._rows) if self._records is None else len(self._records)

    @overload
    def __getitem__(self, index: int) -> dict[str, object]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, object]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, object] | list[dict[str, object]]:
        return self.records[index]

    def __iter__(self) -> Iterator[dict[str, object]]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowBlock):
            other = other.records
        return self.records == other if isinstance(other, list) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def __repr__(self) -> str:
        return f"RowBlock({self.names!r}, {len(self)} rows)"

    @property
    def records(self) -> list[dict[str, object]]:
        """The rows as dicts (made on first use, then kept)."""
        if self._records is None:
            self._records = list(map(dict, map(zip, repeat(self.names), self._rows)))
            self._rows = []  # the records hold the values now; the rows may go
        return self._records

    def rows(self) -> Sequence[Sequence[object]] | None:
        """The rows as given, or ``None`` once the records were read (they may have changed)."""
        return self._rows if self._records is None else None

    def columns(self) -> dict[str, list[object]] | None:
        """Each column's values, or ``None`` once the records were read (they may have changed).

        ``None`` too when a name repeats (``SELECT a, a``): a record keeps the last.
        """
        if self._records is not None or len(set(self.names)) < len(self.names):
            return None
        rows = self._rows
        return {name: list(map(itemgetter(i), rows)) for i, name in enumerate(self.names)}


@dataclass(slots=True)
class Columns:
    """A batch as columns: ``values[name][i]`` belongs to ``records[i]``."""

    names: list[str]
    values: dict[str, list[object]]
    records: Sequence[Mapping[str, object]]
    rejects: list[Reject] = field(default_factory=list)

    def drop(self, rows: Collection[int], reasons: Mapping[int, BaseException]) -> None:
        """Refuse the records at ``rows`` (each for its reason) and drop them from every column."""
        if not rows:
            return
        self.rejects += [Reject(self.records[i], reasons[i]) for i in sorted(rows)]
        keep = [i for i in range(len(self.records)) if i not in rows]
        self.records = [self.records[i] for i in keep]
        for name in self.names:
            column = self.values[name]
            self.values[name] = [column[i] for i in keep]


def to_columns(
    records: Sequence[object],
    *,
    target: str,
    known: Sequence[str] | None,
    key: Sequence[str] = (),
    extra: ExtraColumns = "reject",
) -> Columns:
    """The columns of ``records``, with the records ``target`` cannot take refused.

    :param target: names the target in refusals, e.g. ``DuckDB table 'orders'``.
    :param known: the target's columns, or ``None`` when it has none yet (then
        every key of the batch becomes a column, the key columns first).
    :param key: columns every record must hold a non-null value for.
    :param extra: what a record key outside ``known`` does (see :data:`ExtraColumns`).
    """
    block = _block_columns(records, known=known, key=key, extra=extra)
    if block is not None:
        return block
    names = list(known) if known is not None else list(key)
    accepted = set(names)
    open_ended = known is None or extra == "evolve"
    reject_extra = not open_ended and extra == "reject"
    kept: list[Mapping[str, object]] = []
    rejects: list[Reject] = []
    for record in records:
        # The common record, a dict holding known columns and its key, is checked in C.
        if type(record) is dict and record.keys() <= accepted and _keyed(record, key):
            kept.append(record)
            continue
        problem = _refusal(record, target, accepted, key, reject_extra=reject_extra)
        if problem is not None:
            rejects.append(Reject(record, problem))
            continue
        assert isinstance(record, Mapping)
        if open_ended:
            for name in record:
                if name not in accepted:
                    accepted.add(name)
                    names.append(name)
        kept.append(record)
    values = {name: _plain_column([r.get(name) for r in kept]) for name in names}
    return Columns(names, values, kept, rejects)


def _block_columns(
    records: Sequence[object], *, known: Sequence[str] | None, key: Sequence[str], extra: str
) -> Columns | None:
    """The columns of an unread :class:`RowBlock` that holds no record to refuse, else ``None``.

    A block whose rows a target would refuse some of (a key null or missing, a
    column it does not take) goes the way of any records, one by one.
    """
    if type(records) is not RowBlock:
        return None
    found = records.columns()
    if found is None or any(k not in found or None in found[k] for k in key):
        return None
    if known is None:
        names = [*key, *(name for name in records.names if name not in key)]
    else:
        taken = set(known)
        more = [name for name in records.names if name not in taken]
        if more and extra != "evolve":
            return None
        names = [*known, *more]
    size = len(records)
    nulls: list[object] = [None] * size
    values = {name: _plain_column(found[name]) if name in found else nulls[:] for name in names}
    return Columns(names, values, records)


def _keyed(record: dict[str, object], key: Sequence[str]) -> bool:
    return not key or all(record.get(k) is not None for k in key)


def _plain_column(values: list[object]) -> list[object]:
    """``values`` made plain; the usual column, of types taken as they are, is left alone."""
    if _TAKEN.issuperset(map(type, values)):
        return values
    return [plain_value(value) for value in values]


def _refusal(
    record: object, target: str, accepted: set[str], key: Sequence[str], *, reject_extra: bool
) -> Exception | None:
    if not isinstance(record, Mapping):
        return TypeError(
            f"a record for {target} must map column names to values, "
            f"not be a {type(record).__name__}"
        )
    for column in key:
        if record.get(column) is None:
            state = "is null" if column in record else "is missing"
            return ValueError(
                f"record's key column {column!r} {state}; {target} is keyed by it, and a "
                "record without its key cannot be stored"
            )
    if reject_extra:
        extra = next((name for name in record if name not in accepted), None)
        if extra is not None:
            return ValueError(
                f"record has column {extra!r}, which {target} does not have; add the column, "
                "or set extra_columns = 'ignore' (leave it out) or 'evolve' (add it)"
            )
    return None


def plain_value(value: object) -> object:
    """``value`` as a columnar library takes it: containers as JSON text, UUIDs as text."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value  # datetimes, dates, decimals, enums…: the library judges
