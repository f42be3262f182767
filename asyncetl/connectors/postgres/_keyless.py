"""Reading a table without a key: its distinct rows, each once with its number of copies.

Rows are grouped, and pages ordered, by what tells values apart exactly. A
type whose equality is identity (integers, ``boolean``, dates, timestamps,
``time``, ``uuid``, ``bytea``) groups and sorts as itself. Any other column
groups and sorts by its text (``c::text``, bytewise: ``COLLATE "C"``), which
keeps apart values that are equal but not the same (``numeric`` 1.0 and
1.00, ``float8`` 0 and -0, ``citext`` 'A' and 'a', json ``{"a":1}`` and
``{"a": 1}``), and orders types that have no ordering at all (``json``,
``xml``, ``point``). Its value is that text cast back to the column's type,
which gives the same value (text output is what PostgreSQL reads back exactly;
floats are printed exactly in every session, see ``_connect``), and the position
holds the text. An unbounded ``bpchar`` column (or a domain over one) is the
exception: its cast to ``text`` drops trailing spaces its values keep ('a' and
'a ' differ), so its text is its output function's (``bpcharout``), which keeps
them; ``character(n)`` pads them back, and keeps its cast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncetl.connectors.postgres._keyset import Bind, later_than
from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.schema import Column, unmodified

__all__ = ["KEY_PREFIX", "GroupedRead"]

#: Types whose equal values are the same value, so grouping by them merges nothing.
_IDENTICAL_WHEN_EQUAL = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "boolean",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "time without time zone",
        "uuid",
        "bytea",
        "oid",
    }
)
_TEXT = frozenset({"text", "character varying"})
#: The prefix of the columns holding a group's text keys, apart from any column's name.
KEY_PREFIX = "_asyncetl_k"
_COPIES = "_asyncetl_copies"
#: The subquery the grouped query reads, naming the table's rows and their text keys.
_ROWS = "s"


@dataclass(frozen=True, slots=True)
class _Key:
    column: Column
    index: int
    as_text: bool
    #: The value is the text key itself (``text``, arrays read as text).
    value_is_key: bool

    @property
    def name(self) -> str:
        return quote_ident(self.column.name)

    @property
    def key(self) -> str:
        """The column of the subquery holding this column's text."""
        return quote_ident(f"{KEY_PREFIX}{self.index}")

    @property
    def text(self) -> str:
        """The column's text, as grouped and ordered by."""
        if self.column.unbounded_bpchar:
            # Its output, which keeps trailing spaces; NULL stays NULL (both are strict).
            return f"textin(bpcharout({self.name}))"
        return f"{self.name}::text"

    @property
    def order(self) -> str:
        return f"{_ROWS}.{self.key}" if self.as_text else f"{_ROWS}.{self.name}"

    @property
    def value(self) -> str:
        if not self.as_text:
            return f"{_ROWS}.{self.name} AS {self.name}"
        if self.value_is_key:
            return f"{_ROWS}.{self.key} AS {self.name}"
        # Parsed back from the text, as no aggregate of PostgreSQL 15 takes any one value
        # of any type without holding them all (array_agg) or needing an ordering (min).
        # An array read as text becomes its elements' text.
        as_read = "::text[]" if self.column.read_as_text else ""
        return f"{_ROWS}.{self.key}::{self.column.type}{as_read} AS {self.name}"


class GroupedRead:
    """The page query of a keyless table: distinct rows after a position, with their copies.

    :param columns: the columns read, which are the ordering columns too.
    :param text_arrays: arrays are read as their text.
    """

    def __init__(self, columns: Sequence[Column], *, text_arrays: bool) -> None:
        self.keys = [_key(column, i, text_arrays) for i, column in enumerate(columns)]
        self.nullable = not all(column.not_null for column in columns)
        #: The columns ordered by their text, which a position names.
        self.as_text = [k.column.name for k in self.keys if k.as_text]

    def query(
        self,
        table: str,
        position: Sequence[str | None] | None,
        args: list[object],
        placeholder: Callable[[int], str],
    ) -> str:
        """The page after ``position``; its ``LIMIT`` is the next parameter after ``args``."""
        # Bytewise: cheaper to sort than by the database's collation, and the same on every server.
        keys = "".join(f', {k.text} COLLATE "C" AS {k.key}' for k in self.keys if k.as_text)
        # Identifiers quoted, values bound.
        rows = f"(SELECT {table}.*{keys} FROM {table}) AS {_ROWS}"  # noqa: S608
        values = [k.value for k in self.keys]
        values += [f"{_ROWS}.{k.key} AS {k.key}" for k in self.keys if self._extra(k)]
        # Identifiers quoted, values bound.
        sql = f"SELECT {', '.join(values)}, count(*) AS {_COPIES} FROM {rows}"  # noqa: S608
        if position is not None:
            sql += " WHERE " + self._after(position, args, placeholder)
        order = ", ".join(k.order for k in self.keys)
        args.append(None)  # the page size, bound by the caller
        return f"{sql} GROUP BY {order} ORDER BY {order} LIMIT {placeholder(len(args))}::bigint"

    def records(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Each row read as many times as the table holds it, a dict of its columns."""
        names = [k.column.name for k in self.keys]
        records: list[dict[str, Any]] = []
        for row in rows:
            record = {name: row[name] for name in names}
            records.extend(dict(record) for _ in range(row[_COPIES]))
        return records

    def position(self, row: object, text: Callable[[object], str | None]) -> list[str | None]:
        """The ordering values of a row this query read, as text."""
        values = []
        for k in self.keys:
            name = f"{KEY_PREFIX}{k.index}" if self._extra(k) else k.column.name
            value = row[name]  # type: ignore[index]
            values.append(value if self._extra(k) else text(value))
        return values

    @staticmethod
    def _extra(key: _Key) -> bool:
        """Whether the position needs the key's text besides the value."""
        return key.as_text and not key.value_is_key

    def _after(
        self, position: Sequence[str | None], args: list[object], placeholder: Callable[[int], str]
    ) -> str:
        def bind(key: _Key) -> Bind:
            def param(value: str | None) -> str:
                args.append(value)
                if key.as_text:
                    return f"{placeholder(len(args))}::text"
                return f"{placeholder(len(args))}::text::{key.column.type}"

            return param

        lefts = [k.order for k in self.keys]
        binds = [bind(k) for k in self.keys]
        return later_than(lefts, binds, position, nullable=self.nullable)


def _key(column: Column, index: int, text_arrays: bool) -> _Key:
    plain = unmodified(column.type)
    if plain in _IDENTICAL_WHEN_EQUAL:
        return _Key(column, index, as_text=False, value_is_key=False)
    array = column.type.endswith("]")
    is_text = plain in _TEXT or (text_arrays and array) or (column.read_as_text and not array)
    return _Key(column, index, as_text=True, value_is_key=is_text)
