"""The five pagination styles, as pure logic over fetched pages.

A page is identified by its *state*: its URL (``link``), the cursor that asked
for it (``cursor``; ``None`` for the first page), its number (``page``,
``until_empty``) or its offset (``offset``). A :class:`Paginator` builds the
URL of a state and finds the state of the next page from a fetched one, or
:data:`END`. The ``page``, ``offset`` and ``until_empty`` styles know the next
states without the previous page's body, so they can fetch a window of pages
at once.

==============  ===============================================================
``link``        follow ``Link: <...>; rel="next"``; ends when there is none
``cursor``      send the token at ``cursor_path`` of the body as ``cursor_param``;
                ends when it is missing or repeats, or at an empty page
``page``        ``page_param`` = 1, 2, 3...; ends at a short page or the known total
``offset``      ``offset_param`` = 0, n, 2n...; ends at a short page or the known total
``until_empty`` ``page_param`` = 1, 2, 3...; ends only at an empty page
==============  ===============================================================

The total, when the server tells it (``total_path`` or ``total_header``), is the
number of records; a short page while the total says more follow is an error,
not the end, because it means the server caps the page size below ``page_size``.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from yarl import URL

from asyncetl.core.batch import JsonValue, Reject
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.settings_check import positive_int

__all__ = [
    "END",
    "MISSING",
    "End",
    "STYLES",
    "Page",
    "PageState",
    "PaginationConfig",
    "Paginator",
    "lookup",
    "make_paginator",
]

STYLES = ("link", "cursor", "page", "offset", "until_empty")

PageState: TypeAlias = str | int | None


class End:
    """The type of :data:`END`."""

    def __repr__(self) -> str:
        return "END"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: There is no next page.
END: Final = End()
#: :func:`lookup` found nothing at the path.
MISSING: Final = _Missing()


def lookup(document: JsonValue, path: str) -> JsonValue | _Missing:
    """The value at a dotted ``path`` (``data.items``, ``$.results``, ``pages.0.id``).

    An empty path (or ``$``) is the document itself.
    """
    path = path.strip()
    if path in ("", "$"):
        return document
    value: JsonValue = document
    for part in path.removeprefix("$.").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


@dataclass(slots=True)  # not frozen: one is made per page, and frozen ones init slowly
class Page:
    """One fetched page.

    :param url: the page's URL, redacted, for messages and dead letters.
    :param items: the list found at the records path; ``None`` when the body
        was unusable (then ``error`` says why).
    :param body: the raw body, kept only when it was unusable, to dead-letter the page.
    :param links: ``Link`` header targets by ``rel``, without secrets.
    :param cursor: the value at ``cursor_path``, for the ``cursor`` style.
    :param total: the total number of records, when the server tells.
    :param objects_only: every item is known to be a JSON object (checked right after
        decoding, while the items are still in the CPU cache).
    """

    state: PageState
    url: str
    status: int
    items: list[JsonValue] | None
    body: bytes = b""
    links: Mapping[str, str] | None = None
    cursor: JsonValue | _Missing = MISSING
    total: int | None = None
    error: Exception | None = None
    objects_only: bool = False

    def reject(self) -> Reject:
        """The page as a dead letter: URL, status and raw body."""
        body = self.body.decode("utf-8", "backslashreplace")
        error = self.error or PermanentError(f"page {self.url} is unusable")
        return Reject({"url": self.url, "status": self.status, "body": body}, error)


@dataclass(frozen=True, slots=True)
class PaginationConfig:
    """How a server pages; see the module docstring for the styles."""

    style: str = "link"
    page_size: int = 100
    page_param: str = "page"
    size_param: str = "limit"
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str = ""
    first_page: int = 1


class Paginator(abc.ABC):
    """How one style walks pages.

    :param config: the style's parameters.
    :param base: the endpoint URL with every fixed query parameter.
    """

    #: the position key of this style's state
    key: ClassVar[str]
    #: whether next states are known without the previous page
    parallel: ClassVar[bool] = False

    def __init__(self, config: PaginationConfig, base: URL) -> None:
        self.config = config
        self.base = base

    def first(self, extra: Mapping[str, str]) -> PageState:
        """The state of the first page; ``extra`` are query parameters for this walk."""
        return None

    @abc.abstractmethod
    def url(self, state: PageState, extra: Mapping[str, str]) -> URL:
        """The URL of the page at ``state``."""

    @abc.abstractmethod
    def next(self, state: PageState, page: Page, total: int | None) -> PageState | End:
        """The state after ``page``, or :data:`END`.

        :raises PermanentError: when the page makes the rest unreachable or inconsistent.
        """

    @abc.abstractmethod
    def parse_state(self, value: JsonValue) -> PageState:
        """A state read back from a position.

        :raises TypeError: when ``value`` cannot be a state of this style.
        """

    def window(
        self, state: PageState, size: int, total: int | None, *, start: int = 0
    ) -> list[PageState]:
        """Up to ``size`` consecutive states from ``state`` worth fetching at once.

        :param start: leave out the first ``start`` of them.
        """
        return [state][start:]


class LinkPaginator(Paginator):
    key = "url"

    def first(self, extra: Mapping[str, str]) -> PageState:
        cfg, params = self.config, dict(extra)
        if cfg.page_param:
            params[cfg.page_param] = str(cfg.first_page)
        return str(self.base.update_query(params))

    def url(self, state: PageState, extra: Mapping[str, str]) -> URL:
        return URL(str(state))

    def next(self, state: PageState, page: Page, total: int | None) -> PageState | End:
        target = (page.links or {}).get("next")
        return END if not target or target == state else target

    def parse_state(self, value: JsonValue) -> PageState:
        if not isinstance(value, str):
            raise TypeError("a link position holds a URL")
        # The position is the next page's own URL, so a changed url would be ignored.
        url = URL(value)
        if url.origin() != self.base.origin():
            raise ForeignPosition(
                f"it is a page of {url.origin()}, another server than url "
                f"{self.base.origin()}; to read from the new server, reset the checkpoint"
            )
        # Positions written before credentials moved to auth may hold a user:password@.
        return str(url.with_user(None)) if url.raw_user is not None else value


class ForeignPosition(ValueError):
    """A committed position that belongs to another server than the configured one."""


class CursorPaginator(Paginator):
    key = "cursor"

    def url(self, state: PageState, extra: Mapping[str, str]) -> URL:
        params = dict(extra)
        if state is not None:
            params[self.config.cursor_param] = str(state)
        return self.base.update_query(params)

    def next(self, state: PageState, page: Page, total: int | None) -> PageState | End:
        if page.items is None:
            raise PermanentError(
                f"the page at {page.url} has no usable body, so the cursor to the next page "
                f"is unknown and the extraction cannot go on; {page.error}"
            )
        cursor = page.cursor
        if cursor is None or isinstance(cursor, _Missing) or cursor == "" or not page.items:
            return END
        value = (
            cursor
            if isinstance(cursor, str | int) and not isinstance(cursor, bool)
            else str(cursor)
        )
        return END if value == state else value

    def parse_state(self, value: JsonValue) -> PageState:
        if value is not None and not isinstance(value, str | int):
            raise TypeError("a cursor position holds a string, a number or null")
        return value


class _NumberedPaginator(Paginator):
    """Pages whose states are numbers known in advance."""

    parallel = True
    #: ``until_empty`` ends only at an empty page; the others also at a short one
    ends_on_short = True
    #: by how much the state grows from one page to the next
    step = 1

    @property
    def param(self) -> str:
        return self.config.page_param

    def url(self, state: PageState, extra: Mapping[str, str]) -> URL:
        if extra or self._prefix is None:
            return self.base.update_query({**extra, self.param: str(state)})
        # The number appended to the encoded base: a tenth of the cost of update_query.
        return URL(f"{self._prefix}{state}", encoded=True)

    @functools.cached_property
    def _prefix(self) -> str | None:
        """The encoded base and ``param=``, when the number can simply follow it."""
        if self.param in self.base.query or self.base.raw_fragment:
            return None
        with_zero = str(self.base.extend_query({self.param: "0"}))  # encoded as yarl does
        return with_zero[:-1]

    def parse_state(self, value: JsonValue) -> PageState:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"a {self.key} position holds an integer")
        return value

    def records_before(self, state: int) -> int:
        """How many records come before the page at ``state``."""
        return (state - self.config.first_page) * self.config.page_size

    def next(self, state: PageState, page: Page, total: int | None) -> PageState | End:
        assert isinstance(state, int)
        following = state + self.step
        if page.items is not None:
            size = len(page.items)
            if size == 0:
                return END
            if self.ends_on_short and size < self.config.page_size:
                self._check_short(state, page, total)
                return END
        if total is not None and self.records_before(following) >= total:
            return END
        return following

    def _check_short(self, state: int, page: Page, total: int | None) -> None:
        assert page.items is not None
        if total is not None and self.records_before(state) + len(page.items) < total:
            raise PermanentError(
                f"the page at {page.url} held {len(page.items)} records, fewer than page_size "
                f"{self.config.page_size}, though the server's total of {total} says more "
                "follow; lower page_size to the server's maximum page size"
            )

    def window(
        self, state: PageState, size: int, total: int | None, *, start: int = 0
    ) -> list[PageState]:
        assert isinstance(state, int)
        states: list[PageState] = []
        for k in range(start, size):
            candidate = state + k * self.step
            if k and total is not None and self.records_before(candidate) >= total:
                break
            states.append(candidate)
        return states


class PagePaginator(_NumberedPaginator):
    key = "page"

    def first(self, extra: Mapping[str, str]) -> PageState:
        return self.config.first_page


class UntilEmptyPaginator(PagePaginator):
    ends_on_short = False


class OffsetPaginator(_NumberedPaginator):
    key = "offset"

    def __init__(self, config: PaginationConfig, base: URL) -> None:
        super().__init__(config, base)
        self.step = config.page_size

    @property
    def param(self) -> str:
        return self.config.offset_param

    def first(self, extra: Mapping[str, str]) -> PageState:
        return 0

    def records_before(self, state: int) -> int:
        return state


_STYLES: dict[str, type[Paginator]] = {
    "link": LinkPaginator,
    "cursor": CursorPaginator,
    "page": PagePaginator,
    "offset": OffsetPaginator,
    "until_empty": UntilEmptyPaginator,
}


def make_paginator(config: PaginationConfig, base: URL, *, where: str) -> Paginator:
    """The paginator of ``config.style`` over ``base``.

    :raises ConfigError: on an unknown style or a bad page size.
    """
    if config.style not in _STYLES:
        raise ConfigError(
            f"must be one of {', '.join(STYLES)}, not {config.style!r}",
            where=where,
            key="pagination",
        )
    positive_int(config.page_size, where, "page_size")
    if config.style == "cursor" and not config.cursor_path:
        raise ConfigError(
            "pagination 'cursor' needs cursor_path, the place of the next cursor "
            "in the body (e.g. 'next_cursor' or 'meta.next')",
            where=where,
            key="cursor_path",
        )
    return _STYLES[config.style](config, base)
