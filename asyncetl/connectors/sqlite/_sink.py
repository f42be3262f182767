"""The SQLite sink: one transaction per batch, plain inserts or upserts by key."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import anyio.from_thread

from asyncetl.connectors.sqlite._check import table_problems
from asyncetl.connectors.sqlite._checkpoint import SqliteCheckpointStore, checkpoint_row
from asyncetl.connectors.sqlite._connection import (
    SqliteConnection,
    check_busy_timeout,
    immediate,
    same_database,
)
from asyncetl.connectors.sqlite._deadletter import SqliteDeadLetterStore, letter_row
from asyncetl.connectors.sqlite._rows import (
    Plan,
    Record,
    Rows,
    check_names,
    infer_types,
    not_mappings,
)
from asyncetl.connectors.sqlite._sql import (
    TABLE_COLUMNS,
    CheckpointSql,
    DeadLetterSql,
    add_column,
    create_table,
    insert,
)
from asyncetl.core.batch import Batch, Reject
from asyncetl.core.contract import check_contract
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    Problem,
    Settle,
    Sink,
    TransactionalWriter,
)

__all__ = ["SqliteSink"]

#: What SQLite raises for one bad row (a constraint, an int beyond 64 bits…).
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)


class SqliteSink(Sink[Record]):
    """Loads mappings into a SQLite table, one ``BEGIN IMMEDIATE`` transaction per batch.

    With ``key`` each record is an upsert (``INSERT … ON CONFLICT (key) DO
    UPDATE``), so a replayed batch leaves the table as it was; without, a plain
    insert. The columns loaded are ``columns`` or else the key columns followed
    by the keys of the first record; a record missing a column loads NULL there.
    A record with a key outside those columns follows ``schema_contract`` (the
    modes of :mod:`asyncetl.core.contract`): ``freeze`` (default) refuses it
    naming the key, ``evolve`` adds a column for it (typed as ``create`` types
    columns), ``discard_value`` loads the record without it and ``discard_row``
    leaves the record out with a warning. Values
    are bound: dicts, lists and tuples as JSON text, dates and times as ISO 8601
    text, other types SQLite lacks (decimals, UUIDs…) as their ``str``. A row
    the table refuses (a NOT NULL or CHECK constraint, an integer beyond 64
    bits) is a reject; the rest of the batch still loads.

    When the checkpoint store is a :class:`SqliteCheckpointStore` on the same
    file, :meth:`commits_to` says so, and through :meth:`transactional_writer`
    the checkpoint row is written in the batch's transaction: exactly-once
    results even without a key. A :class:`SqliteDeadLetterStore` on the same
    file is bound too (:meth:`stores_dead_letters_of`): a batch's dead letters
    are written in its transaction.

    With ``key``, a record missing a key column, or with a NULL there, is a
    reject naming the column: it is never stored under an invented key.

    :param path: the database file; its directory must exist.
    :param table: the target table, one identifier (it is quoted, never parsed).
    :param key: columns to upsert by; they need a PRIMARY KEY or UNIQUE constraint.
    :param create: create the table when missing, typed from the first batch's
        values (int and bool INTEGER, float REAL, str TEXT, bytes BLOB, dict and
        list TEXT, only NULLs no type), with ``PRIMARY KEY (key)``.
    :param name: the sink's name.
    :param columns: the columns to load, instead of the first record's keys.
    :param schema_contract: ``freeze``, ``evolve``, ``discard_value`` or
        ``discard_row``: what a record key outside the columns does.
    :param busy_timeout: seconds to wait for another connection's write lock.
    :raises ConfigError: for a bad table or column name, a key outside
        ``columns``, or an unknown ``schema_contract``.
    """

    def __init__(
        self,
        path: str,
        table: str,
        *,
        key: list[str] | None = None,
        create: bool = False,
        name: str = "sqlite_sink",
        columns: list[str] | None = None,
        schema_contract: str = "freeze",
        busy_timeout: float = 5.0,
    ) -> None:
        where = f"SqliteSink {name}"
        check_busy_timeout(where, busy_timeout)
        check_names(where, "table", [table])
        if key is not None:
            check_names(where, "key", key)
        if columns is not None:
            check_names(where, "columns", columns)
            missing = [k for k in key or () if k not in columns]
            if missing:
                raise ConfigError(
                    f"key column {missing[0]!r} is not among the columns", where=where, key="key"
                )
        self.schema_contract = check_contract(schema_contract, where)
        self.path = str(path)
        self.table = table
        self.key = list(key or ())
        self.create = create
        self.name = name
        self.columns = list(columns) if columns is not None else None
        self._db = SqliteConnection(self.path, busy_timeout=busy_timeout)
        self._plan: Plan | None = None
        self._checkpoints: CheckpointSql | None = None
        self._dead_letters: DeadLetterSql | None = None
        self._checkpoint_table_ready = False
        #: Batch sizes loaded in one statement each (see Plan.statements), and the last.
        self._whole_sizes: set[int] = set()
        self._last_size = 0

    async def open(self) -> None:
        """Connect and check that the table exists (or may be created).

        :raises PermanentError: when the database cannot be opened, or the table
            is missing and ``create`` is false.
        """
        existing = await self._db.run(self._existing_columns, what="reading the table's columns")
        if not existing and not self.create:
            raise self._missing_table()

    async def aclose(self) -> None:
        await self._db.close()

    async def check(self) -> list[Problem]:
        """Whether the database can be written and the table exists (or ``create`` is set)."""
        return await table_problems(self.path, self.table, create=self.create)

    def commits_to(self, store: CheckpointStore) -> bool:
        """True for a :class:`SqliteCheckpointStore` on the same database file."""
        return isinstance(store, SqliteCheckpointStore) and same_database(store.path, self.path)

    def stores_dead_letters_of(self, store: DeadLetterStore) -> bool:
        """True for a :class:`SqliteDeadLetterStore` on the same database file."""
        return isinstance(store, SqliteDeadLetterStore) and same_database(store.path, self.path)

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[Record] | None:
        """Save checkpoints of ``store`` in each batch's transaction, if :meth:`commits_to` it.

        Dead letters of ``dead_letters`` too, if :meth:`stores_dead_letters_of` it.
        """
        if not isinstance(store, SqliteCheckpointStore) or not self.commits_to(store):
            return None
        self._checkpoints = store.sql
        if isinstance(dead_letters, SqliteDeadLetterStore) and self.stores_dead_letters_of(
            dead_letters
        ):
            self._dead_letters = dead_letters.sql
        return self._write_with_checkpoint

    async def write(self, batch: Batch[Record]) -> Sequence[Reject]:
        """Load the batch in one transaction; return the records refused.

        :raises PermanentError: when the table is missing (without ``create``),
            lacks a column, or has no unique constraint on ``key``.
        :raises TransientError: when the database stayed locked through every retry.
        """
        return await self._write(batch.records, None, None)

    async def _write_with_checkpoint(
        self, batch: Batch[Record], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        """Load the batch and save ``checkpoint`` in the same transaction (also when empty).

        ``settle`` is awaited with the records refused before the transaction
        commits; the dead letters it returns are written in it.

        :raises PermanentError: as :meth:`write`.
        """
        return await self._write(batch.records, checkpoint, settle)

    async def _write(
        self, records: Sequence[Record], checkpoint: Checkpoint | None, settle: Settle | None
    ) -> list[Reject]:
        plan = self._plan
        # Made here, with a plan that needs no look at the table: the writer thread then
        # holds the GIL only between its statements, and the event loop's thread, which
        # wants it back for the next batches meanwhile, is kept waiting less.
        ready = (plan, plan.rows(records)) if plan and plan.contract != "evolve" else None
        call = partial(self._transaction, records, ready, checkpoint, settle)
        return await self._db.run(call, what=f"write to table {self.table!r}")

    # -- in the worker thread ---------------------------------------------------

    def _transaction(
        self,
        records: Sequence[Record],
        ready: tuple[Plan, Rows] | None,
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        conn: sqlite3.Connection,
    ) -> list[Reject]:
        added: list[tuple[str, str]] = []
        if ready is not None:
            plan: Plan | None
            plan, rows = ready
        else:
            plan = self._plan or self._make_plan(conn, records)
            if plan is not None and plan.contract == "evolve":
                plan, added = plan.evolved(records, self._existing_columns(conn))
            rows = plan.rows(records) if plan else Rows.refused(not_mappings(records))
        try:
            rejects = self._load(conn, plan, added, rows, checkpoint, settle, one_by_one=False)
        except _RowRefused:
            # Rolled back whole: load again one row at a time (each statement is atomic)
            # to find which rows the table refuses.
            rejects = self._load(conn, plan, added, rows, checkpoint, settle, one_by_one=True)
        if plan is not None:
            self._plan = plan.created()
        self._checkpoint_table_ready |= checkpoint is not None
        return rejects

    def _load(
        self,
        conn: sqlite3.Connection,
        plan: Plan | None,
        added: list[tuple[str, str]],
        rows: Rows,
        checkpoint: Checkpoint | None,
        settle: Settle | None,
        *,
        one_by_one: bool,
    ) -> list[Reject]:
        """The batch's one transaction. Every statement in it is a switch of the GIL
        to and from the event loop's thread, so the common path has as few as it can."""
        rejects = list(rows.rejects)
        with immediate(conn), self._explained():
            if plan is not None and plan.create:
                conn.execute(plan.create)
            for name, kind in added:
                conn.execute(add_column(self.table, name, kind))
            if plan is not None and rows.kept:
                if one_by_one:
                    rejects += self._insert_each(conn, plan, rows)
                else:
                    self._insert(conn, plan, rows)
            if settle is not None:
                # Before COMMIT: a failing policy rolls the batch and its checkpoint back.
                letters = anyio.from_thread.run(_settled, settle, list(rejects))
                self._store_letters(conn, letters)
            if checkpoint is not None:
                self._save_checkpoint(conn, checkpoint)
        return rejects

    def _insert(self, conn: sqlite3.Connection, plan: Plan, rows: Rows) -> None:
        """All rows in as few statements as :meth:`Plan.statements` allows.

        :raises _RowRefused: some row was refused; the caller's transaction rolls back.
        """
        most = _rows_per_statement(conn, plan.columns)
        count = len(rows.kept)
        whole = self._whole_sizes
        if count == self._last_size and count <= most and len(whole) < _WHOLE_SIZES:
            whole.add(count)  # a size that recurs (full batches) gets a statement of its own
        self._last_size = count
        try:
            for sql, values in plan.statements(rows, most, whole):
                conn.execute(sql, values)
        except _ROW_ERRORS as exc:
            raise _RowRefused from exc

    def _insert_each(self, conn: sqlite3.Connection, plan: Plan, rows: Rows) -> list[Reject]:
        rejects: list[Reject] = []
        for row, record in zip(rows.each(), rows.kept, strict=True):
            try:
                conn.execute(plan.insert, row)
            except _ROW_ERRORS as exc:
                error = PermanentError(f"SQLite table {self.table!r} refused the record: {exc}")
                error.__cause__ = exc
                rejects.append(Reject(record, error))
        return rejects

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Turn SQLite's complaint about a key without a unique constraint into advice."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "ON CONFLICT clause does not match" not in str(exc):
                raise
            raise PermanentError(
                f"SQLite table {self.table!r} has no PRIMARY KEY or UNIQUE constraint on "
                f"{', '.join(self.key)}; add one, or leave out key to insert plainly"
            ) from exc

    def _store_letters(self, conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        if self._dead_letters is None:
            raise PermanentError(
                f"SqliteSink {self.name} was given dead letters to store but has no "
                "dead-letter table bound"
            )
        conn.executemany(self._dead_letters.put, [letter_row(letter) for letter in letters])

    def _save_checkpoint(self, conn: sqlite3.Connection, checkpoint: Checkpoint) -> None:
        assert self._checkpoints is not None
        if not self._checkpoint_table_ready:
            conn.execute(self._checkpoints.create)
        conn.execute(self._checkpoints.save, checkpoint_row(checkpoint))

    def _make_plan(self, conn: sqlite3.Connection, records: Sequence[Record]) -> Plan | None:
        first = next((r for r in records if isinstance(r, Mapping)), None)
        if first is None:
            return None  # nothing to learn the columns (or their types) from yet
        columns = self.columns or [*self.key, *(c for c in first if c not in self.key)]
        check_names(f"SqliteSink {self.name}", "record keys", columns)
        existing = self._existing_columns(conn)
        create = None
        if existing:
            known = {name.lower() for name in existing}
            missing = [c for c in columns if c.lower() not in known]
            if missing:
                raise PermanentError(
                    f"SQLite table {self.table!r} has no column {missing[0]!r}; add the column, "
                    "or list the columns to load in columns"
                )
        elif self.create:
            create = create_table(self.table, infer_types(columns, records), self.key)
        else:
            raise self._missing_table()
        return Plan(
            self.table,
            columns,
            insert(self.table, columns, self.key),
            self.schema_contract,
            create,
            tuple(self.key),
        )

    def _existing_columns(self, conn: sqlite3.Connection) -> list[str]:
        return [row[0] for row in conn.execute(TABLE_COLUMNS, (self.table,))]

    def _missing_table(self) -> PermanentError:
        return PermanentError(
            f"SQLite table {self.table!r} does not exist in {self.path}; create it or set "
            "create = true",
            setting="table",
        )


class _RowRefused(Exception):
    """A statement of a batch's insert was refused for one of its rows."""


#: Batch sizes at most that get a statement of their own once they recur: a compiled
#: statement of a thousand rows takes about a megabyte.
_WHOLE_SIZES = 4
#: Rows per insert statement at most. One statement per batch part instead of one per
#: row: the sqlite3 module lets go of the GIL around every statement it steps, and
#: each time it must win it back from the event loop's thread, which could take a
#: whole switch interval (5 ms) per row while that thread was busy.
_MOST_ROWS = 1024


def _rows_per_statement(conn: sqlite3.Connection, columns: Sequence[str]) -> int:
    """The largest power of two up to :data:`_MOST_ROWS` rows whose values SQLite binds at once."""
    fits = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // max(1, len(columns)))
    return 1 << (min(fits, _MOST_ROWS).bit_length() - 1)


async def _settled(settle: Settle, rejects: list[Reject]) -> Sequence[DeadLetter]:
    return await settle(rejects)
