"""The apply sink's schema contract: source columns the target lacks, and source columns
whose type was widened (``ALTER COLUMN … TYPE`` on the source, announced by a new pgoutput
Relation message), against the target table.

``evolve`` adds the missing columns and widens the target's column to the source's type;
``freeze`` stops, naming the table and the column; ``discard_value`` applies the changes
without the new columns' values, ``discard_row`` leaves the changes that carry them out (with
a warning). A widened type is never discarded: under every mode but ``evolve`` it stops the
stream, since the target could not take the wider values. A column dropped on the source
stays in the target with the values it had (later rows leave it NULL or its default).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.contract import SchemaContract
from asyncetl.core.errors import PermanentError
from asyncetl.core.logs import get_logger

__all__ = ["Evolution", "discard", "evolution", "widens"]

_log = get_logger("asyncetl.cdc")

# Type → the other types that hold every one of its values exactly.
_WIDER: dict[str, frozenset[str]] = {
    "smallint": frozenset({"integer", "bigint", "numeric"}),
    "integer": frozenset({"bigint", "numeric"}),
    "bigint": frozenset({"numeric"}),
    "real": frozenset({"double precision"}),
    "character varying": frozenset({"text"}),
}
# Types whose modifier is a length (or precision and scale) that only bounds the values.
_BOUNDED = frozenset({"character varying", "bit varying", "numeric"})
_MODIFIER = re.compile(r"(?P<base>[a-z ]+?)(?:\((?P<args>[\d,]+)\))?")


def _parts(sql_type: str) -> tuple[str, list[int] | None] | None:
    match = _MODIFIER.fullmatch(sql_type)
    if match is None:
        return None
    args = match["args"]
    return match["base"], [int(x) for x in args.split(",")] if args else None


def widens(old: str, new: str) -> bool:
    """Whether type ``new`` differs from ``old`` and holds every value of it exactly."""
    a, b = _parts(old), _parts(new)
    if a is None or b is None or a == b:
        return False
    (base, bounds), (new_base, new_bounds) = a, b
    if base != new_base:
        return new_bounds is None and new_base in _WIDER.get(base, ())
    if base not in _BOUNDED or bounds is None:
        return False
    if new_bounds is None:  # varchar(n) → varchar, numeric(p,s) → numeric
        return True
    if base == "numeric":
        (p, s), (q, t) = [*bounds, 0][:2], [*new_bounds, 0][:2]
        return t >= s and q - t >= p - s
    return new_bounds[0] > bounds[0]


@dataclass(frozen=True, slots=True)
class Evolution:
    """What the target must do before a table's changes apply."""

    add: dict[str, str]  # column → source type
    widen: dict[str, str]  # column → source type
    discard: frozenset[str]


def evolution(
    schema: TableSchema,
    source: Mapping[str, str],
    contract: SchemaContract,
    source_table: str,
    types: Mapping[str, str] | None = None,
) -> Evolution:
    """The evolution of ``schema`` that ``source`` columns need under ``contract``.

    :param types: the source's column types as they stand now (see
        :func:`._applied.latest_types`), compared with the target's; none, none compared.

    :raises PermanentError: naming table and column, when ``contract`` refuses the change.
    """
    missing = {n: t for n, t in source.items() if schema.column(n) is None}
    widened = {
        n: t
        for n, t in (types or {}).items()
        if (c := schema.column(n)) is not None and widens(c.type, t)
    }
    if widened and contract != "evolve":
        name, new = next(iter(widened.items()))
        old = schema.column(name).type  # type: ignore[union-attr]
        raise PermanentError(
            f"column {name!r} of source table {source_table} is now {new}, wider than {old} in "
            f"target table {schema.table}; alter the target column to {new} or set "
            'schema_contract = "evolve"'
        )
    if missing and contract == "freeze":
        name = next(iter(missing))
        raise PermanentError(
            f"column {name!r} of source table {source_table} is missing from target table "
            f'{schema.table}; add it to the target or set schema_contract = "evolve" '
            '(or "discard_value", "discard_row")'
        )
    if contract == "evolve":
        return Evolution(missing, widened, frozenset())
    return Evolution({}, {}, frozenset(missing))


def discard(
    events: Sequence[ChangeEvent], columns: frozenset[str], contract: SchemaContract, table: str
) -> list[ChangeEvent]:
    """``events`` without the values of ``columns`` (``discard_value``), or without the
    events that carry any of them (``discard_row``)."""
    if not columns:
        return list(events)
    if contract == "discard_row":
        kept = [e for e in events if not columns.intersection(e.after or e.before or ())]
        _log.warning(
            "changes left out: columns the target lacks",
            table=table,
            changes=len(events) - len(kept),
            fields=sorted(columns),
        )
        return kept
    return [_without(e, columns) for e in events]


def _without(event: ChangeEvent, columns: frozenset[str]) -> ChangeEvent:
    def strip(row: Mapping[str, object] | None) -> dict[str, object] | None:
        return None if row is None else {k: v for k, v in row.items() if k not in columns}

    return dataclasses.replace(
        event,
        after=strip(event.after),
        before=strip(event.before),
        columns=strip(event.columns),  # type: ignore[arg-type]
    )
