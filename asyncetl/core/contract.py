"""Schema contracts: what a sink does with a record field its table has no column for.

The modes are named as dlt names them, so they read the same to anyone who used it:

``evolve``
    the field becomes a new column (typed from its values) and the record loads whole;
``freeze``
    the record is refused, naming the table and the field: it takes the failure
    policy (a dead letter, or the pipeline stops);
``discard_value``
    the record loads without the field's value;
``discard_row``
    the record is left out; a warning counts the records left out and names the fields.

A value of a known column that its type cannot take is never discarded: it is always
that record's failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from asyncetl.core.batch import Reject
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.logs import get_logger

__all__ = ["Contracted", "SchemaContract", "apply_contract", "check_contract", "unknown_field"]

SchemaContract = Literal["evolve", "freeze", "discard_row", "discard_value"]
CONTRACTS: tuple[str, ...] = get_args(SchemaContract)

_log = get_logger("asyncetl.contract")


def check_contract(value: object, where: str, key: str = "schema_contract") -> SchemaContract:
    """``value`` if it names a schema contract.

    :raises ConfigError: naming the modes otherwise.
    """
    if value not in CONTRACTS:
        raise ConfigError(
            f"must be one of {', '.join(CONTRACTS)}, not {value!r}", where=where, key=key
        )
    return value  # type: ignore[return-value]


def unknown_field(name: str, table: str) -> str:
    """The refusal of a record with field ``name`` that ``table`` lacks (``freeze``)."""
    return (
        f"field {name!r} is not a column of table {table}; add the column, or set "
        'schema_contract = "evolve" (or "discard_value", "discard_row")'
    )


@dataclass(slots=True)
class Contracted:
    """Records after their contract: those to load, those refused, and the new fields
    (in first-seen order) that ``evolve`` must add as columns first."""

    records: list[Mapping[str, Any]]
    rejects: list[Reject] = field(default_factory=list)
    new_fields: list[str] = field(default_factory=list)


def apply_contract(
    records: Sequence[Mapping[str, Any]],
    known: Callable[[str], bool],
    contract: SchemaContract,
    table: str,
) -> Contracted:
    """Apply ``contract`` to the fields of ``records`` that ``known`` does not know."""
    if not records:
        return Contracted([])
    first = records[0].keys()
    if all(map(known, first)) and all(r.keys() == first for r in records):
        return Contracted(list(records))  # the usual batch: one shape, every field known
    unknown: dict[str, None] = {}
    marked: list[bool] = []
    for record in records:
        fresh = [name for name in record if not known(name)]
        unknown.update(dict.fromkeys(fresh))
        marked.append(bool(fresh))
    if not unknown:
        return Contracted(list(records))
    if contract == "evolve":
        return Contracted(list(records), new_fields=list(unknown))
    if contract == "discard_value":
        kept = [
            {k: v for k, v in r.items() if known(k)} if m else r
            for r, m in zip(records, marked, strict=True)
        ]
        return Contracted(kept)
    if contract == "discard_row":
        kept = [r for r, m in zip(records, marked, strict=True) if not m]
        _log.warning(
            "records left out: fields without a column",
            table=table,
            records=len(records) - len(kept),
            fields=list(unknown),
        )
        return Contracted(kept)
    return _frozen(records, marked, known, table)


def _frozen(
    records: Sequence[Mapping[str, Any]],
    marked: list[bool],
    known: Callable[[str], bool],
    table: str,
) -> Contracted:
    result = Contracted([])
    for record, fresh in zip(records, marked, strict=True):
        if not fresh:
            result.records.append(record)
            continue
        name = next(k for k in record if not known(k))
        result.rejects.append(Reject(record, PermanentError(unknown_field(name, table))))
    return result
