"""Keyset positions of ``TableSource``: what they hold, their check, and the rows after one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import orjson

from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.errors import RESET_HINT, ConfigError

__all__ = [
    "AFTER",
    "AS_TEXT",
    "NAMES",
    "ORDER",
    "Bind",
    "Positions",
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


@dataclass(frozen=True, slots=True)
class Positions:
    """The positions of one ``TableSource``: what they name, and the check of a committed one.

    :param identity: ``{"table": …}`` or ``{"query": …}``: what the source reads.
    :param order: the ordering columns (empty until the source has planned them).
    :param as_text: the columns ordered by their text (a keyless table's, see ``_keyless``).
    :param what: the table or query in messages.
    :param where: the source in messages.
    """

    identity: dict[str, JsonValue]
    order: Sequence[str]
    as_text: list[JsonValue]
    what: str
    where: str

    def after(self, values: list[str | None]) -> Position:
        """The position after the row whose ordering values are ``values``."""
        position: dict[str, JsonValue] = {
            **self.identity,
            ORDER: list[JsonValue](self.order),
            AFTER: list[JsonValue](values),
        }
        if self.as_text:
            position[AS_TEXT] = self.as_text
        return position

    def check(self, position: Position) -> None:
        """Refuse a position written for another table, query, order or text ordering.

        :raises ConfigError: naming what the position was written for, what the
            source reads, and how to reset the checkpoint.
        """
        if position is None:
            return
        values: JsonValue = position
        if isinstance(position, dict) and is_named(position):
            self._check_identity(position)
            values = position[AFTER]
        if (
            not isinstance(values, list)
            or (self.order and len(values) != len(self.order))
            or not all(v is None or isinstance(v, str) for v in values)
        ):
            order = (
                f"the ordering columns {_json(list[JsonValue](self.order))}"
                if self.order
                else "ordering values"
            )
            self._refuse(
                position, f"it does not hold {order} of {self.what}; to read from the start"
            )

    def _check_identity(self, position: dict[str, JsonValue]) -> None:
        [(key, reading)] = self.identity.items()
        [(written_key, written_for)] = [(k, v) for k, v in position.items() if k in NAMES]
        if (written_key, written_for) != (key, reading):
            self._refuse(
                position,
                f"it was written for {written_key} {_json(written_for)}, not for {key} "
                f"{_json(reading)}; point {key} back there, or to read {_json(reading)} "
                "from the start",
            )
        order = position[ORDER]
        if self.order and order != list(self.order):
            self._refuse(
                position,
                f"it was written for the ordering columns {_json(order)}, not for "
                f"{_json(list[JsonValue](self.order))} (cursor and key); restore them, "
                "or to read in the new order from the start",
            )
        as_text = position.get(AS_TEXT, [])
        if self.order and as_text != self.as_text:
            self._refuse(
                position,
                f"it orders by the text of the columns {_json(as_text)}, this version by the "
                f"text of {_json(self.as_text)} (rows without a key that differ but compare "
                "equal are told apart now); to read from the start",
            )

    def _refuse(self, position: Position, why: str) -> NoReturn:
        raise ConfigError(
            f"cannot resume from the committed position {_json(position)}: {why}, {RESET_HINT}",
            where=self.where,
            key="position",
        )


def _json(value: JsonValue) -> str:
    return orjson.dumps(value).decode()
