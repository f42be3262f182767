"""Incremental reads of a table or query in keyset order, one page per query, never ``OFFSET``.

The order is ``cursor`` (default: the primary key) followed by the key columns
not already in it, so rows sharing a timestamp are ordered by key and neither
skipped nor read twice. The position is the ordering values of the last row
read, as text, under the table (or query) and the ordering columns they belong
to: ``{"table": "public.ev", "order": ["updated_at", "id"], "after": [...]}``.
A resumed read starts strictly after it; a source reading another table,
query or order refuses it rather than skip or repeat rows.

With ``format="copy"`` the rows are not decoded at all: each page is read
with ``COPY (SELECT …) TO STDOUT`` and every record is one line of COPY's text
format (``bytes``), which :class:`~asyncetl.connectors.postgres.PostgresSink`
loads with ``COPY … FROM STDIN`` as it is. That is the fast way to copy a table
between PostgreSQL databases when no transform needs the values. COPY takes no
parameters, so the position and page size are bound into transaction-local
settings; the next position is read off the page's last line.

With ``format="binary"`` a page is one ``COPY … TO STDOUT (FORMAT binary)`` of
the rows up to its last key, found first in the same ``REPEATABLE READ``
transaction, passed on whole as a ``BinaryPage`` (see ``_binary``).

A table without a key is read in the order of all its columns, grouped: each
distinct row comes once with its number of copies, and the copies are yielded
together in one chunk. That makes the keyset strict (identical rows cannot
straddle a page) at the price of sorting the table for every page; give such a
table a primary key when it is large. Columns whose equal values may differ
(``numeric`` 1.0 and 1.00) or that have no ordering (``json``, ``point``) are
grouped and ordered by their text, which the position then holds, named under
``"as_text"`` (see ``_keyless``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import asyncpg

from asyncetl.connectors.postgres._binary import binary_refusal, page_of
from asyncetl.connectors.postgres._check import checking, column_problems
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    on_connection,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._copy_out import copy_query_out, copy_setting
from asyncetl.connectors.postgres._keyless import GroupedRead
from asyncetl.connectors.postgres._keyset import Positions, dollar, later_than, position_values
from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres._text import copy_text, position_text
from asyncetl.connectors.postgres.schema import (
    Column,
    TableSchema,
    describe_table,
    types_read_as_text,
)
from asyncetl.core.batch import Chunk, JsonValue, Position
from asyncetl.core.columnar import RowBlock
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.observe import Progress

__all__ = ["TableSource", "copy_text", "position_text"]

_FORMATS = ("records", "copy", "binary")

#: A page read: its records, the position of its last row (None: no rows), rows read.
_Page = tuple[Sequence[Any], list[str | None] | None, int]


#: The planner's row estimate; -1 (PostgreSQL 14+) for a table never vacuumed or analysed.
_ESTIMATE = "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass"


class TableSource(Source[Any]):
    """Reads a table (or a query) incrementally in keyset order.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param table: ``table`` or ``schema.table``; names the source when ``query`` is given.
    :param name: the source's name in checkpoints (default: the table name).
    :param cursor: ordering columns, e.g. ``["updated_at"]`` (default: the primary key).
    :param key: tie-breaker columns after ``cursor`` (default: the primary key; for
        a query, the cursor itself). Without any, all columns order the rows.
    :param columns: columns to read (default: all); must include cursor and key.
    :param query: a ``SELECT`` to read instead of the table; needs ``cursor``.
    :param lag: seconds; rows whose first cursor column (a timestamp) is newer
        than ``now() - lag`` wait for a later read, for late-committing writers.
    :param chunk_size: rows per page (also capped by the pipeline's batch size).
    :param snapshot: read the whole table on every run, for tables without a
        column that tracks changes: after a complete scan the position goes back
        to ``None`` (so a crashed scan resumes, a finished one starts over). Pair
        it with a sink's ``row_hash`` so unchanged rows are not rewritten.
    :param poll: seconds between reads once caught up; ``0`` ends the read there.
    :param format: ``records`` (dicts), ``copy`` (each row a ``bytes`` line of
        COPY's text format, for a PostgreSQL sink; needs NOT NULL ordering
        columns) or ``binary`` (pages of COPY's binary format, for a PostgreSQL
        sink whose columns have the same types; needs built-in types too).
    :param text_types: ``pg_catalog`` types read as their text (``str``), e.g.
        ``["timestamp"]`` for timestamps BC. Without it, ``date`` and ``time``
        values Python has no value for (``infinity``, dates BC, ``24:00``) arrive
        as their text, the rest as ``date`` and ``time`` objects; ranges,
        composites, geometric types, bit strings, ``interval`` and ``timetz``
        always arrive as their text (arrays of them as lists of it), as change
        data capture gives them.
    :param text_arrays: read array columns as their text, which keeps lower bounds
        other than 1 (``[0:1]={7,8}``) that a list loses.
    :param retries: retries of a failed page query.
    :param retry_max_time: seconds after which no retry starts.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        *,
        name: str | None = None,
        cursor: list[str] | None = None,
        key: list[str] | None = None,
        columns: list[str] | None = None,
        query: str | None = None,
        lag: float = 0.0,
        chunk_size: int = 5000,
        snapshot: bool = False,
        poll: float = 0.0,
        format: str = "records",
        text_types: Sequence[str] = (),
        text_arrays: bool = False,
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name or table
        where = f"source {self.name}"
        if query is not None and not cursor:
            raise ConfigError(
                "a query source needs cursor = [...] columns", where=where, key="cursor"
            )
        if chunk_size < 1 or not all(0 <= seconds < math.inf for seconds in (lag, poll)):
            raise ConfigError(
                "chunk_size must be positive, lag and poll finite and not negative", where=where
            )
        if format not in _FORMATS:
            raise ConfigError(
                f"must be one of {', '.join(_FORMATS)}, not {format!r}", where=where, key="format"
            )
        self.format = format
        self.text_types = tuple(text_types)
        self.text_arrays = text_arrays
        self.dsn = Dsn.parse(dsn)
        self.table = TableName.parse(table)
        self.cursor, self.key, self.columns = cursor, key, columns
        self.query, self.lag, self.chunk_size, self.poll = query, lag, chunk_size, poll
        self.snapshot = snapshot
        self.policy = retry_policy(retries, retry_max_time)
        self.schema: TableSchema | None = None
        self.order: list[str] = []
        self.grouped: GroupedRead | None = None
        self._selected: list[Column] = []
        self._select = ""  # the select list
        self._order_index: list[int] = []
        self._types: dict[str, str] = {}
        self._nullable = False
        self._pool: asyncpg.Pool | None = None
        self._rows_read = 0
        self._estimate: int | None = None  # rows in the table, per the planner's statistics

    async def open(self) -> None:
        # Its queries leave no session state (a page's settings are local to its
        # transaction): a released connection needs no reset round trip.
        self._pool = await open_pool(
            self.dsn,
            policy=self.policy,
            json_values=False,
            text_types=self.text_types,
            exact_dates=True,
            reset_sessions=False,
        )
        try:
            columns = await self._discover()
            self._plan(columns)
            if self.format == "binary":
                await self._check_binary()
            self._estimate = await self._estimate_rows()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def check(self) -> list[Problem]:
        """Whether the role may read the table and its named columns (or prepare the query)."""
        problems: list[Problem] = []
        async with checking(self.dsn, problems) as conn:
            if conn is not None:
                problems += await self._problems(conn)
        return problems

    async def _problems(self, conn: asyncpg.Connection) -> list[Problem]:
        if self.query is not None:
            await conn.prepare(self.query)  # a failure is the problem ``checking`` adds
            return []
        named = {"cursor": self.cursor, "key": self.key, "columns": self.columns}
        columns = {setting: names for setting, names in named.items() if names}
        return await column_problems(conn, self.dsn, self.table, columns)

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[Any]]:
        self.check_position(after)
        position = position_values(after)
        size = max(1, min(self.chunk_size, max_chunk))
        page = {"copy": self._copy_page, "binary": self._binary_page}.get(
            self.format, self._record_page
        )
        self._rows_read = 0
        while True:
            records, last, count = await page(position, size)
            self._rows_read += count
            if last is not None:
                position = last
                yield Chunk(records, self._position(position))
            if count < size:
                if after is None and not self.poll:
                    self._estimate = self._rows_read  # counted whole: no estimate now
                if self.snapshot:
                    position = None
                    yield Chunk([], None)  # scan complete: the next one starts over
                if not self.poll:
                    return
                await anyio.sleep(self.poll)

    def progress(self) -> Sequence[Progress]:
        """Rows read in this run of the table's estimated rows (``pg_class.reltuples``).

        A query has no total; a table never analysed neither. A resumed copy
        counts from where it resumed. Once a whole read ended, the total is its count.
        """
        return [Progress(self._rows_read, self._estimate, "rows", str(self.table))]

    async def _estimate_rows(self) -> int | None:
        if self.query is not None:
            return None

        async def body(conn: asyncpg.Connection) -> int | None:
            value: int | None = await conn.fetchval(_ESTIMATE, self.table.sql)
            return value

        estimate = await in_transaction(
            self.pool, self.dsn, f"estimating the rows of {self._what}", body, policy=self.policy
        )
        return estimate if estimate is not None and estimate >= 0 else None

    # -- planning ------------------------------------------------------------

    async def _discover(self) -> list[Column]:
        async def body(conn: asyncpg.Connection) -> list[Column]:
            if self.query is not None:
                attributes = (await conn.prepare(self.query)).get_attributes()
                as_text = await types_read_as_text(conn, [a.type.oid for a in attributes])
                return [
                    Column(a.name, as_text[a.type.oid], read_as_text=True)
                    if a.type.oid in as_text
                    else Column(a.name, f"{quote_ident(a.type.schema)}.{quote_ident(a.type.name)}")
                    for a in attributes
                ]
            self.schema = await describe_table(conn, self.table)
            if self.schema is None:
                raise PermanentError(
                    f"source table {self.table} does not exist in "
                    f"{self.dsn.where}; fix the table name or the DSN",
                    setting="table",
                )
            return list(self.schema.columns)

        return await in_transaction(
            self.pool, self.dsn, f"describing {self.table}", body, policy=self.policy
        )

    def _plan(self, available: list[Column]) -> None:
        by_name = {c.name: c for c in available}
        wanted = self.columns or list(by_name)
        # A query has no catalog key: its cursor is taken as unique unless key says otherwise.
        key = self.key or list(self.schema.primary_key if self.schema else self.cursor or ())
        order = [*(self.cursor or key)]
        order += [c for c in key if c not in order]
        if not key:  # all selected columns, identical rows counted
            order += [c for c in wanted if c not in order]
        for column in [*wanted, *order]:
            if column not in by_name:
                raise PermanentError(
                    f"column {column!r} is not in {self._what} (its columns: "
                    f"{', '.join(by_name)}); fix cursor, key or columns"
                )
        missing = [c for c in order if c not in wanted]
        if missing:
            raise ConfigError(
                f"columns must include the ordering columns {missing}",
                where=f"source {self.name}",
                key="columns",
            )
        if self.format != "records" and (
            self.grouped or any(not by_name[c].not_null for c in order) or self.query is not None
        ):
            raise ConfigError(
                f'format = "{self.format}" reads {self._what} in keyset order, which needs a '
                f'key and NOT NULL ordering columns (here: {order}); use format = "records"',
                where=f"source {self.name}",
                key="format",
            )
        self.order = order
        self._selected = [by_name[c] for c in wanted]
        if not key:
            self.grouped = GroupedRead(self._selected, text_arrays=self.text_arrays)
        self._select = ", ".join(map(self._selected_sql, self._selected))
        self._order_index = [wanted.index(c) for c in order]
        self._types = {c.name: c.type for c in available}
        self._nullable = any(not by_name[c].not_null for c in order) or self.query is not None

    def _selected_sql(self, column: Column) -> str:
        name = quote_ident(column.name)
        array = column.type.endswith("]")
        if self.text_arrays and array:
            return f"{name}::text AS {name}"
        if column.read_as_text:
            return f"{name}::text{'[]' if array else ''} AS {name}"
        return name

    @property
    def _what(self) -> str:
        return f"query {self.name}" if self.query is not None else f"table {self.table}"

    def check_position(self, position: Position) -> None:
        """Refuse a position written for another table, query or ordering columns.

        ``{"table" (or "query"): …, "order": [...], "after": [...]}`` is what this
        source writes; a bare list of ordering values, as written before
        positions named their table, is taken as before. The ordering columns
        are compared once :meth:`open` has planned them (a defaulted primary key
        is only known from the catalog); before that, table or query and shape.

        :raises ConfigError: naming what the position was written for, what this
            source reads, and how to reset the checkpoint.
        """
        self._positions.check(position)

    @property
    def _positions(self) -> Positions:
        """What this source's positions name: the table or query, and how it is ordered."""
        identity: dict[str, JsonValue] = (
            {"query": self.query} if self.query is not None else {"table": str(self.table)}
        )
        as_text = list[JsonValue](self.grouped.as_text) if self.grouped else []
        return Positions(identity, self.order, as_text, self._what, f"TableSource {self.name!r}")

    def _position(self, values: list[str | None]) -> Position:
        return self._positions.after(values)

    # -- reading -------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("TableSource used before open()")
        return self._pool

    async def _record_page(self, position: list[str | None] | None, size: int) -> _Page:
        """The records after ``position``, the position of the last, and the rows read."""
        sql, args = self._page_query(position, size)

        async def body(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(sql, *args)

        try:
            rows = await on_connection(
                self.pool, self.dsn, f"reading {self._what}", body, policy=self.policy
            )
        except (ValueError, OverflowError) as exc:  # from asyncpg's decoders
            raise PermanentError(
                f"cannot read {self._what}: a value has no Python equivalent ({exc}); "
                "timestamps before year 1 or after 9999 have none: read them as text "
                'with text_types = ["timestamp", "timestamptz"]',
                setting="text_types",
            ) from exc
        if not rows:
            return [], None, 0
        if self.grouped:
            last = self.grouped.position(rows[-1], position_text)
        else:
            last = [position_text(rows[-1][c]) for c in self.order]
        return self._records(rows), last, len(rows)

    async def _copy_page(self, position: list[str | None] | None, size: int) -> _Page:
        """Like :meth:`_record_page`, with rows as lines of COPY's text format."""
        sql, args = self._page_query(position, size, copy_setting)
        values = [str(value) for value in args]  # settings are text; no ordering value is NULL

        async def body(conn: asyncpg.Connection) -> list[bytes]:
            output, _ = await copy_query_out(conn, sql, values)
            return output.split(b"\n")[:-1]

        lines = await in_transaction(
            self.pool, self.dsn, f"reading {self._what}", body, policy=self.policy
        )
        if not lines:
            return [], None, 0
        fields = lines[-1].split(b"\t")  # a tab in a value is escaped, so this splits fields
        return lines, [copy_text(fields[i]) for i in self._order_index], len(lines)

    async def _binary_page(self, position: list[str | None] | None, size: int) -> _Page:
        """Like :meth:`_copy_page`, with the rows as one page of COPY's binary format."""

        async def body(conn: asyncpg.Connection) -> tuple[bytes, list[str | None] | None, int]:
            # The key query and the COPY must see the same rows.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            last = await self._page_end(conn, position, size)
            if last is None:
                return b"", None, 0
            sql, args = self._range_query(position, last)
            data, count = await copy_query_out(conn, sql, args, format="binary")
            return data, last, count

        data, last, count = await in_transaction(
            self.pool, self.dsn, f"reading {self._what}", body, policy=self.policy
        )
        if last is None:
            return [], None, 0
        return [page_of(data, count)] * count, last, count

    async def _page_end(
        self, conn: asyncpg.Connection, position: list[str | None] | None, size: int
    ) -> list[str | None] | None:
        """The ordering values of the last row of the page after ``position`` (None: no rows).

        The ``size``-th row after it, or the last row of all when fewer remain.
        """
        args: list[Any] = []
        # Rows up to the page's end are in cursor order: held back rows come after it.
        conditions = [self._after(position, args)] if position is not None else []
        conditions += self._lag(args)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        # Named apart: a bare column name in ORDER BY would mean this text, in text order.
        keys = ", ".join(f"{quote_ident(c)}::text AS _k{i}" for i, c in enumerate(self.order))
        order = ", ".join(quote_ident(c) for c in self.order)
        backwards = ", ".join(f"{quote_ident(c)} DESC" for c in self.order)
        # Identifiers quoted, values bound.
        select = f"SELECT {keys} FROM {self.table.sql} {where}"  # noqa: S608
        page_end = f"{select} ORDER BY {order} LIMIT 1 OFFSET ${len(args) + 1}::bigint"
        row = await conn.fetchrow(page_end, *args, size - 1)
        if row is None:
            row = await conn.fetchrow(f"{select} ORDER BY {backwards} LIMIT 1", *args)
        return None if row is None else list(row)

    def _range_query(
        self, position: list[str | None] | None, last: list[str | None]
    ) -> tuple[str, list[str]]:
        """The rows after ``position`` up to ``last`` (in ``ORDER BY`` order), as settings."""
        args: list[Any] = []
        conditions = [self._after(position, args, copy_setting)] if position is not None else []
        left = ", ".join(quote_ident(c) for c in self.order)
        right = ", ".join(
            self._param(c, v, args, copy_setting) for c, v in zip(self.order, last, strict=True)
        )
        conditions.append(f"({left}) <= ({right})")
        select = ", ".join(quote_ident(c.name) for c in self._selected)
        # No ORDER BY: the page is loaded whole, so the server may read it in any order.
        where = " AND ".join(conditions)  # identifiers quoted, values in settings
        sql = f"SELECT {select} FROM {self.table.sql} WHERE {where}"  # noqa: S608
        return sql, [str(value) for value in args]

    def _lag(self, args: list[Any], placeholder: Callable[[int], str] = dollar) -> list[str]:
        """The condition holding back rows newer than ``lag``, if there is one."""
        if not (self.lag and self.cursor):
            return []
        args.append(repr(self.lag))
        since = f"now() - {placeholder(len(args))}::text::float8 * interval '1 second'"
        return [f"{quote_ident(self.cursor[0])} <= {since}"]

    def _param(
        self, column: str, value: str | None, args: list[Any], placeholder: Callable[[int], str]
    ) -> str:
        args.append(value)
        return f"{placeholder(len(args))}::text::{self._types[column]}"

    async def _check_binary(self) -> None:
        async def body(conn: asyncpg.Connection) -> str | None:
            return await binary_refusal(conn, self.table, [c.name for c in self._selected])

        if why := await in_transaction(
            self.pool, self.dsn, "reading types", body, policy=self.policy
        ):
            raise ConfigError(
                f'{why}; use format = "copy"', where=f"source {self.name}", key="format"
            )

    def _page_query(
        self,
        position: list[str | None] | None,
        size: int,
        placeholder: Callable[[int], str] = dollar,
    ) -> tuple[str, list[Any]]:
        """The page after ``position`` and its parameters, written as ``placeholder(n)``."""
        args: list[Any] = []
        if self.grouped:
            sql = self.grouped.query(self.table.sql, position, args, placeholder)
            args[-1] = size
            return sql, args
        conditions: list[str] = []
        if position is not None:
            conditions.append(self._after(position, args, placeholder))
        conditions += self._lag(args, placeholder)
        source, qualifier = (
            (f"({self.query}) AS q", "q")
            if self.query is not None
            else (self.table.sql, self.table.sql)
        )
        select = self._select
        # Qualified: a bare name would mean the selected column, maybe an array's text.
        order = ", ".join(f"{qualifier}.{quote_ident(c)}" for c in self.order)
        sql = f"SELECT {select} FROM {source}"  # noqa: S608  # identifiers quoted, values bound
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        args.append(size)
        return f"{sql} ORDER BY {order} LIMIT {placeholder(len(args))}::bigint", args

    def _after(
        self,
        position: list[str | None],
        args: list[Any],
        placeholder: Callable[[int], str] = dollar,
    ) -> str:
        """Rows after ``position`` in ``ORDER BY`` order (ascending, NULLs last)."""

        def bind(column: str) -> Callable[[str | None], str]:
            return lambda value: self._param(column, value, args, placeholder)

        lefts = [quote_ident(c) for c in self.order]
        binds = [bind(c) for c in self.order]
        return later_than(lefts, binds, position, nullable=self._nullable)

    def _records(self, rows: Sequence[asyncpg.Record]) -> Sequence[dict[str, Any]]:
        if not self.grouped:
            if not rows:
                return []
            # One query: every row has the same columns. The dicts are made only if
            # something reads records; a columnar sink takes the columns as they are.
            return RowBlock(list(rows[0].keys()), rows)  # type: ignore[arg-type]  # rows index
        return self.grouped.records(rows)
