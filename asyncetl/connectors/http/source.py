"""HttpSource: records from a paginated JSON API."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from functools import partial

import anyio.to_thread
import orjson
from anyio.abc import ObjectSendStream
from yarl import URL

from asyncetl.connectors.http._client import (
    Response,
    absolute_url,
    create_client,
)
from asyncetl.connectors.http._settings import ClientSettings, client_settings
from asyncetl.connectors.http._sliding import SlidingWindow
from asyncetl.connectors.http._walk import Record, Since, Walk
from asyncetl.connectors.http.pagination import (
    MISSING,
    Page,
    PageState,
    PaginationConfig,
    Paginator,
    lookup,
    make_paginator,
)
from asyncetl.core.batch import Chunk, JsonValue, Position
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.observe import Lag, Progress
from asyncetl.core.redact import redact
from asyncetl.core.settings_check import positive_int

__all__ = ["HttpSource"]

#: Bodies larger than this are decoded in a worker thread, off the event loop.
_THREAD_DECODE_BYTES = 1 << 20


class _BadPage(TransientError):
    """A page body that is not JSON or lacks the records, raised to have it retried."""

    def __init__(self, page: Page) -> None:
        super().__init__(str(page.error))
        self.page = page


class HttpSource(Source[Record]):
    """Records from a paginated JSON API, resumable after any page or part of one.

    Each record is a JSON object found in the list at ``records_path`` of each
    page. The position is the page to fetch next and how many of its records
    were delivered (see :mod:`asyncetl.connectors.http._walk`). A page whose
    body is not JSON or lacks the records path is retried when
    ``retry_bad_body`` is set, and otherwise becomes a reject carrying its URL,
    status and raw body, so the pipeline's ``source_errors`` policy applies.

    :param url: the endpoint; fixed query parameters may be part of it. A
        ``user:password@`` in it becomes the client's basic auth, sent with
        every page and kept out of positions; so is a query parameter whose
        value is a remembered secret (from an env file or a secret file), put
        back on every request to this server.
    :param name: the source's name in checkpoints.
    :param client: headers, auth, timeouts, retries and limits: a
        :class:`ClientSettings` or a mapping of its fields (a spec's
        ``[source.client]`` table).
    :param pagination: ``link``, ``cursor``, ``page``, ``offset`` or ``until_empty``.
    :param records_path: dotted path to the record list in the body; empty
        when the body is the list.
    :param page_size: records asked per page, sent as ``size_param``; a string of
        digits is accepted too, so that a spec can take it from the environment.
    :param page_param: query parameter of the page number (``page``,
        ``until_empty``, and the first ``link`` request); empty to leave it out there.
    :param size_param: query parameter of the page size; empty to leave it out.
    :param offset_param: query parameter of the offset (``offset``).
    :param cursor_param: query parameter the cursor goes in (``cursor``).
    :param cursor_path: dotted path of the next cursor in the body (``cursor``).
    :param first_page: number of the first page.
    :param total_path: dotted path of the total record count in the body, if any.
    :param total_header: response header with the total record count, if any.
    :param since_param: query parameter taking the incremental lower bound.
    :param since_field: record field whose greatest value is the next bound.
    :param lag: subtracted from that value (seconds for ISO timestamps).
    :param max_concurrency: requests in flight at once (``page``, ``offset``,
        ``until_empty``), kept in flight while records are handed on; pages are
        delivered in order, and at most this many are held fetched but unsent.
    :param params: query parameters added to every request.
    :param retry_bad_body: retry a page whose body is unusable before rejecting it.
    :param flat: the client settings as flat keywords, as older specs give them
        (``timeout``, ``max_tries``, ``rate_limit``, ``auth``, ``headers``, ...; see
        :data:`~asyncetl.connectors.http._settings.FLAT_KEYS`).
    :raises ConfigError: on an invalid setting, or one given both flat and in ``client``.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "http",
        client: ClientSettings | Mapping[str, object] | None = None,
        pagination: str = "link",
        records_path: str = "",
        page_size: int | str = 100,
        page_param: str = "page",
        size_param: str = "limit",
        offset_param: str = "offset",
        cursor_param: str = "cursor",
        cursor_path: str = "",
        first_page: int = 1,
        total_path: str = "",
        total_header: str = "X-Total-Count",
        since_param: str | None = None,
        since_field: str | None = None,
        lag: float = 0.0,
        max_concurrency: int = 1,
        params: dict[str, str] | None = None,
        retry_bad_body: bool = False,
        **flat: object,
    ) -> None:
        self.name = name
        where = f"HttpSource {name!r}"
        self.where = where
        self.records_path = records_path
        self.total_path = total_path
        self.total_header = total_header
        self._records_read = 0
        self._total_told: int | None = None
        self.retry_bad_body = retry_bad_body
        self.max_concurrency = _max_concurrency(max_concurrency, pagination, where)
        self.since = _since(since_param, since_field, lag, where)
        self.pagination = PaginationConfig(
            style=pagination,
            page_size=_page_size(page_size, where),
            page_param=page_param,
            size_param=size_param,
            offset_param=offset_param,
            cursor_param=cursor_param,
            cursor_path=cursor_path,
            first_page=first_page,
        )
        settings = client_settings(
            client, flat, where=where, owner="HttpSource", accepted=_KEYWORDS
        )
        configured = absolute_url(url, where)
        full = self._with_params(configured, params or {})
        # The base every page's URL is made of holds no secret; the client puts
        # the configured ones back on each request.
        self.client, base = create_client(full, settings, where=where)
        self.url = self.client.strip_secrets(configured)
        self.pager: Paginator = make_paginator(self.pagination, base, where=where)
        #: what this source reads, redacted; positions carry it to be refused elsewhere
        self.endpoint = redact(self.client.show(self.client.credentials_stripped(full)))

    def _with_params(self, url: URL, params: dict[str, str]) -> URL:
        fixed = dict(params)
        if self.pagination.size_param:
            fixed[self.pagination.size_param] = str(self.pagination.page_size)
        return url.update_query(fixed) if fixed else url

    def __repr__(self) -> str:
        return (
            f"HttpSource({self.client.show(self.url)!r}, name={self.name!r}, "
            f"pagination={self.pagination.style!r}, headers={self.client.shown_headers()})"
        )

    async def open(self) -> None:
        """Open the session and read credentials from the environment.

        :raises ConfigError: when a credential's environment variable is not set.
        """
        await self.client.open()

    async def aclose(self) -> None:
        """Close the session."""
        await self.client.close()

    async def check(self) -> list[Problem]:
        """Whether the first page answers one GET with 2xx, as a fresh read would ask it.

        A GET reads only, so asking changes nothing on the server; HEAD is not
        used because many APIs refuse it. No retry, and the body is not parsed.
        """
        try:
            await self.client.open()
            await self.client.request_once("GET", self.pager.url(self.pager.first({}), {}))
        except ConfigError as exc:  # a credential's environment variable is not set
            return [Problem(None, str(exc))]
        except AsyncetlError as exc:
            return [Problem("url", str(exc))]
        finally:
            await self.client.close()
        return []

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[Record]]:
        """Yield the records of each page in order, one page at a time, strictly after ``after``.

        A pipeline calls :meth:`produce` instead, which keeps ``max_concurrency``
        requests in flight.

        :raises TransientError: when a page still fails after the retries.
        :raises PermanentError: on a status or page that retrying cannot fix.
        """
        walk = self._walk(after)
        while not walk.done:
            page = await self._page(walk.state, await self._fetch(walk.state, walk.extra))
            for chunk in walk.take(page, max_chunk):
                yield chunk

    async def produce(
        self, after: Position, send: ObjectSendStream[Chunk[Record]], *, max_chunk: int
    ) -> None:
        """Send the records of each page in order, keeping ``max_concurrency`` requests in flight.

        With ``max_concurrency`` 1 this iterates :meth:`read`. Otherwise a sliding
        window fetches ahead while records are sent, and holds at most
        ``max_concurrency`` pages fetched but not yet sent.

        :raises TransientError: when a page still fails after the retries.
        :raises PermanentError: on a status or page that retrying cannot fix.
        """
        if self.max_concurrency == 1:
            await super().produce(after, send, max_chunk=max_chunk)
            return
        window = SlidingWindow(self._fetch, self._page, self._walk(after), self.max_concurrency)
        await window.run(send, max_chunk)

    def check_position(self, position: Position) -> None:
        """Refuse a position these pagination settings did not write, or written for another URL.

        :raises ConfigError: naming both endpoints (redacted) and how to reset.
        """
        self._walk(position)

    def _walk(self, after: Position) -> Walk:
        return Walk(
            self.pager, self.since, self._stripped(after), endpoint=self.endpoint, where=self.where
        )

    def _stripped(self, after: Position) -> Position:
        """``after`` with no secret in its page URL (one written by an earlier version may hold
        one); the client puts the configured ones back on the request."""
        if self.pager.key != "url" or not isinstance(after, dict):
            return after
        value = after.get("url")
        try:
            url = URL(value) if isinstance(value, str) else None
        except ValueError:
            return after  # the walk refuses it, in words
        if url is None:
            return after
        stripped = self.client.strip_secrets(url)
        if stripped.raw_query_string == url.raw_query_string:
            return after
        return {**after, "url": str(url.with_query(stripped.query))}

    def decode(self, raw: JsonValue) -> Record:
        """A dead-lettered record back as a record.

        :raises PermanentError: for a dead-lettered page or a record that is not an object.
        """
        if isinstance(raw, dict) and set(raw) == {"url", "status", "body"}:
            raise PermanentError(
                f"the dead letter is the whole page {raw['url']}, not a record; once the "
                "server serves it well, reset the checkpoint to before that page to read it again"
            )
        if not isinstance(raw, dict):
            raise PermanentError(f"{raw!r} is not a JSON object, so it cannot be a record")
        return raw

    # -- fetching ----------------------------------------------------------

    def _fetch(self, state: PageState, extra: dict[str, str]) -> Awaitable[Page | Response]:
        """The page at ``state``, or its response still to be parsed by :meth:`_page`.

        Only with ``retry_bad_body`` is the body parsed here, inside the retried
        request, so that a bad one is fetched again. Otherwise parsing waits for
        the page's turn, so that parallel fetches hold bodies, not records. (Not a
        coroutine itself: a request in flight holds one frame fewer.)
        """
        url = self.pager.url(state, extra)
        if not self.retry_bad_body:
            return self.client.request("GET", url)
        return self._fetch_parsed(state, url)

    async def _fetch_parsed(self, state: PageState, url: URL) -> Page:
        try:
            return await self.client.request_parsed("GET", url, partial(self._parse, state))
        except _BadPage as exc:  # still bad after the retries: reject it
            return exc.page

    async def _page(self, state: PageState, fetched: Page | Response) -> Page:
        page = fetched if isinstance(fetched, Page) else await self._parse(state, fetched)
        # Each page comes here once, in order, whether read one at a time or fetched ahead.
        self._records_read += len(page.items or ())
        if page.total is not None:
            self._total_told = page.total
        return page

    def progress(self) -> Sequence[Progress]:
        """Records read in this run, of the total the server tells (if it does).

        A resumed walk counts from where it resumed, against the whole total.
        """
        return [Progress(self._records_read, self._total_told, "records")]

    def upstream_lag(self) -> Sequence[Lag]:
        """Pages left to read, when the server tells its total."""
        if self._total_told is None:
            return []
        left = max(0, self._total_told - self._records_read)
        return [Lag(float(math.ceil(left / self.pagination.page_size)), "pages")]

    async def _parse(self, state: PageState, response: Response) -> Page:
        body = response.body
        try:
            if len(body) > _THREAD_DECODE_BYTES:
                document: JsonValue = await anyio.to_thread.run_sync(orjson.loads, body)
            else:
                document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._bad(state, response, f"is not valid JSON ({exc})")
        return self._found(state, response, document)

    def _found(self, state: PageState, response: Response, document: JsonValue) -> Page:
        items = lookup(document, self.records_path)
        if not isinstance(items, list):
            return self._bad(state, response, _missing_records(document, self.records_path))
        return Page(  # without the body, needed only to dead-letter a bad page
            state,
            response.shown_url,
            response.status,
            items,
            links=self._links(response) if response.links else None,
            cursor=lookup(document, self.pagination.cursor_path)
            if self.pagination.cursor_path
            else MISSING,
            total=self._total(document, response),
            # A list of the types counts the dicts faster than countOf over a map.
            objects_only=list(map(type, items)).count(dict) == len(items),
        )

    def _bad(self, state: PageState, response: Response, problem: str) -> Page:
        error = PermanentError(
            f"GET {response.shown_url} answered {response.status} with a body that {problem}; "
            "check records_path, or set retry_bad_body = true if the server recovers on retry"
        )
        page = Page(
            state,
            response.shown_url,
            response.status,
            None,
            response.body,
            links=self._links(response),
            error=error,
        )
        if self.retry_bad_body:
            raise _BadPage(page)
        return page

    def _links(self, response: Response) -> dict[str, str]:
        """``Link`` targets without the query-string API key: they end up in positions."""
        return {rel: str(self.client.strip_secrets(link)) for rel, link in response.links.items()}

    def _total(self, document: JsonValue, response: Response) -> int | None:
        value: object = MISSING
        if self.total_path:
            value = lookup(document, self.total_path)
        if not isinstance(value, int) and self.total_header:
            value = response.headers.get(self.total_header, "")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


#: the keywords of HttpSource itself, listed when an unknown one is given
_KEYWORDS = [name for name in inspect.signature(HttpSource).parameters if name != "flat"]


def _missing_records(document: JsonValue, path: str) -> str:
    found = lookup(document, path)
    if found is MISSING:
        keys = ", ".join(sorted(document)[:10]) if isinstance(document, dict) else ""
        return f"has nothing at records_path {path!r}" + (f" (its keys: {keys})" if keys else "")
    return f"has a {type(found).__name__} at records_path {path!r}, not a list"


def _page_size(value: int | str, where: str) -> int:
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ConfigError(
                f"must be a positive integer, not {value!r}", where=where, key="page_size"
            )
        return int(value)
    return value


def _max_concurrency(value: int, style: str, where: str) -> int:
    positive_int(value, where, "max_concurrency")
    if value > 1 and style in ("link", "cursor"):
        raise ConfigError(
            f"must be 1 with pagination {style!r}, where each page names the next; use "
            "'page', 'offset' or 'until_empty' to fetch pages in parallel",
            where=where,
            key="max_concurrency",
        )
    return value


def _since(param: str | None, field: str | None, lag: float, where: str) -> Since | None:
    if not param and not field:
        return None
    if not param or not field:
        raise ConfigError(
            "since_param and since_field go together; set both or neither",
            where=where,
            key="since_param" if not param else "since_field",
        )
    if isinstance(lag, bool) or not isinstance(lag, int | float) or lag < 0:
        raise ConfigError(f"must be a non-negative number, not {lag!r}", where=where, key="lag")
    return Since(param, field, float(lag))
