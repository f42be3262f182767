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

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import ClassVar

import duckdb

from asyncetl.core.thread_connection import ThreadConnection, same_database

__all__ = ["DuckDBConnection", "same_database", "transaction"]


class DuckDBConnection(ThreadConnection[duckdb.DuckDBPyConnection]):
    """A lazily opened connection to the database file ``path``."""

    product: ClassVar[str] = "DuckDB"
    driver_error: ClassVar[type[Exception]] = duckdb.Error
    _open_hint: ClassVar[str] = (
        "check that its directory exists and is writable, and that no other process holds the file"
    )

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(self.path)

    def _transient(self, exc: Exception, what: str) -> str | None:
        if isinstance(exc, duckdb.TransactionException):
            return f"DuckDB database {self.path} had a conflict ({exc}) in {what}"
        return None


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
