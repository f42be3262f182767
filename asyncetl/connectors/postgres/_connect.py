"""Connections: DSNs without passwords in messages, pools, retries and the one error boundary.

Every asyncpg or OS exception this connector meets is turned into an asyncetl
error by :func:`map_errors` (in the manner of httpx's
``map_httpcore_exceptions``): lost connections, shutdowns, serialization
failures and deadlocks become :class:`TransientError`; everything else becomes
:class:`PermanentError`. :func:`in_transaction` retries one whole transaction
with :func:`asyncetl.core.retry.retry_call` — safe because a failed transaction
rolled back, so the retry starts from the same state.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import asyncpg
import asyncpg.exceptions as pgerr
import orjson

from asyncetl.connectors.postgres._text import parsed_or_text
from asyncetl.core.errors import (
    AsyncetlError,
    ConfigError,
    ConnectorError,
    PermanentError,
    TransientError,
)
from asyncetl.core.redact import misplaced_userinfo, redact_url, redact_urls
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = [
    "Dsn",
    "close_pool",
    "in_transaction",
    "map_errors",
    "on_connection",
    "open_pool",
    "retry_policy",
    "to_connector_error",
]

T = TypeVar("T")

_TRANSIENT_PG = (
    pgerr.PostgresConnectionError,  # 08xxx
    pgerr.OperatorInterventionError,  # 57xxx: admin shutdown, terminate_backend, crash
    pgerr.TransactionRollbackError,  # 40xxx: serialization failure, deadlock
    pgerr.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    pgerr.LockNotAvailableError,
)


@dataclass(frozen=True, slots=True)
class Dsn:
    """A ``postgresql://`` DSN whose password never shows in ``str``/``repr`` or messages.

    :param url: the DSN as given; only ever passed to asyncpg.
    """

    url: str = field(repr=False)
    host: str
    port: int
    database: str
    user: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> Dsn:
        """Parse ``url``; missing parts default as libpq does (``PGHOST``, ``PGPORT``…).

        :raises ConfigError: when ``url`` is not a ``postgres://``/``postgresql://`` URL.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not url.startswith(
            f"{parts.scheme}://"
        ):
            raise ConfigError(
                f"{redact_url(url)!r} is not a PostgreSQL DSN; "
                "write postgresql://user@host:port/database (user:password@ with a password)"
            )
        if misplaced_userinfo(url):
            raise ConfigError(
                f"cannot read {redact_url(url)!r}: a password or database name must write "
                "'@', '/', '?' and '#' as %40, %2F, %3F and %23"
            )
        query = parse_qs(parts.query)
        try:
            netloc_port = parts.port
        except ValueError:
            raise ConfigError(
                f"{redact_url(url)!r} has an invalid port (a password must write "
                "'/', '?' and '#' as %2F, %3F and %23)"
            ) from None
        user = (
            unquote(parts.username or "")
            or _first(query, "user")
            or os.environ.get("PGUSER", "postgres")
        )
        host = (
            unquote(parts.hostname or "")
            or _first(query, "host")
            or os.environ.get("PGHOST", "localhost")
        )
        port = netloc_port or int(_first(query, "port") or os.environ.get("PGPORT", "5432"))
        database = (
            unquote(parts.path.lstrip("/"))
            or _first(query, "dbname")
            or os.environ.get("PGDATABASE", user)
        )
        password = (unquote(parts.password) if parts.password else None) or _first(
            query, "password"
        )
        return cls(url, host, port, database, user, password)

    @property
    def where(self) -> str:
        """``host:port/database``: what messages name."""
        return f"{self.host}:{self.port}/{self.database}"

    def same_database(self, other: Dsn) -> bool:
        """Whether both DSNs reach the same database of the same server."""
        return (self.host, self.port, self.database) == (other.host, other.port, other.database)

    def scrub(self, text: str) -> str:
        """``text`` with any DSN's and this DSN's password (if any) replaced by ``***``."""
        text = redact_urls(text)
        if self.password:
            return text.replace(self.password, "***")
        return text

    def __str__(self) -> str:
        return f"postgresql://{self.user}@{self.where}"


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def retry_policy(retries: int, retry_max_time: float) -> RetryPolicy:
    """The retry policy for connector parameters ``retries`` (retries after the first try)."""
    return RetryPolicy(
        max_tries=retries + 1, max_time=retry_max_time, base_delay=0.1, max_delay=5.0
    )


def to_connector_error(exc: BaseException, dsn: Dsn, what: str) -> ConnectorError:
    """The asyncetl error for an asyncpg/OS exception ``exc`` raised while doing ``what``."""
    detail = dsn.scrub(str(exc).strip() or type(exc).__name__)
    if isinstance(exc, OSError | TimeoutError) and not isinstance(exc, pgerr.PostgresError):
        reason = exc.strerror or detail if isinstance(exc, OSError) else "timed out"
        return TransientError(
            f"cannot reach PostgreSQL at {dsn.host}:{dsn.port} while {what}: {dsn.scrub(reason)}; "
            "check that the server is running and that the DSN's host and port are right"
        )
    if isinstance(exc, _TRANSIENT_PG) or _is_lost_connection(exc):
        return TransientError(f"PostgreSQL at {dsn.where} failed while {what}: {detail}")
    if isinstance(exc, pgerr.InsufficientPrivilegeError):
        return PermanentError(
            f"permission denied on {dsn.where} while {what}: {detail}; "
            f"grant the privilege to role {dsn.user!r} or use another role"
        )
    if isinstance(exc, pgerr.InvalidAuthorizationSpecificationError | pgerr.InvalidPasswordError):
        return PermanentError(
            f"PostgreSQL at {dsn.host}:{dsn.port} refused role {dsn.user!r}: {detail}; "
            "check the DSN's user and password"
        )
    if isinstance(exc, pgerr.InvalidCatalogNameError):
        return PermanentError(
            f"database {dsn.database!r} does not exist on {dsn.host}:{dsn.port}; "
            "create it or fix the DSN"
        )
    return PermanentError(f"PostgreSQL at {dsn.where} failed while {what}: {detail}")


def _is_lost_connection(exc: BaseException) -> bool:
    if not isinstance(exc, pgerr.InterfaceError | pgerr.InternalClientError):
        return False
    text = str(exc)
    # A backend terminated while its connection sat idle in the pool sends its FATAL
    # error before closing the socket; a query started between the two finds asyncpg's
    # protocol still consuming that error and fails with "cannot switch to state …".
    return ("connection" in text and ("closed" in text or "lost" in text)) or (
        isinstance(exc, pgerr.InternalClientError) and text.startswith("cannot switch to state")
    )


@contextmanager
def map_errors(dsn: Dsn, what: str) -> Iterator[None]:
    """Turn asyncpg and OS exceptions raised inside into asyncetl errors.

    asyncetl errors and cancellation pass through untouched.

    :param what: what was being done, for the message, e.g. ``"upserting into public.t"``.
    :raises TransientError: for failures worth retrying.
    :raises PermanentError: for the rest.
    """
    try:
        yield
    except AsyncetlError:
        raise
    except (
        pgerr.PostgresError,
        pgerr.InterfaceError,
        pgerr.InternalClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise to_connector_error(exc, dsn, what) from exc


def _encode_jsonb(value: object) -> bytes:
    if isinstance(value, str):
        return b"\x01" + value.encode()  # already JSON text
    return b"\x01" + orjson.dumps(value)


def _encode_json(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()  # already JSON text
    return orjson.dumps(value)


def _decode_jsonb(data: bytes) -> str:
    return data[1:].decode()


def _decode_json(data: bytes) -> str:
    return data.decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    """json/jsonb accept JSON text (``str``) or any JSON-able value, and read back as text."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog", format="binary"
    )


#: Types whose every value a source reads exactly (see :func:`parsed_or_text`).
_EXACT_TYPES: tuple[tuple[str, Callable[[str], object]], ...] = (
    ("date", dt.date.fromisoformat),
    ("time", dt.time.fromisoformat),
)


def _initializer(
    json_values: bool, text_types: tuple[str, ...], exact_dates: bool
) -> Callable[[asyncpg.Connection], Coroutine[Any, Any, None]] | None:
    if not json_values and not text_types and not exact_dates:
        return None

    async def init(conn: asyncpg.Connection) -> None:
        if json_values:
            await _init_connection(conn)
        for name, parse in _EXACT_TYPES if exact_dates else ():
            if name not in text_types:
                await conn.set_type_codec(
                    name,
                    encoder=str,
                    decoder=parsed_or_text(parse),
                    schema="pg_catalog",
                    format="text",
                )
        for name in text_types:
            await conn.set_type_codec(
                name, encoder=str, decoder=str, schema="pg_catalog", format="text"
            )

    return init


async def open_pool(
    dsn: Dsn,
    *,
    policy: RetryPolicy,
    max_size: int = 2,
    connect_timeout: float = 10.0,
    json_values: bool = True,
    text_types: Sequence[str] = (),
    exact_dates: bool = False,
    reset_sessions: bool = True,
) -> asyncpg.Pool:
    """Create an asyncpg pool, retrying while the server is unreachable.

    Its connections read ``json``/``jsonb`` as text and, with ``json_values``,
    write either JSON text (a ``str``) or any value ``orjson`` can encode (dicts,
    lists…); without it, asyncpg's faster built-in codecs take text only.

    :param text_types: ``pg_catalog`` types read and written as their text
        (``str``), for types whose Python value would lose information
        (``interval``: months are not days).
    :param exact_dates: read ``date`` and ``time`` values as Python values where
        Python has one, and as their text otherwise (``infinity``, dates BC, years
        past 9999, ``24:00``), as change data capture reads them.
    :param reset_sessions: reset each released connection's session (settings,
        LISTEN, advisory locks, cursors: one round trip). ``False`` for a pool
        whose users leave no session state behind; an open transaction is
        rolled back either way.

    :raises TransientError: when the server stayed unreachable for every retry;
        the message names host and port, never the password.
    :raises PermanentError: for authentication and missing-database errors.
    """

    async def connect() -> asyncpg.Pool:
        with map_errors(dsn, f"connecting as {dsn.user!r}"):
            pool = await asyncpg.create_pool(
                dsn.url,
                # No floor: a pool that keeps one reconnects a lost connection in a
                # background task, which close() cancels mid-connect, and asyncpg
                # then logs "Future exception was never retrieved". The first
                # connection is made below instead, and stays pooled.
                min_size=0,
                max_size=max_size,
                timeout=connect_timeout,
                command_timeout=None,
                max_inactive_connection_lifetime=60.0,
                init=_initializer(json_values, tuple(text_types), exact_dates),
                reset=None if reset_sessions else _keep_session,
                # Floats as text exactly (the shortest text that reads back the same,
                # PostgreSQL 12+), and dates and intervals in the one style every server
                # reads back, whatever the database or role sets: keyless reads group
                # by their text, positions and COPY lines hold it, dates are parsed.
                server_settings=_SESSION_SETTINGS,
            )
            try:
                async with pool.acquire():  # reach the server now, not at the first batch
                    pass
            except BaseException:
                await close_pool(pool)
                raise
            return pool

    return await retry_call(connect, policy=policy, what=f"connect to {dsn}")


_SESSION_SETTINGS = {
    "extra_float_digits": "3",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
}


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: asyncpg has already rolled back what the user left open."""


async def close_pool(pool: asyncpg.Pool | None) -> None:
    """Close ``pool`` gracefully within a few seconds, shielded; terminate it otherwise."""
    if pool is None:
        return
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(5):
            await pool.close()
            return
        pool.terminate()


async def in_transaction(
    pool: asyncpg.Pool,
    dsn: Dsn,
    what: str,
    body: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    policy: RetryPolicy,
) -> T:
    """Run ``body(conn)`` in one transaction on a pooled connection, retrying the whole of it.

    A transient failure (a killed connection, a serialization failure…) rolls
    the transaction back, so ``body`` runs again from scratch on a fresh
    connection: it must not have side effects outside the database.

    :raises TransientError: when every retry failed transiently.
    :raises PermanentError: at the first permanent failure.
    """

    async def attempt() -> T:
        with map_errors(dsn, what):
            async with pool.acquire() as proxy, proxy.transaction():
                # The pool's proxy delegates every Connection method.
                return await body(cast("asyncpg.Connection", proxy))

    return await retry_call(attempt, policy=policy, what=f"{what} on {dsn}")


async def on_connection(
    pool: asyncpg.Pool,
    dsn: Dsn,
    what: str,
    body: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    policy: RetryPolicy,
) -> T:
    """Like :func:`in_transaction`, without ``BEGIN`` and ``COMMIT``: for one statement.

    A single statement sees one snapshot on its own; the two round trips a
    transaction adds are what a page of a scan would wait for.
    """

    async def attempt() -> T:
        with map_errors(dsn, what):
            async with pool.acquire() as proxy:
                return await body(cast("asyncpg.Connection", proxy))

    return await retry_call(attempt, policy=policy, what=f"{what} on {dsn}")
