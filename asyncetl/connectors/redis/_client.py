"""The one boundary between redis-py and asyncetl: connecting, retrying, error mapping.

Every command goes through :meth:`RedisClient.call`, which maps redis-py's
exceptions to :class:`TransientError` (connection refused or reset, timeouts, a
server still loading) or :class:`PermanentError` (bad credentials, a refused
command), and retries ONE command at a time with
:func:`asyncetl.core.retry.retry_call`. redis-py's own retry is switched off so
that there is exactly one retry loop. URLs are shown only through
:func:`redact_url` and :func:`endpoint`, never with their password.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem
from asyncetl.core.redact import REDACTED, misplaced_userinfo
from asyncetl.core.redact import redact_url as core_redact_url
from asyncetl.core.retry import RetryPolicy, retry_call
from asyncetl.core.settings_check import non_negative_int
from asyncetl.core.settings_check import retry_policy as checked_retry_policy

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as hiredis_pack

__all__ = ["RedisClient", "endpoint", "redact_url", "retry_policy", "undecodable_seen"]

T = TypeVar("T")

#: ``unix:`` takes a path (``unix:///run/redis.sock``); the others need ``//`` before the host.
_SCHEME_PREFIX = re.compile(r"(?:rediss?://|unix:/)", re.IGNORECASE)
_CONNECT_TIMEOUT = 5.0


class _Undecodable:
    """How many times replies held bytes that are not UTF-8, in this process.

    Replies are decoded with ``surrogateescape`` through :func:`_escape`, which
    counts each call: the decoder calls it only for bytes it cannot decode. A
    reader compares the count before and after its command, so that text from a
    clean reply need not be searched for lone surrogates; a count moved by
    another client's reply meanwhile only makes it search.
    """

    count = 0


_SURROGATEESCAPE = codecs.lookup_error("surrogateescape")
_ERRORS = "asyncetl.redis.surrogateescape"


def _escape(exc: UnicodeError) -> tuple[str | bytes, int]:
    _Undecodable.count += 1
    return _SURROGATEESCAPE(exc)


codecs.register_error(_ERRORS, _escape)


class _HiredisPackedConnection(aioredis.Connection):
    """A TCP connection that packs each command in hiredis's C code, as redis-py's
    synchronous client does; the asyncio client packs argument by argument in Python,
    which for an ``XACK`` of a thousand entry ids cost as much as parsing their reply.

    Text arguments are encoded as strict UTF-8.
    """

    # Through Any: redis-py 8.2 gave the class an __init__ without annotations.
    _packer = cast("Any", HiredisRespSerializer)()

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " not in args[0]:
            # Straight to hiredis: redis-py's serializer first looks at every argument in
            # Python, which for an XACK of a thousand ids cost more than the packing.
            try:
                return [hiredis_pack(args)]
            except TypeError:
                pass  # a bytearray, or a type nothing packs: the serializer says which
        packed: list[bytes] = self._packer.pack(*args)
        return packed


def undecodable_seen() -> int:
    """How many times so far a reply decoded to text held bytes that are not UTF-8."""
    return _Undecodable.count


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or the query) replaced by ``***``.

    A userinfo without ``:`` is hidden too (``redis://secret@host``): redis-py
    may read it as a password.
    """
    return core_redact_url(url, hide_user_only=True)


def endpoint(url: str) -> str:
    """Where ``url`` points, as ``host:port`` (or the socket path); never credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}"


def retry_policy(retries: object, retry_max_time: object, where: str) -> RetryPolicy:
    """The core :func:`~asyncetl.core.settings_check.retry_policy`, but a ``retry_max_time``
    that is no number at all is refused as such.

    :raises ConfigError: on a negative count or a time that is not a positive number.
    """
    non_negative_int(retries, where, "retries")
    if isinstance(retry_max_time, bool) or not isinstance(retry_max_time, int | float):
        raise ConfigError(
            f"must be a number, not {retry_max_time!r}", where=where, key="retry_max_time"
        )
    return checked_retry_policy(retries, retry_max_time, where)


def _check_url(url: object, where: str) -> str:
    if not isinstance(url, str) or not _SCHEME_PREFIX.match(url):
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigError(
            f"expected a redis://, rediss:// or unix:// URL, got {shown!r}", where=where, key="url"
        )
    if misplaced_userinfo(url):
        raise ConfigError(
            f"cannot read {redact_url(url)!r}: a password must write '@', '/', '?' and '#' "
            "as %40, %2F, %3F and %23",
            where=where,
            key="url",
        )
    return url


class RedisClient:
    """A redis-py client whose every command is retried and mapped to asyncetl errors.

    :param where: names the connector in messages, e.g. ``RedisStreamSource 'redis'``.
    :param client_name: shown by ``CLIENT LIST``, e.g. ``asyncetl:redis:worker-1``.
    :param socket_timeout: seconds to wait for a reply; longer than any ``BLOCK``.
    :param decode_text: have replies decoded to text as they are parsed.
    :param hiredis_packing: have hiredis (when installed) pack commands sent over TCP;
        only for a client whose text arguments are all valid Unicode (no lone surrogates).
    """

    def __init__(
        self,
        url: str,
        *,
        where: str,
        client_name: str,
        policy: RetryPolicy,
        socket_timeout: float = 30.0,
        decode_text: bool = False,
        hiredis_packing: bool = False,
    ) -> None:
        self.url = _check_url(url, where)
        #: Replies decoded to text by the client (in hiredis's C code, when installed),
        #: bytes that are not UTF-8 kept as lone surrogates (``surrogateescape``) and
        #: counted (:func:`undecodable_seen`).
        self.decode_text = decode_text
        self.where = where
        self.client_name = re.sub(r"\s", "_", client_name)
        self.endpoint = endpoint(url)
        self.policy = policy
        self.socket_timeout = socket_timeout
        self.hiredis_packing = hiredis_packing and HIREDIS_AVAILABLE
        self._redis: aioredis.Redis | None = None

    @property
    def redis(self) -> aioredis.Redis:
        """The open client.

        :raises RuntimeError: before :meth:`open`.
        """
        if self._redis is None:
            raise RuntimeError(f"{self.where} is not open")
        return self._redis

    async def open(self) -> None:
        """Create the client and check that the server answers.

        :raises ConfigError: the URL cannot be parsed.
        :raises TransientError: the server stayed unreachable through every retry.
        :raises PermanentError: the server refused the credentials.
        """
        self._create()
        await self.call("PING", lambda r: r.ping())

    async def open_once(self) -> None:
        """Like :meth:`open`, trying the server once: for checks, which want an answer now."""
        self._create()
        with self.errors("PING"):
            await self.redis.ping()

    async def check_once(self, problems: Callable[[], Awaitable[list[Problem]]]) -> list[Problem]:
        """Connect once and return ``problems()``, then close: for checks.

        :returns: also a problem with ``url`` when the server did not answer or refused.
        """
        try:
            await self.open_once()
            return await problems()
        except AsyncetlError as exc:
            return [Problem("url", str(exc))]
        finally:
            await self.close()

    async def stream_problems(self, stream: str) -> list[Problem]:
        """Why ``stream`` cannot be used as a stream: its key holds another type."""
        with self.errors(f"TYPE {stream}"):
            kind = _text(await self.redis.type(stream))
        if kind in ("stream", "none"):
            return []
        message = f"key {stream!r} on Redis at {self.endpoint} holds a {kind}, not a stream"
        return [Problem("stream", message)]

    def _create(self) -> None:
        # A unix:// or rediss:// URL names its own connection class, which wins over this.
        packing: dict[str, Any] = (
            {"connection_class": _HiredisPackedConnection} if self.hiredis_packing else {}
        )
        try:
            self._redis = aioredis.Redis.from_url(
                self.url,
                retry=Retry(NoBackoff(), 0),
                client_name=self.client_name,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=self.socket_timeout,
                decode_responses=self.decode_text,
                encoding_errors=_ERRORS if self.decode_text else "strict",
                **packing,
            )
        except ValueError as exc:
            raise ConfigError(
                f"cannot read {redact_url(self.url)!r}: {self._scrub(str(exc))}",
                where=self.where,
                key="url",
            ) from None

    async def close(self) -> None:
        """Close the client's connections; safe after a failed open."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def call(self, what: str, command: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Await ``command(client)``, retrying transient failures.

        :param what: the command, for messages, e.g. ``XACK orders``.
        :raises TransientError: when every retry failed transiently.
        :raises PermanentError: when Redis refused the command.
        """

        async def once() -> T:
            with self.errors(what):
                return await command(self.redis)

        return await retry_call(once, policy=self.policy, what=f"{what} on {self.endpoint}")

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map redis-py's exceptions raised inside to asyncetl's (the one boundary).

        :raises TransientError: connection refused, reset or timed out; server loading.
        :raises PermanentError: credentials refused; the server rejected ``what``.
        """
        try:
            yield
        except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
            raise PermanentError(
                f"Redis at {self.endpoint} refused the credentials of {self.where} "
                f"({self._scrub(str(exc))}); check the user and password in the url"
            ) from exc
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError) as exc:
            raise TransientError(
                f"Redis at {self.endpoint} is unreachable or dropped the connection during "
                f"{what} ({type(exc).__name__}: {self._scrub(str(exc))}); "
                "check that the server is running and that the url is right"
            ) from exc
        except rexc.RedisError as exc:
            raise PermanentError(
                f"Redis at {self.endpoint} refused {what} for {self.where}: {self._scrub(str(exc))}"
            ) from exc

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should a client message ever echo it."""
        password = urlsplit(self.url).password
        return text.replace(password, REDACTED) if password else text


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
