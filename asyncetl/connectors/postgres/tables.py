"""Copying several tables from one PostgreSQL database to another in one pipeline.

:class:`TablesSource` reads the tables one after another and yields
:class:`TableRow` records tagged with their table; :class:`TablesSink` routes
them to one :class:`~asyncetl.connectors.postgres.sink.PostgresSink` per table
and writes a whole batch — every table in it and the checkpoint — in one
transaction.

Each table is read as a snapshot by default (see ``TableSource(snapshot=True)``)
and written so that a re-run writes nothing and a run after some source rows
changed rewrites exactly those rows:

- a table with a primary key is upserted by it, skipping rows whose stored
  values are unchanged (``skip_unchanged``: compared in the server as row
  text, so the target needs no extra column and may already exist);
- a table without one (``pgbench_history``) is appended with a unique
  ``_row_hash`` (identical rows numbered), so rows already copied are skipped.

Read as records, array columns travel as their text, cast back by the target,
so lower bounds other than 1 (``'[0:1]={7,8}'``, ``'[0:1][2:3]={{1,2},{3,4}}'``)
arrive as they are, which a list would lose; a keyless row's hash is of that
text. (A keyless table's rows were never hashed with their arrays as lists: the
first non-NULL array stopped the copy. No target holds such a row under another hash.)
A keyless table's values that compare equal but differ (``numeric`` 1.0 and
1.00, ``float8`` -0 and 0) arrive as they are, each row once per copy (see
``_keyless``). A float NaN or ±Infinity hashes as a tagged string, not as the
``null`` of a NULL: a target copied before holds one row of those that differed
only there (under the hash their NULL sibling has now), so delete its rows
holding such floats before the first run of this version (README, "Connectors").

With ``format="copy"`` a keyed table's rows are never decoded: each is a line
of COPY's text format, read with ``COPY (SELECT …) TO STDOUT`` and written with
``COPY … FROM STDIN`` (see ``TableSource(format="copy")``), compared in the
server all the same. The server prints and parses every value itself, so any
type arrives exactly, and a copy runs several times faster than through Python
values. A keyless table is still read as records (its row hash needs them).
With ``format="binary"`` a keyed table whose columns all have built-in types
travels as pages of COPY's binary format instead (see ``TableSource(format="binary")``):
no value is printed as text or parsed back on either server, nothing is split
into rows in Python; the target's columns must have the source's types. Other
keyed tables travel as COPY text lines.

A snapshot reads every source row on every run; what it saves is writes. Rows
deleted in the source stay in the target, and a changed row of a keyless table
is a new row there (the old one stays): without a key there is no telling an
update from a delete plus an insert.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any, cast

import asyncpg
import orjson

from asyncetl.connectors.postgres._binary import BinaryPage
from asyncetl.connectors.postgres._checkpoint import PostgresCheckpointStore
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._deadletter import PostgresDeadLetterStore, settle_on
from asyncetl.connectors.postgres._load import Loaded
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.schema import TableSchema, add_column_ddl, describe_table
from asyncetl.connectors.postgres.sink import PostgresSink
from asyncetl.connectors.postgres.source import TableSource
from asyncetl.core.batch import Batch, Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import RESET_HINT, ConfigError, PermanentError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetterStore,
    Problem,
    Settle,
    Sink,
    Source,
    TransactionalWriter,
)
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import Progress

__all__ = ["TableRow", "TablesSink", "TablesSource", "parse_tables"]

_DONE = "done"
_FORMATS = ("records", "copy", "binary")
#: Types whose Python value cannot hold every value (dates BC, time 24:00): the rows
#: of a copy carry their text. (``interval`` and the other types whose Python value
#: loses information are read as text by every ``TableSource``: ``Column.read_as_text``.)
LOSSY_TYPES = ("date", "time")


def _json(value: JsonValue) -> str:
    return orjson.dumps(value).decode()


_log = get_logger("asyncetl.postgres")
_TABLE, _VALUES = attrgetter("table"), attrgetter("values")


# Not frozen: a copy makes one per row, and a frozen one costs four times as much to make.
@dataclass(slots=True)
class TableRow:
    """A row of ``table`` (as named in the table list).

    ``values`` maps its columns to their values, or is the row as a line of
    COPY's text format (``bytes``) when its table is copied with ``format="copy"``,
    or the binary page holding the row (the same for each row of the page)
    with ``format="binary"``.
    """

    table: str
    values: dict[str, Any] | bytes | BinaryPage


def copied_columns(schema: TableSchema) -> list[str]:
    """The columns of ``schema`` a copy writes, in table order: all but the generated ones."""
    return [c.name for c in schema.columns if c.generated is None]


def parse_tables(tables: str | list[str], where: str) -> list[str]:
    """``"a, s.b"`` or ``["a", "s.b"]`` as a list of distinct table names.

    :raises ConfigError: for an empty list or a name given twice.
    """
    names = [t.strip() for t in tables.split(",")] if isinstance(tables, str) else list(tables)
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise ConfigError(
            f"expected distinct table names, got {tables!r}", where=where, key="tables"
        )
    return names


class TablesSource(Source[TableRow]):
    """Reads several tables, one after another, as :class:`TableRow` records.

    The position maps each table to its own position, or to ``"done"`` once its
    snapshot finished in this round; after the last table it goes back to
    ``None``, so the next run takes a new snapshot of every table. A position
    naming a table not in ``tables`` is refused (the set changed: reset the
    checkpoint); one lacking a table that was added reads that table from the start.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param tables: table names, comma-separated or a list; ``schema.table`` allowed.
    :param snapshot: read each table whole on every run (default); ``false``
        reads each incrementally by primary key, which sees new rows only.
    :param chunk_size: rows per page.
    :param format: ``records`` (each row's values in a dict, for transforms),
        ``copy`` (a keyed table's rows as COPY text lines, passed through
        undecoded to a :class:`TablesSink`; keyless tables stay records) or
        ``binary`` (like ``copy``, as pages of COPY's binary format where every
        column's type is built in: the fastest plain copy).
    """

    def __init__(
        self,
        dsn: str,
        tables: str | list[str],
        *,
        name: str = "tables",
        snapshot: bool = True,
        chunk_size: int = 5000,
        format: str = "records",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.tables = parse_tables(tables, f"source {name}")
        if format not in _FORMATS:
            raise ConfigError(
                f"must be one of {', '.join(_FORMATS)}, not {format!r}",
                where=f"source {name}",
                key="format",
            )
        self.format = format
        self.snapshot = snapshot
        self._reading = (dsn, chunk_size, retries, retry_max_time)
        self.sources = {
            table: TableSource(
                dsn,
                table,
                chunk_size=chunk_size,
                snapshot=snapshot,
                # Read as text: a timedelta has no months, so it would change them;
                # a list has no lower bounds.
                text_types=LOSSY_TYPES,
                text_arrays=True,
                retries=retries,
                retry_max_time=retry_max_time,
            )
            for table in self.tables
        }
        self._done_before: set[str] = set()

    async def open(self) -> None:
        try:
            for table, source in self.sources.items():
                await source.open()
                if self.format != "records" and source.schema and source.schema.primary_key:
                    self.sources[table] = await self._copy_reader(table, source)
        except BaseException:
            await self.aclose()
            raise

    async def _copy_reader(self, table: str, records: TableSource) -> TableSource:
        """A reader of ``table`` as COPY lines of its columns but the generated ones.

        Generated columns are left out: the target computes them and refuses values for them.
        """
        assert records.schema is not None
        await records.aclose()
        dsn, chunk_size, retries, retry_max_time = self._reading

        def reader(form: str) -> TableSource:
            return TableSource(
                dsn,
                table,
                columns=copied_columns(records.schema),  # type: ignore[arg-type]
                chunk_size=chunk_size,
                snapshot=self.snapshot,
                format=form,
                retries=retries,
                retry_max_time=retry_max_time,
            )

        try:
            copy = reader(self.format)
            await copy.open()
        except ConfigError as exc:
            if exc.key != "format" or self.format != "binary":
                raise
            _log.info("table copied as COPY text", table=table, reason=str(exc))
            copy = reader("copy")  # types another database may not read in binary
            await copy.open()
        return copy

    async def check(self) -> list[Problem]:
        """Whether the role may read each table; stops at a server it cannot reach."""
        problems: list[Problem] = []
        for source in self.sources.values():
            found = await source.check()
            problems += [_for_tables(problem) for problem in found]
            if any(problem.setting == "dsn" for problem in found):
                break
        return problems

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()

    def check_position(self, position: Position) -> None:
        """Refuse a position naming tables this source does not read, or one a table refuses.

        A position without some of the tables is taken: those are read from the start.

        :raises ConfigError: naming the tables it was written for and these.
        """
        if position is None:
            return
        where = f"TablesSource {self.name!r}"
        if not isinstance(position, dict):
            raise ConfigError(
                f"cannot resume from the committed position {_json(position)}: it does not map "
                f"tables to their positions; {RESET_HINT}",
                where=where,
                key="position",
            )
        if not set(position) <= set(self.tables):
            raise ConfigError(
                f"cannot resume from the committed position {_json(position)}: it was written "
                f"for tables {_json(list(position))}, not for tables "
                f"{_json(list[JsonValue](self.tables))}; restore tables, or to read these from "
                f"the start, {RESET_HINT}",
                where=where,
                key="position",
            )
        for table, mark in position.items():
            if mark != _DONE:
                self.sources[table].check_position(mark)

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[TableRow]]:
        self.check_position(after)
        positions: dict[str, JsonValue] = dict(after) if isinstance(after, dict) else {}
        self._done_before = {table for table in self.tables if positions.get(table) == _DONE}
        for table in self.tables:
            if table in self._done_before:
                continue
            async with aclosing(self._read_table(table, positions, max_chunk)) as chunks:
                async for chunk in chunks:
                    yield chunk
        if self.snapshot:
            yield Chunk([], None)

    def progress(self) -> Sequence[Progress]:
        """Each table's rows read of its estimated rows, in reading order.

        A table whose snapshot a previous run finished shows as complete.
        """
        parts: list[Progress] = []
        for table in self.tables:
            (part,) = self.sources[table].progress()
            if table in self._done_before:
                total = part.total or 0
                part = Progress(total, total, "rows", part.part)
            parts.append(part)
        return parts

    async def _read_table(
        self, table: str, positions: dict[str, JsonValue], max_chunk: int
    ) -> AsyncGenerator[Chunk[TableRow], None]:
        reader = cast(
            "AsyncGenerator[Chunk[dict[str, Any]], None]",
            self.sources[table].read(positions.get(table), max_chunk=max_chunk),
        )
        async with aclosing(reader) as chunks:
            async for chunk in chunks:
                mark: JsonValue = chunk.position
                if self.snapshot and chunk.position is None:
                    mark = _DONE
                positions[table] = mark
                records = chunk.records
                if records and isinstance(records[0], BinaryPage):  # one page: one row object
                    rows = [TableRow(table, records[0])] * len(records)
                else:
                    rows = list(map(TableRow, repeat(table), records))
                yield Chunk(rows, dict(positions))


class TablesSink(Sink[TableRow]):
    """Writes :class:`TableRow` records to same-named tables, creating them from the source.

    :param dsn: the target database.
    :param tables: the tables, as given to :class:`TablesSource`.
    :param source_dsn: the source database, whose catalog shapes the new tables.
    """

    def __init__(
        self,
        dsn: str,
        *,
        tables: str | list[str],
        source_dsn: str,
        name: str = "tables_sink",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        self.name = name
        self.dsn = Dsn.parse(dsn)
        self.source_dsn = Dsn.parse(source_dsn)
        self.tables = parse_tables(tables, f"sink {name}")
        self.policy = retry_policy(retries, retry_max_time)
        self._retry = (retries, retry_max_time)
        self.sinks: dict[str, PostgresSink] = {}
        self._pool: asyncpg.Pool | None = None
        self._checkpoints: PostgresCheckpointStore | None = None
        self._dead_letters: PostgresDeadLetterStore | None = None

    async def open(self) -> None:
        try:
            # Its batches leave no session state: no reset between them.
            self._pool = await open_pool(self.dsn, policy=self.policy, reset_sessions=False)
            for table in self.tables:
                self.sinks[table] = await self._open_sink(table)
        except BaseException:
            await self.aclose()
            raise

    async def _open_sink(self, table: str) -> PostgresSink:
        probe = TableSource(
            self.source_dsn.url, table, retries=self._retry[0], retry_max_time=self._retry[1]
        )
        await probe.open()
        await probe.aclose()
        keyed = probe.schema is not None and bool(probe.schema.primary_key)
        if keyed and probe.schema is not None:
            await self._follow_columns(table, probe.schema)
        # COPY lines of a keyed table fill the source's columns in its order, whatever the target's.
        columns = copied_columns(probe.schema) if keyed and probe.schema is not None else None
        sink = PostgresSink(
            self.dsn.url,
            table,
            name=f"{self.name}:{table}",
            mode="upsert" if keyed else "append",
            # A keyed table is compared in the server; a keyless one needs its hash column.
            skip_unchanged=keyed,
            row_hash=None if keyed else ["*"],
            create=True,
            source_dsn=self.source_dsn.url,
            source_table=table,
            columns=columns,
            text_arrays=True,
            retries=self._retry[0],
            retry_max_time=self._retry[1],
        )
        await sink.open()
        return sink

    async def _follow_columns(self, table: str, source: TableSchema) -> None:
        """Add to an existing keyed target the columns its source gained since the last run,
        as creating the table would have made them (defaults included): the snapshot then
        rewrites each row whose values differ, so every row gets the source's value, even
        one a volatile default gave it.

        A keyless target gets none: every row's hash would change, and each row would be
        appended again; its records then meet the sink's schema contract (a stop).
        """

        async def body(conn: asyncpg.Connection) -> list[str]:
            target = await describe_table(conn, TableName.parse(table))
            if target is None:
                return []
            missing = [c for c in source.columns if target.column(c.name) is None]
            for column in missing:
                await conn.execute(add_column_ddl(target.table, column))
            return [c.name for c in missing]

        assert self._pool is not None
        added = await in_transaction(
            self._pool, self.dsn, f"adding columns to {table}", body, policy=self.policy
        )
        if added:
            _log.info("columns added as in the source", table=table, fields=added)

    async def check(self) -> list[Problem]:
        """Whether the role may upsert into each table, or create it; creates nothing."""
        problems: list[Problem] = []
        for table in self.tables:
            sink = PostgresSink(self.dsn.url, table, create=True, retries=0)
            found = await sink.check()
            problems += [_for_tables(problem) for problem in found]
            if any(problem.setting == "dsn" for problem in found):
                break
        return problems

    async def aclose(self) -> None:
        sinks, self.sinks = list(self.sinks.values()), {}
        for sink in sinks:
            _log.info(
                "table written",
                table=str(sink.table),
                rows_changed=sink.rows_changed,
                unchanged=sink.unchanged,
            )
            await sink.aclose()
        pool, self._pool = self._pool, None
        await close_pool(pool)

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`PostgresCheckpointStore` in the target database."""
        return isinstance(store, PostgresCheckpointStore) and store.dsn.same_database(self.dsn)

    def stores_dead_letters_of(self, store: DeadLetterStore) -> bool:
        """True for a :class:`PostgresDeadLetterStore` in the target database."""
        return isinstance(store, PostgresDeadLetterStore) and store.dsn.same_database(self.dsn)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[TableRow] | None:
        """Save checkpoints of ``store`` in each batch's transaction, if :meth:`commits_to` it.

        Dead letters of ``dead_letters`` too, if :meth:`stores_dead_letters_of` it.
        """
        if not isinstance(store, PostgresCheckpointStore) or not self.commits_to(store):
            return None
        self._checkpoints = store
        if isinstance(dead_letters, PostgresDeadLetterStore) and self.stores_dead_letters_of(
            dead_letters
        ):
            self._dead_letters = dead_letters
        return self._write_with_checkpoint

    async def write(self, batch: Batch[TableRow]) -> Sequence[Reject]:
        return await self._write(batch.records, None, None)

    async def _write_with_checkpoint(
        self, batch: Batch[TableRow], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        return await self._write(batch.records, checkpoint, settle)

    async def _write(
        self, rows: Sequence[TableRow], checkpoint: Checkpoint | None, settle: Settle | None
    ) -> list[Reject]:
        by_table = self._by_table(rows)
        plans = []
        rejects: list[Reject] = []
        for table, records in by_table.items():
            groups, refused = await self.sinks[table].plan(records)
            plans.append((self.sinks[table], groups))
            rejects += [
                Reject(TableRow(table, dict(r.record)), r.error)  # type: ignore[call-overload]
                for r in refused
            ]
        try:
            await self._commit(plans, checkpoint, settle, rejects)
            return rejects
        except (TypeError, ValueError, ArithmeticError) as exc:
            if isinstance(exc, ConfigError):
                raise
            bad = []
            for sink, groups in plans:
                found = await sink.bad_values(groups)
                bad += [
                    Reject(TableRow(str(sink.table), dict(r.record)), r.error)  # type: ignore[call-overload]
                    for r in found
                ]
            if not bad:
                raise PermanentError(f"cannot write rows: {type(exc).__name__}: {exc}") from exc
        await self._commit(plans, checkpoint, settle, rejects + bad)
        return rejects + bad

    def _by_table(self, rows: Sequence[TableRow]) -> dict[str, list[Any]]:
        """The values of ``rows`` by table, in order.

        :raises PermanentError: for a row of a table the sink does not write.
        """
        tables = set(map(_TABLE, rows))  # a batch is mostly one table's: mapped in C
        unknown = sorted(tables - self.sinks.keys())
        if unknown:
            raise PermanentError(
                f"row of table {unknown[0]!r}, which is not among the "
                f"sink's tables {self.tables}; add it to tables"
            )
        if len(tables) == 1:
            return {tables.pop(): list(map(_VALUES, rows))}
        by_table: dict[str, list[Any]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row.values)
        return by_table

    async def _commit(
        self,
        plans: list[tuple[PostgresSink, list[Any]]],
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        rejects: Sequence[Reject],
    ) -> None:
        async def body(conn: asyncpg.Connection) -> list[Loaded]:
            loaded = [await sink.load(conn, groups) for sink, groups in plans]
            # Before COMMIT: a failing policy rolls the batch and its checkpoint back.
            await settle_on(conn, settle, rejects, self._dead_letters)
            if checkpoint is not None and self._checkpoints is not None:
                await self._checkpoints.save_on(conn, checkpoint)
            return loaded

        if self._pool is None:
            raise RuntimeError("TablesSink used before open()")
        committed = await in_transaction(
            self._pool, self.dsn, "writing a batch of tables", body, policy=self.policy
        )
        for (sink, _), loaded in zip(plans, committed, strict=True):
            sink.count(loaded)
            self.unchanged += loaded.unchanged


def _for_tables(problem: Problem) -> Problem:
    """A problem of one table's source or sink, as a problem of the ``tables`` setting."""
    return Problem("tables", problem.message) if problem.setting == "table" else problem
