"""One SQLite connection per resource, used from worker threads one call at a time.

Every resource of this connector (sink, checkpoint store, dead-letter store)
owns one :class:`SqliteConnection`. It opens the database in WAL mode with
``synchronous = FULL`` (a committed transaction survives a power cut) and a
busy timeout, runs each call in a worker thread under a lock (the connection is
shared across threads, never used by two at once), and is the one place where
``sqlite3`` exceptions become asyncetl errors: a busy or locked database is a
:class:`TransientError`, retried with backoff; anything else is a
:class:`PermanentError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["SqliteConnection", "check_busy_timeout", "immediate", "same_database"]

T = TypeVar("T")

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_RETRY = RetryPolicy(max_tries=5, max_time=60.0, base_delay=0.05, max_delay=2.0)


class SqliteConnection:
    """A lazily opened connection to the database file ``path``.

    :param busy_timeout: seconds SQLite waits for another connection's lock
        before a call fails as busy (and is then retried).
    """

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = anyio.Lock()

    async def open(self) -> None:
        """Connect, if not yet connected.

        :raises PermanentError: when the database cannot be opened.
        """
        async with self._lock:
            if self._conn is None:
                self._conn = await anyio.to_thread.run_sync(self._connect)

    async def close(self) -> None:
        """Disconnect; a later call connects again."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, what: str) -> T:
        """``fn(connection)`` in a worker thread; retried while the database is busy.

        ``fn`` must be one transaction (or none), so that a retry repeats all of it.

        :param what: names the call in errors and log lines, e.g. ``write to table "t"``.
        :raises TransientError: when the database stayed busy through every retry.
        :raises PermanentError: for any other SQLite error.
        """

        async def attempt() -> T:
            async with self._lock:
                if self._conn is None:
                    self._conn = await anyio.to_thread.run_sync(self._connect)
                return await anyio.to_thread.run_sync(self._call, self._conn, fn, what)

        return await retry_call(attempt, policy=_RETRY, what=f"SQLite {what} in {self.path}")

    def _call(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], what: str
    ) -> T:
        with self._mapped(what):
            return fn(conn)

    def _connect(self) -> sqlite3.Connection:
        with self._mapped("open"):
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
            return conn

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: sqlite3.Error, what: str) -> TransientError | PermanentError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _BUSY_CODES:
            return TransientError(f"SQLite database {self.path} is busy ({exc}) during {what}")
        if what == "open":
            return PermanentError(
                f"cannot open SQLite database {self.path}: {exc}; check that its directory "
                "exists and is writable"
            )
        return PermanentError(f"SQLite {what} in {self.path} failed: {exc}")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any error, which then propagates."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # the error that got us here is the one to report
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def same_database(a: str, b: str) -> bool:
    """Whether two paths name the same database file (never true for ``:memory:``)."""
    if ":memory:" in (a, b) or not a or not b:
        return False
    return Path(a).resolve() == Path(b).resolve()


def check_busy_timeout(where: str, busy_timeout: float) -> None:
    """:raises ConfigError: unless ``busy_timeout`` is a non-negative number of seconds."""
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
        raise ConfigError(
            f"must be a number of seconds, not {busy_timeout!r}", where=where, key="busy_timeout"
        )
    if not busy_timeout >= 0:
        raise ConfigError(
            f"must not be negative, not {busy_timeout!r}", where=where, key="busy_timeout"
        )
