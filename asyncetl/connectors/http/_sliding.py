"""Pages fetched ahead in a sliding window and sent in order, for ``HttpSource.produce``.

Up to ``size`` fetches are in flight at once. Pages are handed on in order:
the worker whose fetch completes the head of the line parses that page, sends
its chunks, and goes on with every following page that is already fetched;
then it takes the next queued fetch itself. So a page costs no hand-over to a
delivering task, and when no later page is ready yet, no waking of an idle
worker for the fetch that replaces it either (when pages are ready, the new
fetches go to idle workers, as the delivering one may be held up sending). At most
``size`` pages are ever fetched but not yet sent, since a fetch is queued only
when a page leaves the line. (An async generator cannot do this: it must not
hold a task group across a ``yield``, so it could only fetch in windows and
stop between them.)

A fetch returns the page undecoded; it is parsed only when its turn comes, just
before its records are sent. Records then live from their parsing to the sink
only, not also while pages ahead of theirs are awaited: fewer live objects
mean fewer garbage-collector passes over them and a warmer CPU cache, and a
page waits as its compact body, not as thousands of objects.

The ``size`` workers of the window's own task group take queued fetches from a
deque and sleep on an event when there are none: a task per fetch, or a memory
stream to hand fetches over, costs two to four times as much per page. Each
worker runs in a cancel scope of its own for its whole life, and an event is
made only for a slot that someone must wait for.

A failed fetch cancels the fetches after it, which could not be delivered
anyway, and no new one starts; the pages before it are still sent, and the
failure is raised when the line reaches it. A failure past the walk's last page
(a speculative fetch, when the total is unknown) is ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import ObjectSendStream

from asyncetl.connectors.http._walk import Record, Walk
from asyncetl.connectors.http.pagination import Page, PageState
from asyncetl.core.batch import Chunk
from asyncetl.core.errors import PermanentError

__all__ = ["Fetch", "Parse", "SlidingWindow"]

F = TypeVar("F")

#: Fetches the page at a state, with the walk's extra query parameters.
Fetch = Callable[[PageState, dict[str, str]], Awaitable[F]]
#: Turns what a fetch returned into the page at that state.
Parse = Callable[[PageState, F], Awaitable[Page]]


class _Slot(Generic[F]):
    """One fetch, in its place in line."""

    __slots__ = ("finished", "result", "state", "waiter", "worker")

    def __init__(self, state: PageState) -> None:
        self.state = state
        self.finished = False
        self.result: F | Exception | None = None  # None: cancelled
        self.waiter: anyio.Event | None = None  # made only when someone must wait
        self.worker: anyio.CancelScope | None = None  # the scope of the worker fetching it

    def finish(self) -> None:
        self.finished = True
        if self.waiter is not None:
            self.waiter.set()

    async def wait(self) -> None:
        if not self.finished:
            self.waiter = self.waiter or anyio.Event()
            await self.waiter.wait()


class SlidingWindow(Generic[F]):
    """Up to ``size`` page fetches in flight; their pages taken by ``walk`` and sent in order.

    :param fetch: fetches one page; a failure it raises ends the walk when reached.
    :param parse: turns a fetch's result into its page, when the page's turn comes.
    :param walk: where the read stands; it decides which states are worth fetching.
    :param size: fetches in flight at most, and pages held unsent at most.
    """

    def __init__(self, fetch: Fetch[F], parse: Parse[F], walk: Walk, size: int) -> None:
        self.fetch = fetch
        self.parse = parse
        self.walk = walk
        self.size = size
        self._slots: deque[_Slot[F]] = deque()  # in line, fetched or not, until handed on
        self._queued: deque[_Slot[F]] = deque()  # not picked up by a worker yet
        self._idle: list[anyio.Event] = []  # one per worker waiting for a slot
        self._failed = False  # a fetch failed: none starts any more
        self._delivering = False  # a worker is handing pages on
        self._over = anyio.Event()  # the walk is done, or failed
        self._error: Exception | None = None
        self._last_url = ""

    async def run(self, send: ObjectSendStream[Chunk[Record]], max_chunk: int) -> None:
        """Send the chunks of every page of the walk into ``send``, in order.

        :raises Exception: the failure of the first page the walk could not do
            without, or what taking or sending a page raised.
        """
        if self.walk.done:
            return
        async with anyio.create_task_group() as tg:
            self._launch()
            for _ in range(self.size):
                tg.start_soon(self._work, send, max_chunk)
            await self._over.wait()
            if self._error is None:
                try:
                    await self._check_rest()
                except Exception as exc:  # raised below by itself, not as a group of one
                    self._error = exc
            tg.cancel_scope.cancel()  # idle workers, and fetches past the end if any are left
        if self._error is not None:
            raise self._error

    async def _work(self, send: ObjectSendStream[Chunk[Record]], max_chunk: int) -> None:
        # A worker done with a fetch hands on the pages ready at the head of the
        # line, if no other worker is at it, then takes the next queued fetch; only
        # when there is none does it wait, until _launch wakes it. Another worker
        # may have taken the slot by the time it runs: then it waits again. Once its
        # scope is cancelled (its fetch came after a failed one) it stops for good,
        # as no fetch starts after a failure anyway.
        with anyio.CancelScope() as scope:
            while True:
                if not self._queued:
                    wake = anyio.Event()
                    self._idle.append(wake)
                    await wake.wait()
                    continue
                slot = self._queued.popleft()
                slot.worker = scope
                try:
                    slot.result = await self.fetch(slot.state, self.walk.extra)
                except Exception as exc:
                    slot.result = exc
                    self._cancel_after(slot)
                finally:
                    slot.worker = None
                    slot.finish()
                if not self._delivering and self._slots[0].finished:
                    await self._deliver(send, max_chunk)

    async def _deliver(self, send: ObjectSendStream[Chunk[Record]], max_chunk: int) -> None:
        """Hand on the head of the line while it is fetched, and queue the fetches after it."""
        self._delivering = True
        try:
            while self._slots and self._slots[0].finished and not self._over.is_set():
                self._last_url = await self._hand_on(self._slots.popleft(), send, max_chunk)
                if self.walk.done:
                    self._over.set()
                else:
                    # When the next page is not fetched yet, delivering ends here and
                    # this worker takes a new fetch itself; otherwise it may be held
                    # up sending, so the new fetches go to idle workers.
                    self._launch(keep_one=not (self._slots and self._slots[0].finished))
        except Exception as exc:
            self._error = exc
            self._over.set()
        finally:
            self._delivering = False

    async def _hand_on(
        self, head: _Slot[F], send: ObjectSendStream[Chunk[Record]], max_chunk: int
    ) -> str:
        """Parse the fetched head's page and send its chunks; return the page's URL.

        Nothing of the page outlives this call but what was sent.
        """
        if head.result is None or isinstance(head.result, Exception):
            # Only a failure before the head cancels it, and that was raised already.
            assert head.result is not None
            raise head.result
        page = await self.parse(head.state, head.result)
        for chunk in self.walk.take(page, max_chunk):
            await send.send(chunk)
        return page.url

    def _launch(self, *, keep_one: bool = False) -> None:
        """Queue fetches until ``size`` pages are in line or the walk wants no more yet.

        An idle worker is woken for each, but for one kept by the delivering
        worker (``keep_one``), which takes it as soon as it is done delivering.
        """
        if self._failed:
            return
        kept = not keep_one
        # The slots hold the walk's next states in order: the first len(slots) states
        # of its window are being fetched already.
        for state in self.walk.window(self.size, start=len(self._slots)):
            slot: _Slot[F] = _Slot(state)
            self._slots.append(slot)
            self._queued.append(slot)
            if not kept:
                kept = True
            elif self._idle:
                self._idle.pop().set()

    def _cancel_after(self, failed: _Slot[F]) -> None:
        self._failed = True
        slots = list(self._slots)
        for later in slots[slots.index(failed) + 1 :]:
            if later.worker is not None:
                later.worker.cancel()  # its worker finishes it, cancelled
            elif not later.finished:  # still queued: no worker will take it now
                self._queued.remove(later)
                later.finish()

    async def _check_rest(self) -> None:
        """Fail when a page fetched past the end holds records: the end was not the end."""
        for slot in self._slots:
            await slot.wait()
            if slot.result is None or isinstance(slot.result, Exception):
                return  # failed or cancelled: past the end, so ignored
            page = await self.parse(slot.state, slot.result)
            if page.items:
                raise PermanentError(
                    f"the page at {self._last_url} ended the pagination, yet the later page "
                    f"{page.url} holds {len(page.items)} records; use pagination "
                    "'until_empty' or a smaller page_size"
                )
