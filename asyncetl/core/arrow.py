"""Columns of plain values made into an Arrow table, refusing values a column cannot hold.

Shared by the columnar sinks (DuckDB, Parquet); it needs ``pyarrow``, which only
those connectors' extras install, so nothing else in core imports this module.

A column takes the table's type when the table has it, else the type pyarrow
infers from the batch; when a batch mixes types pyarrow cannot unify, the
type of the column's first value wins. A value that does not convert to its
column's type exactly (text for an integer column, a float with a fraction
for an integer, an integer beyond 64 bits) refuses its record, naming column
and value; the rest of the batch loads.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from asyncetl.core.columnar import Columns

__all__ = ["arrow_table"]

_WIDEST = 38  # digits of the widest decimal128
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def arrow_table(columns: Columns, types: Mapping[str, pa.DataType], target: str) -> pa.Table:
    """The kept records of ``columns`` as a table; refused ones move to ``columns.rejects``.

    :param types: known column types (the target's); other columns are inferred.
    :param target: names the target in refusals.
    """
    arrays: dict[str, pa.Array] = {}
    bad: dict[int, BaseException] = {}
    for name in columns.names:
        values, kind = columns.values[name], types.get(name)
        try:
            if kind is not None and pa.types.is_integer(kind):
                _refuse_fractions(values)
            arrays[name] = pa.array(values, type=kind, from_pandas=False)
        except _CONVERSION_ERRORS:
            found = _bad_values(name, values, kind or _first_type(values), target, bad)
            if not found:
                raise
            bad.update(found)
    if bad:
        columns.drop(bad.keys(), bad)
        return arrow_table(columns, types, target)
    return pa.table({name: _typed(arrays[name], name in types) for name in columns.names})


def _typed(array: pa.Array, declared: bool) -> pa.Array:
    """An inferred type made to hold later batches too.

    A column holding only nulls becomes text (a column needs a type), and an
    inferred decimal gets the widest precision, so that a later batch's larger
    amounts fit; its scale stays what the values showed.
    """
    if declared:
        return array
    if pa.types.is_null(array.type):
        return array.cast(pa.string())
    if pa.types.is_decimal128(array.type) and array.type.precision < _WIDEST:
        return array.cast(pa.decimal128(_WIDEST, array.type.scale))
    return array


def _refuse_fractions(values: list[object]) -> None:
    """pyarrow truncates a float with a fraction into an integer column without a word."""
    if float not in set(map(type, values)):
        return
    for value in values:
        if type(value) is float and not value.is_integer():
            raise ValueError(f"float value {value!r} has a fraction; an integer cannot hold it")


def _first_type(values: list[object]) -> pa.DataType:
    first = next((v for v in values if v is not None), None)
    return pa.array([first]).type


def _bad_values(
    name: str,
    values: list[object],
    kind: pa.DataType,
    target: str,
    known: Mapping[int, BaseException],
) -> dict[int, BaseException]:
    bad: dict[int, BaseException] = {}
    for row, value in enumerate(values):
        if value is None or row in known:
            continue
        try:
            if pa.types.is_integer(kind):
                _refuse_fractions([value])
            pa.array([value], type=kind)
        except _CONVERSION_ERRORS as exc:
            error = ValueError(
                f"column {name!r} of {target} is {kind}, and value {value!r} "
                f"({type(value).__name__}) does not convert to it exactly: {exc}"
            )
            error.__cause__ = exc
            bad[row] = error
    return bad
