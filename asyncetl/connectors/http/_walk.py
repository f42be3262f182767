"""Where a paginated read stands, and the positions that let it resume.

A position is a JSON object. Without ``since`` it is ``{<key>: state, "skip": n}``:
the page to fetch next and how many of its items were already delivered
(``<key>`` is ``url``, ``cursor``, ``page`` or ``offset`` by style). After the
last page it names that page with ``skip`` = its length, so a rerun fetches it
again and picks up what was appended or a new ``next`` link.

With ``since`` a walk starts from the first page each run, asking only for
records changed since the committed value. Mid-walk the position also holds the
walk's ``since`` and the ``max`` value seen so far; after the last page it is
just ``{"since": v}`` where ``v`` is the greatest ``since_field`` value seen
minus the lag window, never less than before.

Every position also names the ``endpoint`` it was written for: the source's
URL with its fixed query parameters, redacted. A source pointed at another
endpoint refuses it rather than resume at a page of something else (which could
skip records); a position without it, from an earlier version, is taken as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from asyncetl.connectors.http._client import redact_url
from asyncetl.connectors.http.pagination import (
    End,
    ForeignPosition,
    Page,
    PageState,
    Paginator,
)
from asyncetl.core.batch import Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import RESET_HINT, ConfigError, PermanentError
from asyncetl.core.redact import redact

__all__ = ["ENDPOINT", "RESET_HINT", "Record", "Since", "Walk", "lagged", "since_order"]

#: the position key naming the endpoint a position was written for
ENDPOINT = "endpoint"

Record = dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Since:
    """Incremental reads.

    :param param: the query parameter that takes the lower bound.
    :param field: the record field whose greatest value becomes the next bound.
    :param lag: seconds (or units, for numbers) subtracted from that value, so
        records committed late upstream are read again rather than missed.
    """

    param: str
    field: str
    lag: float = 0.0


def _as_datetime(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def since_order(value: JsonValue) -> tuple[int, float | str]:
    """A sort key for ``since_field`` values: numbers, then ISO timestamps, then strings."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, str):
        when = _as_datetime(value)
        return (1, when.timestamp()) if when else (2, value)
    return (3, str(value))


def lagged(value: JsonValue, lag: float) -> JsonValue:
    """``value`` moved back by ``lag``: seconds for ISO timestamps, units for numbers."""
    if not lag:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = value - lag
        return int(result) if isinstance(value, int) and float(lag).is_integer() else result
    if isinstance(value, str) and (when := _as_datetime(value)):
        naive = datetime.fromisoformat(value).tzinfo is None
        moved = (when - timedelta(seconds=lag)).replace(tzinfo=None if naive else when.tzinfo)
        text = moved.isoformat()
        return text.replace("+00:00", "Z") if value.endswith("Z") else text
    return value


def _later(value: JsonValue, than: JsonValue) -> bool:
    return than is None or since_order(value) > since_order(than)


def _as_param(value: JsonValue) -> str:
    return value if isinstance(value, str) else str(value)


class Walk:
    """The state of one read: next page, items of it delivered, since window, total.

    :param pager: the pagination style.
    :param since: incremental settings, or ``None``.
    :param after: the committed position to resume after (``None``: from the start).
    :param endpoint: what the source reads, redacted; every position names it.
    :param where: names the source in messages.
    :raises ConfigError: when ``after`` was not written by these settings or
        for this endpoint.
    """

    def __init__(
        self,
        pager: Paginator,
        since: Since | None,
        after: Position,
        *,
        endpoint: str,
        where: str,
    ) -> None:
        self.pager = pager
        self.since = since
        self.endpoint = endpoint
        self.query_since: JsonValue = None
        self.max_seen: JsonValue = None
        self.total: int | None = None
        self.skip = 0
        self.done = False
        self.pages_taken = 0
        try:
            self.state: PageState = self._resume(after)
        except ForeignPosition as exc:
            raise ConfigError(
                f"cannot resume from the committed position {_shown(after)}: {exc}",
                where=where,
                key="position",
            ) from exc
        except (TypeError, ValueError, KeyError) as exc:
            mode = f"pagination {pager.config.style!r}" + (" with since" if since else "")
            raise ConfigError(
                f"cannot resume from the committed position {_shown(after)}, which {mode} did "
                "not write; restore the settings that wrote it or reset the checkpoint",
                where=where,
                key="position",
            ) from exc

    def _resume(self, after: Position) -> PageState:
        key = self.pager.key
        if after is None:
            return self.pager.first(self.extra)
        if not isinstance(after, dict):
            raise TypeError("a position is a JSON object")
        written_for = after.get(ENDPOINT, self.endpoint)
        # Redacted, an identity written when it still held a secret compares equal.
        if (redact(written_for) if isinstance(written_for, str) else written_for) != self.endpoint:
            raise ForeignPosition(
                f"it was written for {_shown(written_for)}, not for url {self.endpoint}; "
                f"point url back there, or to read {self.endpoint} from the start, {RESET_HINT}"
            )
        if self.since is not None:
            self.query_since = after["since"]
            if key not in after:
                return self.pager.first(self.extra)
            self.max_seen = after.get("max")
        skip = after["skip"]
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValueError("skip is a count")
        self.skip = skip
        return self.pager.parse_state(after[key])

    @property
    def extra(self) -> dict[str, str]:
        """Query parameters of this walk: the since bound, when there is one."""
        if self.since is None or self.query_since is None:
            return {}
        return {self.since.param: _as_param(self.query_since)}

    def window(self, size: int, *, start: int = 0) -> list[PageState]:
        """The states to fetch next, from the ``start``-th on; one until the total is known.

        :param size: how many states from the next one on may be fetched at once.
        :param start: how many of them are being fetched already.
        """
        if size == 1 or not self.pager.parallel or (self.total is None and not self.pages_taken):
            return [self.state][start:]
        return self.pager.window(self.state, size, self.total, start=start)

    def position(self, state: PageState, skip: int) -> Position:
        """The position of ``skip`` items into the page at ``state``."""
        if self.since is None:
            return {self.pager.key: state, "skip": skip, ENDPOINT: self.endpoint}
        return {
            "since": self.query_since,
            "max": self.max_seen,
            self.pager.key: state,
            "skip": skip,
            ENDPOINT: self.endpoint,
        }

    def _end_position(self, state: PageState, count: int) -> Position:
        if self.since is None:
            return {self.pager.key: state, "skip": count, ENDPOINT: self.endpoint}
        bound = self.query_since
        if self.max_seen is not None:
            candidate = lagged(self.max_seen, self.since.lag)
            if _later(candidate, bound):
                bound = candidate
        return {"since": bound, ENDPOINT: self.endpoint}

    def take(self, page: Page, max_chunk: int) -> list[Chunk[Record]]:
        """Chunks of ``page``'s undelivered items, each with the position after it.

        :raises PermanentError: when the page makes the rest of the walk unreachable.
        """
        if page.state != self.state:
            raise PermanentError(f"page {page.url} arrived out of order")
        if page.total is not None:
            self.total = page.total
        following = self.pager.next(page.state, page, self.total)
        skip, self.skip = self.skip, 0
        self.pages_taken += 1
        items = page.items or []
        chunks: list[Chunk[Record]] = []
        for start in range(skip, len(items), max_chunk):
            end = min(start + max_chunk, len(items))
            records, rejects = self._split(page, items, start, end)
            # Computed after the split, so a since walk's position counts these records.
            position = (
                self.position(page.state, end)
                if end < len(items)
                else self._after(page.state, following, len(items))
            )
            chunks.append(Chunk(records, position, rejects))
        if not chunks:
            rejects = [page.reject()] if page.items is None else []
            chunks.append(Chunk([], self._after(page.state, following, len(items)), rejects))
        if isinstance(following, End):
            self.done = True
        else:
            self.state = following
        return chunks

    def _after(self, state: PageState, following: PageState | End, count: int) -> Position:
        """The position after the whole page at ``state``."""
        if isinstance(following, End):
            return self._end_position(state, count)
        return self.position(following, 0)

    def _split(
        self, page: Page, items: list[JsonValue], start: int, end: int
    ) -> tuple[list[Record], list[Reject]]:
        piece = items if start == 0 and end == len(items) else items[start:end]
        rejects: list[Reject] = []
        if page.objects_only:  # the hot path: nothing to check
            records = cast(list[Record], piece)
        else:
            records = [item for item in piece if type(item) is dict]
        if len(records) != len(piece):
            rejects = [
                Reject(
                    item,
                    PermanentError(
                        f"item {start + offset} of the page at {page.url} is a JSON "
                        f"{_json_type(item)}, not an object; check records_path"
                    ),
                )
                for offset, item in enumerate(piece)
                if type(item) is not dict
            ]
        if self.since is not None:
            self._observe(records, self.since.field)
        return records, rejects

    def _observe(self, records: list[Record], field: str) -> None:
        for record in records:
            value = record.get(field)
            if value is not None and _later(value, self.max_seen):
                self.max_seen = value


def _shown(value: JsonValue) -> str:
    """A position (or part of one) for a message: its URLs without passwords.

    Positions written before credentials moved out of URLs may still hold one.
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {_shown(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str) and "://" in value:
        try:
            return repr(redact(redact_url(value)))
        except ValueError:
            return repr(value.split("://")[0] + "://***")
    return repr(redact(value)) if isinstance(value, str) else repr(value)


def _json_type(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"
