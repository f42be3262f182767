"""The HTTP client both connectors share: one aiohttp session, auth, pacing, retries.

This module is the one boundary where aiohttp's exceptions and HTTP statuses
become :class:`TransientError` (retried) or :class:`PermanentError`. Every
request goes through :meth:`HttpClient.request`, which retries ONE request at a
time with the client's :class:`asyncetl.core.retry.Retrier` (built once per
client, not per request) and waits its turn at the
host's :class:`~asyncetl.connectors.http._ratelimit.HostLimiter` before each
attempt. URLs and headers are redacted wherever they are shown.

A URL that a connector keeps (in a position, a page's state, a dead letter)
holds no credential: :meth:`HttpClient.strip_secrets` removes its userinfo, the
query-string API key of ``auth``, and every query parameter whose value is a
remembered secret (:func:`asyncetl.core.redact.is_secret`: what a spec took from
an env file or a secret file). The configured URL's own such parameters are
put back on every request to its origin, so that page 2, or page N after a
resume, carries them exactly as the configured URL says.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from asyncetl.connectors.http._ratelimit import HostLimiter, Limiters
from asyncetl.connectors.http._settings import Auth, ClientSettings, is_secret_name
from asyncetl.core.errors import ConfigError, ConnectorError, PermanentError, TransientError
from asyncetl.core.redact import is_secret, redact_urls
from asyncetl.core.retry import Retrier, parse_retry_after

__all__ = [
    "HttpClient",
    "HttpStatusError",
    "Response",
    "absolute_url",
    "create_client",
    "redact_headers",
    "redact_url",
    "without_userinfo",
]

T = TypeVar("T")

REDACTED = "***"
#: Statuses worth retrying; 429 and 503 with ``Retry-After`` also pause the host.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_PAUSING_STATUSES = frozenset({429, 503})
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
    secret = [name for name in parsed.query if name.lower() in hidden or is_secret_name(name)]
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
        name: REDACTED if name.lower() in hidden or is_secret_name(name) else value
        for name, value in headers.items()
    }


def without_userinfo(url: URL) -> URL:
    """``url`` without ``user:password@``."""
    return url.with_user(None) if url.raw_user is not None else url


@dataclass(slots=True)
class _Credentials:
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def _resolve(auth: Auth, where: str) -> _Credentials:
    """The credentials ``auth`` names, read from the environment (or the URL's userinfo).

    :raises ConfigError: naming the variable that is not set.
    """
    creds = _Credentials()
    if auth.kind == "bearer":
        creds.headers["Authorization"] = "Bearer " + _env(auth.token_env, where, "token_env")
    elif auth.kind == "basic":
        if auth.userinfo is not None:
            user, password = auth.userinfo
        else:
            user = _env(auth.username_env, where, "username_env")
            password = _env(auth.password_env, where, "password_env")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        creds.headers["Authorization"] = "Basic " + pair
        creds.secrets.append(password)
    elif auth.kind == "header":
        creds.headers[auth.key_name] = _env(auth.api_key_env, where, "api_key_env")
    elif auth.kind == "query":
        creds.params[auth.key_name] = _env(auth.api_key_env, where, "api_key_env")
    creds.secrets.extend(creds.headers.values())
    creds.secrets.extend(creds.params.values())
    return creds


def _env(name: str, where: str, key: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set; set it to the credential",
            where=where,
            key=key,
        )
    return value


def _header_secrets(settings: ClientSettings) -> list[str]:
    """The values of the secret headers, and the token after a scheme such as ``Bearer``."""
    secrets: list[str] = []
    for name, value in settings.headers.items():
        if settings.is_secret_header(name):
            secrets.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                secrets.append(token.strip())
    return secrets


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

    :param settings: headers, auth, timeouts, retries and limits.
    :param where: names the connector in messages, e.g. ``HttpSource 'orders'``.
    :param limiters: per-host pacing and pause gates; one set per connector.
    """

    def __init__(
        self, settings: ClientSettings, *, where: str, limiters: Limiters | None = None
    ) -> None:
        self.settings = settings
        self.where = where
        self.limiters = limiters or Limiters(
            settings.limits.requests_per_second, max_pause=settings.retry.max_delay
        )
        self._retrier = Retrier(settings.retry)
        self._session: aiohttp.ClientSession | None = None
        self._creds = _Credentials()
        auth = settings.auth
        self._secret_params = [auth.key_name] if auth.secret_param else []
        self._hidden_params = {name.lower() for name in self._secret_params}
        self._secret_names: dict[str, bool] = {}
        self._secret_headers = [*settings.secret_headers]
        if auth.kind == "header":
            self._secret_headers.append(auth.key_name)
        self._header_secrets = _header_secrets(settings)
        #: the configured URL's secret query parameters, sent to its origin only
        self._url_params: list[tuple[str, str]] = []
        self._url_origin: URL | None = None
        self._stripped = {auth.secret_param} - {""}

    async def open(self) -> None:
        """Read credentials and open the session.

        :raises ConfigError: when a credential's environment variable is not set.
        """
        if self._session is not None:
            return
        settings = self.settings
        self._creds = _resolve(settings.auth, self.where)
        timeout = aiohttp.ClientTimeout(
            total=settings.timeout.total,
            connect=settings.timeout.connect,
            sock_read=settings.timeout.read,
        )
        per_host = settings.limits.connections_per_host
        connector = aiohttp.TCPConnector(limit=max(100, per_host), limit_per_host=per_host)
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            headers={**settings.headers, **self._creds.headers},
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
            secret = hidden or is_secret_name(name)
            if len(self._secret_names) < _NAMES_KEPT:  # names from a server's links are many
                self._secret_names[name] = secret
        return secret

    def shown_headers(self) -> dict[str, str]:
        """The headers sent with every request, redacted."""
        shown = {**self.settings.headers, **self._creds.headers}
        return redact_headers(shown, self._secret_headers)

    def adopt(self, url: URL) -> URL:
        """``url`` stripped of secrets, whose secret query parameters go with every request.

        Those parameters are put back on each request to ``url``'s origin (never
        to another server a link may point at), and scrubbed from messages.
        """
        stripped = self.strip_secrets(url)
        secret = {name for name, value in url.query.items() if is_secret(value)}
        if secret:
            self._url_params = [(n, v) for n, v in url.query.items() if n in secret]
            self._url_origin = url.origin()
            self._stripped.update(secret)
            self._header_secrets.extend(value for _name, value in self._url_params)
        return stripped

    def strip_secrets(self, url: str | URL) -> URL:
        """``url`` without userinfo or a secret query parameter, fit to keep in a checkpoint.

        A secret parameter is the query-string API key of ``auth``, one the
        configured URL held a secret in, or one whose value is a remembered
        secret other than a plain number: a server's link to page 10 keeps its
        ``page=10`` when an env file gave ``page_size`` 10 (a key of digits
        alone is kept out by its name, being in the configured URL). ``url``
        itself comes back when it holds none of them.
        """
        parsed = without_userinfo(URL(url) if isinstance(url, str) else url)
        secret = self._params_to_strip(parsed)
        return parsed.without_query_params(*secret) if secret else parsed

    def _with_url_params(self, url: URL, *, hidden: bool = False) -> URL:
        """``url`` with the configured URL's secret parameters, when it goes to that server."""
        if not self._url_params or url.origin() != self._url_origin:
            return url
        if hidden:
            return url.extend_query([(name, REDACTED) for name, _value in self._url_params])
        return url.extend_query(self._url_params)

    def _shown(self, url: URL) -> str:
        """The request to ``url`` as messages show it: its secret parameters as ``***``."""
        if not self._url_params:
            return self.show(url)
        return self.show(self._with_url_params(url, hidden=True)).replace("%2A%2A%2A", REDACTED)

    def _params_to_strip(self, url: URL) -> set[str]:
        raw = url.raw_query_string
        if not raw:
            return set()
        if "%" in raw or "+" in raw:  # judged decoded, as the server reads them
            pairs: Iterable[tuple[str, str]] = url.query.items()
        else:  # cheaper than url.query, which decodes every value; once per request
            pairs = (pair.partition("=")[::2] for pair in raw.split("&") if pair)
        return {
            name
            for name, value in pairs
            if name in self._stripped or (is_secret(value) and not value.isdigit())
        }

    def credentials_stripped(self, url: URL) -> URL:
        """``url`` without userinfo or the query-string API key of ``auth`` (its other
        parameters kept in place, for an identity that earlier versions wrote too)."""
        parsed = without_userinfo(url)
        name = self.settings.auth.secret_param
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
        return self._attempt(method, url, self._shown(url), body, headers, parse, first=True)

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
            raise RuntimeError(f"{self.where} was used before open()")
        started = time.monotonic() if first else 0.0
        try:
            limiter = self.limiters.for_url(url)
            if not limiter.free:
                await limiter.acquire()
            response = await self._send(self._session, method, url, shown, body, headers)
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

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        shown: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> Response:
        target = self._with_url_params(url)
        if self._creds.params:
            target = target.update_query(self._creds.params)
        try:
            async with session.request(method, target, data=body, headers=headers) as resp:
                return Response(
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

    async def request_once(self, method: str, url: URL) -> None:
        """Send one request without a body, with no retry and no pacing, for checks.

        :raises ConnectorError: when it fails or answers other than 2xx.
        """
        if self._session is None:
            raise RuntimeError(f"{self.where} was used before open()")
        url = self.strip_secrets(url)
        response = await self._send(self._session, method, url, self._shown(url), None, None)
        if not 200 <= response.status < 300:
            raise self._status_error(response, None)

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
        """``text`` with every credential value replaced by ``***``.

        Credentials are those of ``auth`` (the URL's password included) and the
        values of secret headers.
        """
        for secret in (*self._creds.secrets, *self._header_secrets):
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        return text

    def _mapped_error(self, exc: Exception, method: str, shown: str) -> ConnectorError:
        """The error to raise for ``exc``, an aiohttp failure or a timeout: the one boundary."""
        limits = self.settings.timeout
        if isinstance(exc, TimeoutError):
            read = "" if limits.read is None else f"read {limits.read}s, "
            return TransientError(
                f"{method} {shown} timed out (connect {limits.connect}s, {read}"
                f"total {limits.total}s); the server is slow or unreachable, "
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


def create_client(url: URL, settings: ClientSettings, *, where: str) -> tuple[HttpClient, URL]:
    """A client for ``url``, and ``url`` fit to keep in positions and keys.

    The URL's ``user:password@`` moves into the client's basic auth, so that it
    goes with every request, the next pages' too, and the URL kept holds none.

    :raises ConfigError: when the URL carries credentials and ``auth`` is set too.
    """
    if url.raw_user is not None:
        try:
            auth = settings.auth.with_userinfo(url.user or "", url.password or "")
        except ConfigError as exc:
            raise ConfigError(str(exc).removeprefix("url: "), where=where, key="url") from None
        settings = dataclasses.replace(settings, auth=auth)
    client = HttpClient(settings, where=where)
    return client, client.adopt(url)


def absolute_url(url: str, where: str) -> URL:
    """``url`` parsed, when it is an absolute http(s) URL.

    :raises ConfigError: otherwise, showing the URL without its password.
    """
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"is not a URL ({redact_urls(str(exc))}): {redact_urls(str(url))!r}",
            where=where,
            key="url",
        ) from None
    if not parsed.absolute or parsed.scheme not in ("http", "https"):
        raise ConfigError(
            f"must be an absolute http(s) URL, not {redact_url(parsed)!r}", where=where, key="url"
        )
    return parsed
