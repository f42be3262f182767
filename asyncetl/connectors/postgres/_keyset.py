"""Keyset positions of ``TableSource``: what they hold, and the rows after one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from asyncetl.core.batch import JsonValue, Position

__all__ = [
    "AFTER",
    "AS_TEXT",
    "NAMES",
    "ORDER",
    "Bind",
    "dollar",
    "is_named",
    "later_than",
    "position_values",
]

#: position keys besides the table (or query): the ordering columns, and their last values;
#: the columns ordered by their text, if any
ORDER, AFTER, AS_TEXT = "order", "after", "as_text"
#: the position keys naming what a position was written for
NAMES = ("table", "query")


def position_values(after: Position) -> list[str | None] | None:
    """The ordering values of a position ``TableSource.check_position`` accepted."""
    if after is None:
        return None
    values = after[AFTER] if isinstance(after, dict) else after
    return list(values)  # type: ignore[arg-type]


def is_named(position: dict[str, JsonValue]) -> bool:
    """Whether ``position`` names its table or query besides the order and values."""
    known = len(position) == 3 + (AS_TEXT in position) and ORDER in position
    return known and AFTER in position and any(k in position for k in NAMES)


def dollar(n: int) -> str:
    return f"${n}"


#: ``bind(value)``: a bound parameter holding ``value``, compared as its column's key is.
Bind = Callable[[str | None], str]


def later_than(
    lefts: Sequence[str], binds: Sequence[Bind], values: Sequence[str | None], *, nullable: bool
) -> str:
    """Rows after ``values`` in ``ORDER BY lefts`` order (ascending, NULLs last).

    :param nullable: some of ``lefts`` may be NULL; else a row comparison, which a
        btree index on them serves.
    """
    if not nullable:
        right = ", ".join(bind(v) for bind, v in zip(binds, values, strict=True))
        return f"({', '.join(lefts)}) > ({right})"
    alternatives = []
    for i, value in enumerate(values):
        if value is None:
            continue  # nothing sorts after NULL
        same = [
            f"{left} IS NOT DISTINCT FROM {bind(v)}"
            for left, bind, v in zip(lefts[:i], binds[:i], values[:i], strict=True)
        ]
        left = lefts[i]
        later = f"({left} > {binds[i](value)} OR {left} IS NULL)"
        alternatives.append("(" + " AND ".join([*same, later]) + ")")
    return "(" + (" OR ".join(alternatives) or "FALSE") + ")"
