"""Compacting a batch of change events to the last change per key, for the apply sink.

Applying only the final state of each key is equivalent to applying every
change in order, provided that: a truncate discards what came before it; an
update that changes the key deletes the old key; and an unchanged TOAST value
is filled in from an earlier change of the same key in the batch, when there
is one (otherwise the column is left alone in the target). When an update
moves a row to a new key and leaves TOAST values unchanged, those values must
come from the target's row at the old key: such rows are listed in
:attr:`Compacted.moved` with the old key.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from asyncetl.connectors.postgres.cdc._values import pg_text
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from asyncetl.core.errors import PermanentError

__all__ = ["Compacted", "compact", "upsert_groups"]

Row = dict[str, object]


@dataclass(slots=True)
class Compacted:
    """One table's batch: whether it starts with a truncate, then rows to delete and to upsert.

    :ivar deleted: key → the key columns' values, for keys whose last change is a delete.
    :ivar upserted: key → the row, for keys whose last change is an insert or update.
    :ivar moved: key → the key columns' old values, for upserted rows that moved from
        another key with unchanged TOAST values still to be copied from the old row.
    """

    truncate: bool = False
    deleted: dict[Hashable, Row] = field(default_factory=dict)
    upserted: dict[Hashable, Row] = field(default_factory=dict)
    moved: dict[Hashable, Row] = field(default_factory=dict)

    @property
    def deletes(self) -> list[Row]:
        return list(self.deleted.values())

    @property
    def upserts(self) -> list[Row]:
        return list(self.upserted.values())


def compact(events: Sequence[ChangeEvent], key: Sequence[str], table: str) -> Compacted:
    """The net effect of ``events`` (all of one table, in commit order) keyed by ``key``.

    :param table: names the table in errors.
    :raises PermanentError: when an event lacks a key column.
    """
    key = tuple(key)
    if len(key) == 1:
        try:
            return _compact_by(events, key[0])
        except (KeyError, TypeError):
            pass  # a missing or unhashable key value: the general way handles and names it
    return _compact(events, key, table)


def _compact_by(events: Sequence[ChangeEvent], name: str) -> Compacted:
    """:func:`compact` for a one-column key whose values are hashable, keyed by the value.

    It does what :func:`_compact` does, without a call per key; it raises
    ``KeyError`` or ``TypeError`` for a key value that is missing or unhashable.
    """
    result = Compacted()
    deleted, upserted, moved = result.deleted, result.upserted, result.moved
    for event in events:
        op = event.op
        if op == "d":
            old = event.before if event.before is not None else event.key
            found = old[name]  # type: ignore[index]
            if found is None:
                raise KeyError(name)
            upserted.pop(found, None)
            if moved:
                moved.pop(found, None)
            deleted[found] = {name: found}
        elif op == "t":
            result.truncate = True
            deleted.clear()
            upserted.clear()
            moved.clear()
        else:
            after: Row = event.after  # type: ignore[assignment]
            new_key = after[name]
            if new_key is None:
                raise KeyError(name)
            before = event.before
            if before is not None and op == "u":
                old_key = before.get(name)
                if old_key is not None and old_key != new_key:
                    after = _move(result, old_key, new_key, {name: old_key}, after)
            if deleted:
                deleted.pop(new_key, None)
            previous = upserted.get(new_key)
            upserted[new_key] = after if previous is None else _fill_unchanged(after, previous)
    return result


def _compact(events: Sequence[ChangeEvent], key: tuple[str, ...], table: str) -> Compacted:
    result = Compacted()
    deleted, upserted, moved = result.deleted, result.upserted, result.moved
    for event in events:
        op = event.op
        if op == "t":
            result.truncate = True
            deleted.clear()
            upserted.clear()
            moved.clear()
        elif op == "d":
            old = event.before if event.before is not None else event.key
            found = _key(old, key, table)
            upserted.pop(found, None)
            moved.pop(found, None)
            deleted[found] = {name: old[name] for name in key}  # type: ignore[index]
        else:
            after = event.after or {}
            new_key = _key(after, key, table)
            before = event.before
            if op == "u" and before is not None:
                old_key = _maybe_key(before, key)
                if old_key is not None and old_key != new_key:
                    after = _move(
                        result, old_key, new_key, {name: before[name] for name in key}, after
                    )
            deleted.pop(new_key, None)
            previous = upserted.get(new_key)
            upserted[new_key] = after if previous is None else _fill_unchanged(after, previous)
    return result


def _move(
    result: Compacted, old_key: Hashable, new_key: Hashable, old_values: Row, after: Row
) -> Row:
    """A row leaves ``old_key`` for ``new_key``: delete the old key, carry what is unchanged."""
    previous = result.upserted.pop(old_key, None)
    origin = result.moved.pop(old_key, None)
    result.deleted[old_key] = old_values
    if previous is not None:
        after = _fill_unchanged(after, previous)
    if UNCHANGED in after.values():
        result.moved[new_key] = origin or old_values
    else:
        result.moved.pop(new_key, None)
    return after


def upsert_groups(rows: Sequence[Row]) -> list[tuple[tuple[str, ...], list[Row]]]:
    """Rows grouped by the columns they carry values for (unchanged TOAST columns left out)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        if UNCHANGED in row.values():
            columns = tuple(name for name, value in row.items() if value is not UNCHANGED)
        else:
            columns = tuple(row)
        group = groups.get(columns)
        if group is None:
            groups[columns] = [row]
        else:
            group.append(row)
    return list(groups.items())


def _fill_unchanged(after: Row, previous: Row) -> Row:
    if UNCHANGED not in after.values():
        return after
    return {
        name: previous.get(name, value) if value is UNCHANGED else value
        for name, value in after.items()
    }


def _maybe_key(row: Row | None, key: tuple[str, ...]) -> Hashable | None:
    """The row's key: the value itself for a one-column key, else a tuple; ``None`` if absent."""
    if row is None:
        return None
    try:
        if len(key) == 1:
            value = row[key[0]]
            hash(value)
            return value
        values = tuple(row[name] for name in key)
        hash(values)
        return values
    except KeyError:
        return None
    except TypeError:  # unhashable (an array or json key): compare their text
        return tuple(pg_text(row[name]) for name in key)


def _key(row: Row | None, key: tuple[str, ...], table: str) -> Hashable:
    found = _maybe_key(row, key)
    if found is None:
        missing = [name for name in key if row is None or row.get(name) is None]
        raise PermanentError(
            f"a change to table {table} carries no value for key column {missing[0]!r}; "
            "make the target's primary key match the source's replica identity "
            "(or set REPLICA IDENTITY FULL on the source table)"
        )
    return found
