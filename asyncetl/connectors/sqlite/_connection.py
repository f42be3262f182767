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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import ClassVar

from asyncetl.core.errors import ConfigError
from asyncetl.core.thread_connection import ThreadConnection, same_database

__all__ = ["SqliteConnection", "check_busy_timeout", "immediate", "same_database"]

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteConnection(ThreadConnection[sqlite3.Connection]):
    """A lazily opened connection to the database file ``path``.

    :param busy_timeout: seconds SQLite waits for another connection's lock
        before a call fails as busy (and is then retried).
    """

    product: ClassVar[str] = "SQLite"
    driver_error: ClassVar[type[Exception]] = sqlite3.Error

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        super().__init__(path)
        self.busy_timeout = busy_timeout

    def _connect(self) -> sqlite3.Connection:
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

    def _transient(self, exc: Exception, what: str) -> str | None:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _BUSY_CODES:
            return f"SQLite database {self.path} is busy ({exc}) during {what}"
        return None


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
