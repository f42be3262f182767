"""The one boundary between nats-py and asyncetl: connecting, retrying, error mapping.

Every JetStream call goes through :meth:`NatsClient.call`, which maps nats-py's
exceptions to :class:`TransientError` (no connection, timeouts, a server
briefly unavailable) or :class:`PermanentError` (bad credentials, missing
streams, a refused request) and retries ONE call at a time with
:func:`asyncetl.core.retry.retry_call`. Once connected, nats-py reconnects by
itself; a call made meanwhile times out and is retried here. Server URLs are
shown only as ``host:port``, never with their credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import nats.errors as nerr
import nats.js.errors as jerr
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem
from asyncetl.core.logs import get_logger
from asyncetl.core.redact import misplaced_userinfo, redact_url, redact_urls
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["NatsClient", "endpoints", "redact_server", "server_list"]

T = TypeVar("T")

#: Seconds one connection attempt (every server, twice) may take at most.
CONNECT_TIMEOUT = 10.0
_REQUEST_TIMEOUT = 10.0
_AUTH_ERRORS = (nerr.AuthorizationError, nerr.InvalidUserCredentialsError)
_log = get_logger("asyncetl.nats")


def server_list(servers: object, where: str) -> list[str]:
    """``servers`` as a list of URLs; a string may hold several, comma-separated.

    :raises ConfigError: when no server is given.
    """
    if isinstance(servers, str):
        servers = servers.split(",")
    if not isinstance(servers, list | tuple) or not all(isinstance(s, str) for s in servers):
        shown = redact_urls(repr(servers))
        raise ConfigError(
            f"expected a server URL or a list of them, got {shown}", where=where, key="servers"
        )
    found = [server.strip() for server in servers if server.strip()]
    if not found:
        raise ConfigError("no server given; e.g. nats://127.0.0.1:4222", where=where, key="servers")
    for server in found:
        if misplaced_userinfo(_with_scheme(server)):
            raise ConfigError(
                f"cannot read {redact_server(server)!r}: a password must write '@', '/', '?' "
                "and '#' as %40, %2F, %3F and %23",
                where=where,
                key="servers",
            )
    return found


def redact_server(server: str) -> str:
    """A server URL without its password or token: the one way a URL is shown whole."""
    return redact_url(server, hide_user_only=True)


def _with_scheme(server: str) -> str:
    return server if "://" in server else f"nats://{server}"


def endpoints(servers: Sequence[str]) -> str:
    """The servers as ``host:port``, comma-separated; never credentials."""
    shown = []
    for server in servers:
        parts = urlsplit(_with_scheme(server))
        try:
            port = parts.port or 4222
        except ValueError:
            port = 4222
        shown.append(f"{parts.hostname or 'localhost'}:{port}")
    return ", ".join(shown)


class NatsClient:
    """A NATS connection whose every JetStream call is retried and mapped to asyncetl errors.

    :param where: names the connector in messages, e.g. ``JetStreamSource 'nats'``.
    """

    def __init__(self, servers: list[str], *, where: str, policy: RetryPolicy) -> None:
        self.servers = servers
        self.where = where
        self.endpoint = endpoints(servers)
        self.policy = policy
        self._nc: NATS | None = None
        self._last_error: Exception | None = None
        self._js: JetStreamContext | None = None

    @property
    def nc(self) -> NATS:
        """The open connection.

        :raises RuntimeError: before :meth:`open`.
        """
        if self._nc is None:
            raise RuntimeError(f"{self.where} is not open")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the open connection."""
        if self._js is None:
            raise RuntimeError(f"{self.where} is not open")
        return self._js

    async def open(self) -> None:
        """Connect to the first server that answers.

        :raises TransientError: no server answered through every retry.
        :raises PermanentError: a server refused the credentials.
        """
        self._nc = await self.call("connect", self._connect)
        self._js = self._nc.jetstream(timeout=_REQUEST_TIMEOUT)

    async def open_once(self) -> None:
        """Like :meth:`open`, trying once: for checks, which want an answer now."""
        with self.errors("connect"):
            self._nc = await self._connect()
        self._js = self._nc.jetstream(timeout=_REQUEST_TIMEOUT)

    async def check_once(
        self, what: str, problems: Callable[[], Awaitable[list[Problem]]]
    ) -> list[Problem]:
        """Connect once and return ``problems()``, then close: for checks.

        :param what: what ``problems`` asks the server, for messages.
        :returns: also a problem with ``servers`` when connecting or ``what`` failed.
        """
        try:
            await self.open_once()
            with self.errors(what):
                return await problems()
        except AsyncetlError as exc:
            return [Problem("servers", str(exc))]
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connection; safe after a failed open."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with self.errors("close"):
                await nc.close()

    async def call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()``, retrying transient failures.

        :param what: the request, for messages, e.g. ``fetch from ORDERS/etl``.
        :raises TransientError: when every retry failed transiently.
        :raises PermanentError: when the server refused the request.
        """

        async def once() -> T:
            with self.errors(what):
                return await call()

        return await retry_call(once, policy=self.policy, what=f"{what} on {self.endpoint}")

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map nats-py's exceptions raised inside to asyncetl's (the one boundary).

        :raises TransientError: no connection, a timeout, JetStream briefly unavailable.
        :raises PermanentError: credentials refused; the server refused ``what``.
        """
        try:
            yield
        except _AUTH_ERRORS as exc:
            raise PermanentError(
                f"NATS at {self.endpoint} refused the credentials of {self.where}; "
                "check the user and password in the server URLs"
            ) from exc
        except jerr.NoStreamResponseError as exc:
            raise PermanentError(
                f"no JetStream stream on NATS at {self.endpoint} answered {what}; create a "
                "stream whose subjects include it"
            ) from exc
        except jerr.ServiceUnavailableError as exc:
            raise TransientError(
                f"JetStream on NATS at {self.endpoint} is unavailable for {what}: {exc.description}"
            ) from exc
        except jerr.APIError as exc:
            raise PermanentError(
                f"JetStream on NATS at {self.endpoint} refused {what} for {self.where}: "
                f"{exc.description} (error code {exc.err_code})"
            ) from exc
        except (nerr.Error, OSError) as exc:  # TimeoutError is an OSError
            raise TransientError(
                f"NATS at {self.endpoint} is unreachable or did not answer {what} in time "
                f"({_describe(exc)}); check that nats-server is running with JetStream "
                "and that the servers are right"
            ) from exc

    async def _connect(self) -> NATS:
        nc = NATS()
        self._last_error = None
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                await nc.connect(
                    servers=self.servers,
                    name=self.where,
                    error_cb=self._on_error,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=1,  # a first connection fails fast; retry_call retries
                    reconnect_time_wait=0,
                )
        except BaseException:
            with anyio.move_on_after(2, shield=True):
                await nc.close()
            if isinstance(self._last_error, _AUTH_ERRORS):
                raise self._last_error from None
            raise
        # Once connected, let nats-py reconnect for ever: a call made meanwhile times out
        # and is retried (and finally failed) by retry_call under our policy.
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 1
        return nc

    async def _on_error(self, exc: Exception) -> None:
        # nats-py reports connection trouble here while it (re)connects by itself.
        self._last_error = exc
        _log.warning("nats error", connector=self.where, servers=self.endpoint, error=repr(exc))


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
