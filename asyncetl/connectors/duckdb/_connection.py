"""One DuckDB connection per resource, used from worker threads one call at a time.

DuckDB is embedded and blocking: every resource of this connector (sink,
checkpoint store, dead-letter store) owns one :class:`DuckDBConnection`, which
runs each call in a worker thread under a lock. Connections to the same file
in one process share DuckDB's database instance, so a sink and a store on one
file see each other's commits. This module is the one place where ``duckdb``
exceptions become asyncetl errors: a write-write conflict between two
connections is a :class:`TransientError` (retried with backoff), anything else a
:class:`PermanentError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import duckdb

from asyncetl.core.errors import PermanentError, TransientError
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["DuckDBConnection", "same_database", "transaction"]

T = TypeVar("T")

_RETRY = RetryPolicy(max_tries=5, max_time=60.0, base_delay=0.05, max_delay=2.0)


class DuckDBConnection:
    """A lazily opened connection to the database file ``path``."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._lock = anyio.Lock()

    async def close(self) -> None:
        """Disconnect; a later call connects again."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, what: str) -> T:
        """``fn(connection)`` in a worker thread; retried after a transaction conflict.

        ``fn`` must be one transaction (or none), so that a retry repeats all of it.

        :param what: names the call in errors and log lines, e.g. ``write to table 'orders'``.
        :raises TransientError: when conflicts went on through every retry.
        :raises PermanentError: for any other DuckDB error.
        """

        async def attempt() -> T:
            async with self._lock:
                if self._conn is None:
                    self._conn = await anyio.to_thread.run_sync(self._connect)
                return await anyio.to_thread.run_sync(self._call, self._conn, fn, what)

        return await retry_call(attempt, policy=_RETRY, what=f"DuckDB {what} in {self.path}")

    def _call(
        self,
        conn: duckdb.DuckDBPyConnection,
        fn: Callable[[duckdb.DuckDBPyConnection], T],
        what: str,
    ) -> T:
        with self._mapped(what):
            return fn(conn)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        with self._mapped("open"):
            return duckdb.connect(self.path)

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except duckdb.Error as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: duckdb.Error, what: str) -> TransientError | PermanentError:
        if isinstance(exc, duckdb.TransactionException):
            return TransientError(f"DuckDB database {self.path} had a conflict ({exc}) in {what}")
        if what == "open":
            return PermanentError(
                f"cannot open DuckDB database {self.path}: {exc}; check that its directory "
                "exists and is writable, and that no other process holds the file"
            )
        return PermanentError(f"DuckDB {what} in {self.path} failed: {exc}")


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """``BEGIN`` … ``COMMIT``; ``ROLLBACK`` on any error, which then propagates."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        with suppress(duckdb.Error):  # the error that got us here is the one to report
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def same_database(a: str, b: str) -> bool:
    """Whether two paths name the same database file (never true for ``:memory:``)."""
    if ":memory:" in (a, b) or not a or not b:
        return False
    return Path(a).resolve() == Path(b).resolve()
