"""Change events made into keyed rows: the last state of each key, or its deletion.

A batch of :class:`~asyncetl.core.changes.ChangeEvent` records (and plain
mappings, which are upserts) is folded in source order into one entry per key:
the row to store, or a delete. A truncate ends a segment: what came before is
applied, the table emptied, and what follows applied after. A value the source
did not send (:data:`~asyncetl.core.changes.UNCHANGED`) takes the key's value
from earlier in the batch, or else is marked by a column ``KEEP + name`` holding
true, so the writer keeps the stored value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from asyncetl.core.batch import Reject
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from asyncetl.core.columnar import RowBlock

__all__ = ["DELETE", "KEEP", "Segment", "has_changes", "segments"]

#: The staged column that marks a delete, and the prefix of those marking values to keep.
DELETE = "__asyncetl_delete"
KEEP = "__asyncetl_keep__"


@dataclass(slots=True)
class Segment:
    """Rows to apply by key (the last state of each), then maybe a truncate."""

    rows: dict[tuple[object, ...], dict[str, object]] = field(default_factory=dict)
    #: ``id(row)`` → the record it came from, to refuse the record itself.
    origin: dict[int, object] = field(default_factory=dict)
    truncate_after: bool = False


def has_changes(records: Sequence[object]) -> bool:
    """Whether any record is a change event (and the batch needs folding)."""
    if type(records) is RowBlock:
        return False  # rows of a query, mappings all: no need to make them into records
    return ChangeEvent in set(map(type, records))


def segments(
    records: Sequence[object], key: Sequence[str], target: str
) -> tuple[list[Segment], list[Reject]]:
    """Fold ``records`` into segments of keyed rows; records without a key are refused."""
    found = [Segment()]
    rejects: list[Reject] = []
    for record in records:
        if isinstance(record, ChangeEvent) and record.op == "t":
            found[-1].truncate_after = True
            found.append(Segment())
            continue
        row = _row(record, key, target)
        if isinstance(row, Exception):
            rejects.append(Reject(record, row))
            continue
        identity = tuple(row[k] for k in key)
        _fold(found[-1], identity, row)
        found[-1].origin[id(row)] = record
    return found, rejects


def _row(record: object, key: Sequence[str], target: str) -> dict[str, object] | Exception:
    if isinstance(record, ChangeEvent):
        if record.op == "d":
            values = record.key or record.before or {}
            row: dict[str, object] = {k: values.get(k) for k in key}
            row[DELETE] = True
        else:
            row = {**(record.after or {}), DELETE: False}
    elif isinstance(record, Mapping):
        row = {**record, DELETE: False}
    else:
        return TypeError(
            f"a record for {target} must be a change event or map column names to values, "
            f"not be a {type(record).__name__}"
        )
    missing = next((k for k in key if row.get(k) is None or row.get(k) is UNCHANGED), None)
    if missing is not None:
        return ValueError(
            f"record's key column {missing!r} is missing or null; {target} is keyed by it, "
            "and a change without its key cannot be applied"
        )
    return row


def _fold(segment: Segment, identity: tuple[object, ...], row: dict[str, object]) -> None:
    unchanged = [name for name, value in row.items() if value is UNCHANGED]
    if unchanged:
        earlier = segment.rows.get(identity)
        kept = earlier if earlier is not None and not earlier[DELETE] else {}
        for name in unchanged:
            if name in kept and not kept.get(KEEP + name):
                row[name] = kept[name]
            else:
                row[name] = None
                row[KEEP + name] = True
    segment.rows.pop(identity, None)  # re-inserted last: rows keep the order of their last change
    segment.rows[identity] = row
