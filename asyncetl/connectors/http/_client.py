"""The HTTP client both connectors share: one aiohttp session, auth, pacing, retries.

This module is the one boundary where aiohttp's exceptions and HTTP statuses
become :class:`TransientError` (retried) or :class:`PermanentError`. Every
request goes through :meth:`HttpClient.request`, which retries ONE request at a
time with the client's :class:`asyncetl.core.retry.Retrier` (built once per
client, not per request) and waits its turn at the
host's :class:`~asyncetl.connectors.http._ratelimit.HostLimiter` before each
attempt. URLs and headers are redacted wherever they are shown.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from asyncetl.connectors.http._ratelimit import HostLimiter, Limiters
from asyncetl.core.errors import ConfigError, ConnectorError, PermanentError, TransientError
from asyncetl.core.retry import Retrier, RetryPolicy, parse_retry_after

__all__ = [
    "AUTH_KINDS",
    "AuthConfig",
    "ClientConfig",
    "HttpClient",
    "HttpStatusError",
    "Response",
    "absolute_url",
    "create_client",
    "positive_int",
    "redact_headers",
    "redact_url",
]

T = TypeVar("T")

REDACTED = "***"
AUTH_KINDS = ("bearer", "basic", "header", "query")
#: Statuses worth retrying; 429 and 503 with ``Retry-After`` also pause the host.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_PAUSING_STATUSES = frozenset({429, 503})
_SECRET_NAME = re.compile(
    r"token|key|secret|passw|pwd|signature|^sig$|auth|credential|session|cookie", re.IGNORECASE
)
_BODY_START = 200
#: Query parameter names whose secrecy a client remembers.
_NAMES_KEPT = 64


def _param_names(url: URL) -> list[str]:
    """The names of ``url``'s query parameters, read off the raw query string when plain.

    Cheaper than ``url.query``, which decodes every value; a name with an escape
    in it is decoded that way, so that it is judged as the server reads it.
    """
    names = [pair.partition("=")[0] for pair in url.raw_query_string.split("&") if pair]
    if any("%" in name or "+" in name for name in names):
        return list(url.query)
    return names


def redact_url(url: str | URL, secret_params: Collection[str] = ()) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    parsed = URL(url) if isinstance(url, str) else url
    hidden = {name.lower() for name in secret_params}
    secret = [name for name in parsed.query if name.lower() in hidden or _SECRET_NAME.search(name)]
    if parsed.password is None and not secret:
        return str(parsed)
    if parsed.password is not None:
        parsed = parsed.with_password(REDACTED)
    if secret:
        query = [
            (name, REDACTED if name in secret else value) for name, value in parsed.query.items()
        ]
        parsed = parsed.with_query(query)
    return str(parsed).replace("%2A%2A%2A", REDACTED)


def redact_headers(
    headers: Mapping[str, str], secret_names: Collection[str] = ()
) -> dict[str, str]:
    """``headers`` with credentials and secret-looking values replaced by ``***``."""
    hidden = {name.lower() for name in secret_names}
    return {
        name: REDACTED if name.lower() in hidden or _SECRET_NAME.search(name) else value
        for name, value in headers.items()
    }


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Where credentials come from: always the environment, never the spec.

    :param kind: ``bearer``, ``basic``, ``header`` (API key header), ``query``
        (API key query parameter) or ``None``.
    :param api_key_name: header or query parameter name of the API key
        (default ``X-API-Key`` for headers, ``api_key`` for queries).
    """

    kind: str | None = None
    token_env: str = "API_TOKEN"  # noqa: S105  (a variable name, not a secret)
    username_env: str = "API_USERNAME"
    password_env: str = "API_PASSWORD"  # noqa: S105  (a variable name, not a secret)
    api_key_env: str = "API_KEY"
    api_key_name: str = ""

    def check(self, where: str) -> None:
        """:raises ConfigError: when ``kind`` is unknown."""
        if self.kind not in (None, "", *AUTH_KINDS):
            raise ConfigError(
                f"must be one of {', '.join(AUTH_KINDS)} or left out, not {self.kind!r}",
                where=where,
                key="auth",
            )

    @property
    def key_name(self) -> str:
        """The API key's header or query parameter name."""
        return self.api_key_name or ("api_key" if self.kind == "query" else "X-API-Key")

    @property
    def secret_param(self) -> str | None:
        """The query parameter carrying the API key, if any."""
        return self.key_name if self.kind == "query" else None

    def resolve(self, where: str) -> _Credentials:
        """Read the credentials from the environment.

        :raises ConfigError: naming the variable that is not set.
        """
        creds = _Credentials()
        if self.kind == "bearer":
            creds.headers["Authorization"] = "Bearer " + _env(self.token_env, where, "token_env")
        elif self.kind == "basic":
            user = _env(self.username_env, where, "username_env")
            password = _env(self.password_env, where, "password_env")
            pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            creds.headers["Authorization"] = "Basic " + pair
            creds.secrets.append(password)
        elif self.kind == "header":
            creds.headers[self.key_name] = _env(self.api_key_env, where, "api_key_env")
        elif self.kind == "query":
            creds.params[self.key_name] = _env(self.api_key_env, where, "api_key_env")
        creds.secrets.extend(creds.headers.values())
        creds.secrets.extend(creds.params.values())
        return creds


@dataclass(slots=True)
class _Credentials:
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def _env(name: str, where: str, key: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set; set it to the credential",
            where=where,
            key=key,
        )
    return value


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything about how to talk to a server, checked on construction.

    :param where: names the connector in messages, e.g. ``HttpSource 'orders'``.
    :param rate_limit: requests per second per host; ``None`` for no limit.
    :param timeout: total seconds for one request, body included.
    :param connect_timeout: seconds to get a connection.
    :param read_timeout: seconds to wait for each read from the socket; ``None`` for no
        limit of its own, the total ``timeout`` bounding the reads with the rest (a read
        timer is re-armed on every read, which costs a request more than it guards).
    :param limit_per_host: connections open to one host at most.
    """

    where: str
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limit: float | None = None
    timeout: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float | None = None
    limit_per_host: int = 16

    def __post_init__(self) -> None:
        self.auth.check(self.where)
        for key in ("timeout", "connect_timeout"):
            _positive(getattr(self, key), self.where, key)
        if self.read_timeout is not None:
            _positive(self.read_timeout, self.where, "read_timeout")
        if self.rate_limit is not None:
            _positive(self.rate_limit, self.where, "rate_limit")
        positive_int(self.limit_per_host, self.where, "limit_per_host")


def _positive(value: object, where: str, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"must be a positive number, not {value!r}", where=where, key=key)


@dataclass(slots=True)  # not frozen: one is made per request, and frozen ones init slowly
class Response:
    """A response read in full.

    :param url: the URL requested, without the query-string API key.
    :param shown_url: ``url`` redacted, for messages and dead letters.
    :param links: ``Link`` header targets by ``rel``, as absolute URLs.
    """

    method: str
    url: URL
    shown_url: str
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    links: Mapping[str, str]


class HttpStatusError(PermanentError):
    """The server answered with a status retrying will not change.

    :ivar status: the HTTP status.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


Parse = Callable[[Response], Awaitable[T]]


def _links(response: aiohttp.ClientResponse) -> dict[str, str]:
    """``Link`` header targets by ``rel``; aiohttp parses them only when asked."""
    if "Link" not in response.headers:
        return {}
    return {str(rel): str(link["url"]) for rel, link in response.links.items()}


class HttpClient:
    """One aiohttp session for one connector's lifetime.

    :param config: timeouts, auth, retries and limits.
    :param limiters: per-host pacing and pause gates; one set per connector.
    """

    def __init__(self, config: ClientConfig, *, limiters: Limiters | None = None) -> None:
        self.config = config
        self.limiters = limiters or Limiters(config.rate_limit, max_pause=config.retry.max_delay)
        self._retrier = Retrier(config.retry)
        self._session: aiohttp.ClientSession | None = None
        self._creds = _Credentials()
        self._secret_params = [config.auth.key_name] if config.auth.secret_param else []
        self._hidden_params = {name.lower() for name in self._secret_params}
        self._secret_names: dict[str, bool] = {}
        self._secret_headers = [config.auth.key_name] if config.auth.kind == "header" else []

    async def open(self) -> None:
        """Read credentials and open the session.

        :raises ConfigError: when a credential's environment variable is not set.
        """
        if self._session is not None:
            return
        cfg = self.config
        self._creds = cfg.auth.resolve(cfg.where)
        timeout = aiohttp.ClientTimeout(
            total=cfg.timeout, connect=cfg.connect_timeout, sock_read=cfg.read_timeout
        )
        connector = aiohttp.TCPConnector(
            limit=max(100, cfg.limit_per_host), limit_per_host=cfg.limit_per_host
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            headers={**cfg.headers, **self._creds.headers},
        )

    async def close(self) -> None:
        """Close the session; safe to call twice or after a failed open."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def is_open(self) -> bool:
        """Whether the session is open."""
        return self._session is not None

    def show(self, url: str | URL) -> str:
        """``url`` redacted for messages."""
        parsed = URL(url) if isinstance(url, str) else url
        if parsed.password is None and not any(map(self._is_secret, _param_names(parsed))):
            return str(parsed)  # the common case, shown once per request
        return redact_url(parsed, self._secret_params)

    def _is_secret(self, name: str) -> bool:
        """Whether a query parameter's value is hidden, as :func:`redact_url` decides."""
        secret = self._secret_names.get(name)
        if secret is None:
            hidden = name.lower() in self._hidden_params
            secret = hidden or _SECRET_NAME.search(name) is not None
            if len(self._secret_names) < _NAMES_KEPT:  # names from a server's links are many
                self._secret_names[name] = secret
        return secret

    def shown_headers(self) -> dict[str, str]:
        """The headers sent with every request, redacted."""
        return redact_headers({**self.config.headers, **self._creds.headers}, self._secret_headers)

    def strip_secrets(self, url: str | URL) -> URL:
        """``url`` without the query-string API key, fit to keep in a checkpoint."""
        parsed = URL(url) if isinstance(url, str) else url
        name = self.config.auth.secret_param
        return parsed.without_query_params(name) if name and name in parsed.query else parsed

    # request() and request_parsed() are not coroutines themselves: they return the
    # retrier's, so that a request in flight holds two frames fewer (fewer objects
    # for the garbage collector to carry along while it waits).

    def request(
        self,
        method: str,
        url: URL,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Awaitable[Response]:
        """Send one request with retries; awaited, it gives the 2xx response.

        :raises TransientError: when the retries ran out on a transient failure.
        :raises HttpStatusError: on a status retrying cannot fix (most 4xx).
        :raises PermanentError: on another failure retrying cannot fix.
        """
        return self._retried(method, url, body, headers, None)

    def request_parsed(
        self,
        method: str,
        url: URL,
        parse: Parse[T],
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Awaitable[T]:
        """Like :meth:`request`, with ``parse`` run on each 2xx response inside the retried call.

        ``parse`` may raise :class:`TransientError` to have a bad body retried.
        """
        return self._retried(method, url, body, headers, parse)

    def _retried(
        self,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        parse: Parse[Any] | None,
    ) -> Awaitable[Any]:
        url = self.strip_secrets(url)
        return self._attempt(method, url, self.show(url), body, headers, parse, first=True)

    async def _attempt(
        self,
        method: str,
        url: URL,
        shown: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        parse: Parse[Any] | None,
        *,
        first: bool = False,
    ) -> Any:
        """One try: wait for the host's turn, send, read, check the status, parse.

        The first try hands a transient failure over to the retrier, which makes
        the next ones; so a request that succeeds at once is one coroutine.
        """
        if self._session is None:
            raise RuntimeError(f"{self.config.where} was used before open()")
        started = time.monotonic() if first else 0.0
        try:
            limiter = self.limiters.for_url(url)
            if not limiter.free:
                await limiter.acquire()
            target = url.update_query(self._creds.params) if self._creds.params else url
            try:
                async with self._session.request(
                    method, target, data=body, headers=headers
                ) as resp:
                    response = Response(
                        method,
                        url,
                        shown,
                        resp.status,
                        resp.reason or "",
                        resp.headers,
                        await resp.read(),
                        _links(resp),
                    )
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._mapped_error(exc, method, shown) from exc
            if not 200 <= response.status < 300:
                raise self._refused(response, limiter)
            return response if parse is None else await parse(response)
        except self._retrier.transient as exc:
            if not first:
                raise
            failure = exc
        # A partial rather than a closure: fewer objects live as long as the request.
        again = partial(self._attempt, method, url, shown, body, headers, parse)
        return await self._retrier.resume(again, failure, what=f"{method} {shown}", started=started)

    def _refused(self, response: Response, limiter: HostLimiter) -> Exception:
        wait = None
        if response.status in _PAUSING_STATUSES:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait:  # everyone waits, not only this task; zero means "use the backoff"
                limiter.pause(wait)
        return self._status_error(response, wait)

    def _status_error(self, response: Response, wait: float | None) -> Exception:
        status, start = response.status, self._body_start(response.body)
        head = f"{response.method} {response.shown_url} answered {status} {response.reason}{start}"
        if status in TRANSIENT_STATUSES:
            advice = (
                "the server is rate limiting; lower rate_limit or max_concurrency"
                if status == 429
                else "the server is failing or overloaded; try again later"
            )
            return TransientError(f"{head}; {advice}", retry_after=wait)
        advice = (
            "check the credentials"
            if status in (401, 403)
            else "check the URL, the query parameters and the request"
        )
        return HttpStatusError(f"{head}; {advice}", status=status)

    def _body_start(self, body: bytes) -> str:
        if not body:
            return ""
        text = " ".join(body[:_BODY_START].decode("utf-8", "replace").split())
        return f": {self.scrub(text)!r}" + ("…" if len(body) > _BODY_START else "")

    def scrub(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for secret in self._creds.secrets:
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        return text

    def _mapped_error(self, exc: Exception, method: str, shown: str) -> ConnectorError:
        """The error to raise for ``exc``, an aiohttp failure or a timeout: the one boundary."""
        cfg = self.config
        if isinstance(exc, TimeoutError):
            read = "" if cfg.read_timeout is None else f"read {cfg.read_timeout}s, "
            return TransientError(
                f"{method} {shown} timed out (connect {cfg.connect_timeout}s, {read}"
                f"total {cfg.timeout}s); the server is slow or unreachable, "
                "try again later or raise the timeouts"
            )
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.InvalidURL | aiohttp.TooManyRedirects):
            return PermanentError(
                f"{method} {shown} failed: {type(exc).__name__}; check the URL, its redirects "
                "and its TLS certificate"
            )
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return TransientError(
                f"{method} {shown} failed: {type(exc).__name__}: {self.scrub(str(exc))}; "
                "check that the server is up and reachable"
            )
        return PermanentError(
            f"{method} {shown} failed: {type(exc).__name__}: {self.scrub(str(exc))}"
        )


def create_client(
    where: str,
    *,
    headers: Mapping[str, str] | None,
    auth: AuthConfig,
    max_tries: int,
    max_time: float,
    base_delay: float,
    max_delay: float,
    rate_limit: float | None,
    timeout: float,
    connect_timeout: float,
    read_timeout: float | None,
    limit_per_host: int,
) -> HttpClient:
    """A client from a connector's constructor arguments, checked.

    :raises ConfigError: on an invalid setting, naming the connector.
    """
    try:
        retry = RetryPolicy(max_tries, max_time, base_delay, max_delay)
    except ConfigError as exc:
        raise ConfigError(str(exc), where=where) from None
    config = ClientConfig(
        where,
        dict(headers or {}),
        auth,
        retry,
        rate_limit,
        timeout,
        connect_timeout,
        read_timeout,
        limit_per_host,
    )
    return HttpClient(config)


def positive_int(value: object, where: str, key: str) -> int:
    """``value`` when it is a positive integer.

    :raises ConfigError: otherwise, naming ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, not {value!r}", where=where, key=key)
    return value


def absolute_url(url: str, where: str) -> URL:
    """``url`` parsed, when it is an absolute http(s) URL.

    :raises ConfigError: otherwise.
    """
    parsed = URL(url)
    if not parsed.absolute or parsed.scheme not in ("http", "https"):
        raise ConfigError(f"must be an absolute http(s) URL, not {url!r}", where=where, key="url")
    return parsed
