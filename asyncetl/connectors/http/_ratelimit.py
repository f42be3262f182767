"""Client-side request pacing per host, with a gate that pauses every task.

A :class:`HostLimiter` spaces requests to one host at most ``rate`` per second
and holds a *gate*: when one task gets ``429``/``503`` with ``Retry-After``,
:meth:`HostLimiter.pause` closes the gate for that long and every task of the
source waits before its next request to the host, not only the one that was
told to. :class:`Limiters` hands out one limiter per host.

The clock and the sleep are injectable so tests can run on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
from yarl import URL

from asyncetl.core.logs import get_logger

__all__ = ["Clock", "HostLimiter", "Limiters", "Sleep"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_log = get_logger("asyncetl.http")
_TOLERANCE = 1e-3
_AUTHORITIES_KEPT = 64  # links may name many; past this, host and port are worked out each time


class HostLimiter:
    """Paces requests to one host and pauses them all on request.

    :param host: names the host in log lines.
    :param rate: requests per second; ``None`` for no pacing (the gate still works).
    :param max_pause: cap on one pause, in seconds.
    :param clock: monotonic seconds.
    :param sleep: awaits a number of seconds.
    """

    def __init__(
        self,
        host: str,
        rate: float | None = None,
        *,
        max_pause: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.host = host
        self.interval = 1.0 / rate if rate else 0.0
        self.max_pause = max_pause
        self.clock = clock
        self.sleep = sleep
        self.paused_until = -float("inf")
        self._next_slot = -float("inf")

    @property
    def paused(self) -> bool:
        """Whether the gate is closed now."""
        return self.clock() < self.paused_until

    @property
    def free(self) -> bool:
        """Whether a request may go now without :meth:`acquire`: no pacing, and the gate open."""
        return not self.interval and self.clock() >= self.paused_until

    def pause(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (capped at ``max_pause``); a longer pause wins."""
        seconds = min(seconds, self.max_pause)
        until = self.clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            _log.warning("pausing requests", host=self.host, seconds=round(seconds, 3))

    async def acquire(self) -> None:
        """Wait until the gate is open and this task's turn under the rate has come."""
        while True:
            now = self.clock()
            slot = max(now, self.paused_until, self._next_slot)
            if self.interval:
                self._next_slot = slot + self.interval
            if slot > now:
                await self.sleep(slot - now)
            # A pause that began while we slept applies to us too; the tolerance
            # absorbs a timer that fires a hair early.
            if self.clock() + _TOLERANCE >= self.paused_until:
                return


class Limiters:
    """One :class:`HostLimiter` per host, created on first use.

    :param rate: requests per second per host; ``None`` for no pacing.
    :param max_pause: cap on one pause, in seconds.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        max_pause: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.rate = rate
        self.max_pause = max_pause
        self.clock = clock
        self.sleep = sleep
        self._hosts: dict[str, HostLimiter] = {}
        self._by_authority: dict[str, HostLimiter] = {}

    def for_host(self, host: str) -> HostLimiter:
        """The limiter of ``host`` (``name:port``)."""
        limiter = self._hosts.get(host)
        if limiter is None:
            limiter = HostLimiter(
                host, self.rate, max_pause=self.max_pause, clock=self.clock, sleep=self.sleep
            )
            self._hosts[host] = limiter
        return limiter

    def for_url(self, url: URL) -> HostLimiter:
        """The limiter of ``url``'s host, found by its raw authority once seen.

        Reading the authority costs a tenth of working out host and port, which
        is done once per authority (a few differ per host at most: userinfo, an
        explicit default port).
        """
        limiter = self._by_authority.get(url.raw_authority)
        if limiter is None:
            limiter = self.for_host(f"{url.host}:{url.port}")
            if len(self._by_authority) < _AUTHORITIES_KEPT:
                self._by_authority[url.raw_authority] = limiter
        return limiter
