"""A blocking embedded-database connection, used from worker threads one call at a time.

SQLite and DuckDB are embedded and blocking. Every resource of those connectors
(sink, checkpoint store, dead-letter store) owns one connection, opened lazily
and run in a worker thread under a lock: shared across threads, never used by
two at once. A call that fails in a way worth retrying (a busy file, a
write-write conflict) is retried with backoff; what counts as that, and how
the connection opens, is the connector's to say. Nothing here imports a driver.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread

from asyncetl.core.errors import PermanentError, TransientError
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["ThreadConnection", "same_database"]

T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)

_RETRY = RetryPolicy(max_tries=5, max_time=60.0, base_delay=0.05, max_delay=2.0)


class ThreadConnection(abc.ABC, Generic[C]):
    """A lazily opened connection to the database file ``path``.

    Subclasses say how to connect (:meth:`_connect`), which driver errors they
    map (:attr:`driver_error`) and how (:meth:`_error`).
    """

    #: The database's name in messages, e.g. ``"SQLite"``.
    product: ClassVar[str]
    #: The driver's base exception class; others propagate unchanged.
    driver_error: ClassVar[type[Exception]]

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._conn: C | None = None
        self._lock = anyio.Lock()

    async def open(self) -> None:
        """Connect, if not yet connected.

        :raises PermanentError: when the database cannot be opened.
        """
        async with self._lock:
            if self._conn is None:
                self._conn = await anyio.to_thread.run_sync(self._open)

    async def close(self) -> None:
        """Disconnect; a later call connects again."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)

    async def run(self, fn: Callable[[C], T], *, what: str) -> T:
        """``fn(connection)`` in a worker thread; retried while the error is transient.

        ``fn`` must be one transaction (or none), so that a retry repeats all of it.

        :param what: names the call in errors and log lines, e.g. ``write to table "t"``.
        :raises TransientError: when the transient error went on through every retry.
        :raises PermanentError: for any other error of the driver.
        """

        async def attempt() -> T:
            async with self._lock:
                if self._conn is None:
                    self._conn = await anyio.to_thread.run_sync(self._open)
                return await anyio.to_thread.run_sync(self._call, self._conn, fn, what)

        return await retry_call(
            attempt, policy=_RETRY, what=f"{self.product} {what} in {self.path}"
        )

    def _call(self, conn: C, fn: Callable[[C], T], what: str) -> T:
        with self._mapped(what):
            return fn(conn)

    def _open(self) -> C:
        with self._mapped("open"):
            return self._connect()

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except self.driver_error as exc:
            raise self._error(exc, what) from exc

    @abc.abstractmethod
    def _connect(self) -> C:
        """A new connection to :attr:`path` (driver errors are mapped by the caller)."""

    def _error(self, exc: Exception, what: str) -> TransientError | PermanentError:
        """The asyncetl error for a driver error ``exc`` during ``what``."""
        transient = self._transient(exc, what)
        if transient is not None:
            return TransientError(transient)
        if what == "open":
            return PermanentError(
                f"cannot open {self.product} database {self.path}: {exc}; {self._open_hint}"
            )
        return PermanentError(f"{self.product} {what} in {self.path} failed: {exc}")

    #: What to check when the file cannot be opened.
    _open_hint: ClassVar[str] = "check that its directory exists and is writable"

    def _transient(self, exc: Exception, what: str) -> str | None:
        """The message of a retryable error, or ``None`` for a permanent one."""
        return None


def same_database(a: str, b: str) -> bool:
    """Whether two paths name the same database file (never true for ``:memory:``)."""
    if ":memory:" in (a, b) or not a or not b:
        return False
    return Path(a).resolve() == Path(b).resolve()
