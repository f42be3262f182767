"""The per-host pacing and pause gate, on a fake clock."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from yarl import URL

from asyncetl.connectors.http._ratelimit import HostLimiter, Limiters

pytestmark = pytest.mark.anyio


class FakeClock:
    """Time that moves only when someone sleeps; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_rate_spaces_requests_evenly() -> None:
    clock = FakeClock()
    limiter = HostLimiter("h:80", rate=4, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        await limiter.acquire()
        starts.append(clock.now)
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]


async def test_without_a_rate_nothing_waits() -> None:
    clock = FakeClock()
    limiter = HostLimiter("h:80", clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await limiter.acquire()
    assert clock.sleeps == []


async def test_pause_holds_every_caller_until_it_ends() -> None:
    clock = FakeClock()
    limiter = HostLimiter("h:80", clock=clock, sleep=clock.sleep)
    clock.now = 10.0
    limiter.pause(3.0)
    assert limiter.paused
    await limiter.acquire()
    assert clock.now == 13.0
    assert not limiter.paused


async def test_a_pause_during_a_wait_applies_to_the_waiter() -> None:
    clock = FakeClock()
    limiter = HostLimiter("h:80", rate=1, clock=clock, sleep=clock.sleep)
    await limiter.acquire()  # slot at 0; the next is at 1

    original_sleep = clock.sleep
    paused = False

    async def sleep_then_pause(seconds: float) -> None:
        nonlocal paused
        await original_sleep(seconds)
        if not paused:  # another task got a 429 while we waited for our slot
            paused = True
            limiter.pause(5.0)

    limiter.sleep = sleep_then_pause
    await limiter.acquire()
    assert clock.now == 6.0  # slot at 1, paused until 6, then the next slot starts at 6


async def test_shorter_pause_does_not_shorten_a_longer_one_and_pauses_are_capped() -> None:
    clock = FakeClock()
    limiter = HostLimiter("h:80", max_pause=30.0, clock=clock, sleep=clock.sleep)
    limiter.pause(10.0)
    limiter.pause(2.0)
    assert limiter.paused_until == 10.0
    limiter.pause(3600.0)
    assert limiter.paused_until == 30.0


async def test_concurrent_callers_share_the_gate_and_the_rate() -> None:
    clock = FakeClock()
    limiters = Limiters(rate=10, clock=clock, sleep=clock.sleep)
    limiter = limiters.for_host("h:80")
    assert limiters.for_host("h:80") is limiter
    assert limiters.for_host("other:80") is not limiter
    limiter.pause(2.0)
    starts: list[float] = []

    async def request() -> None:
        await limiter.acquire()
        starts.append(clock.now)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(request)
    assert min(starts) >= 2.0
    assert len(starts) == 3


def test_urls_of_one_host_share_its_limiter_however_their_authority_is_written() -> None:
    limiters = Limiters(rate=10)
    first = limiters.for_url(URL("http://api.test/items?page=1"))
    assert limiters.for_url(URL("http://api.test/items?page=2")) is first
    assert limiters.for_url(URL("http://user:pw@api.test:80/other")) is first
    assert limiters.for_host("api.test:80") is first
    other = limiters.for_url(URL("http://api.test:8080/items"))
    assert other is not first
    assert other.host == "api.test:8080"
