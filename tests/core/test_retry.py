from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    PermanentError,
    RetryPolicy,
    TransientError,
    parse_retry_after,
    retry_call,
)
from asyncetl.core.retry import Retrier

pytestmark = pytest.mark.anyio


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise self.error
        return "ok"


async def test_transient_errors_are_retried_until_success() -> None:
    call = Flaky(3, TransientError("connection reset"))
    policy = RetryPolicy(max_tries=5, base_delay=0.001)
    with capture_logs() as logs:
        assert await retry_call(call, policy=policy, what="GET /items") == "ok"
    assert len(call.calls) == 4
    retries = [e for e in logs if e["event"] == "retrying"]
    assert [(e["call"], e["attempt"], e["error"]) for e in retries] == [
        ("GET /items", n, "TransientError: connection reset") for n in (1, 2, 3)
    ]


async def test_gives_up_after_max_tries_with_the_last_error() -> None:
    call = Flaky(10, TransientError("still down"))
    with pytest.raises(TransientError, match="^still down$"):
        await retry_call(call, policy=RetryPolicy(max_tries=3, base_delay=0.001), what="x")
    assert len(call.calls) == 3


async def test_permanent_errors_are_not_retried() -> None:
    call = Flaky(1, PermanentError("no such table"))
    with pytest.raises(PermanentError):
        await retry_call(call, policy=RetryPolicy(base_delay=0.001), what="x")
    assert len(call.calls) == 1


async def test_max_time_bounds_the_retrying() -> None:
    call = Flaky(1000, TransientError("down"))
    started = time.monotonic()
    with pytest.raises(TransientError):
        await retry_call(
            call,
            policy=RetryPolicy(max_tries=1000, max_time=0.3, base_delay=0.05, max_delay=0.05),
            what="x",
        )
    assert 0.25 <= time.monotonic() - started < 1.0


async def test_max_time_counts_from_the_start_of_the_first_attempt() -> None:
    calls: list[float] = []

    async def slow_then_down() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            await anyio.sleep(0.3)  # longer than max_time on its own: no retry may start
        raise TransientError("down")

    with pytest.raises(TransientError, match="^down$"):
        await retry_call(slow_then_down, policy=RetryPolicy(max_tries=5, max_time=0.2), what="x")
    assert len(calls) == 1


async def test_a_single_try_policy_never_retries() -> None:
    call = Flaky(1, TransientError("reset"))
    with capture_logs() as logs, pytest.raises(TransientError, match="^reset$"):
        await retry_call(call, policy=RetryPolicy(max_tries=1), what="x")
    assert len(call.calls) == 1
    assert [e for e in logs if e["event"] == "retrying"] == []


async def test_server_requested_delay_is_honoured() -> None:
    call = Flaky(1, TransientError("slow down", retry_after=0.3))
    await retry_call(call, policy=RetryPolicy(base_delay=0.001), what="x")
    assert call.calls[1] - call.calls[0] >= 0.29


async def test_retry_after_zero_falls_back_to_backoff_without_spinning() -> None:
    call = Flaky(4, TransientError("slow down", retry_after=0.0))
    policy = RetryPolicy(max_tries=5, base_delay=0.05, max_delay=0.05)
    with capture_logs() as logs:
        await retry_call(call, policy=policy, what="x")
    waits = [e["wait"] for e in logs if e["event"] == "retrying"]
    assert len(waits) == 4
    assert all(0 <= w <= 0.05 for w in waits)
    assert sum(waits) > 0  # full jitter: not all four draws are zero


async def test_a_retrier_shared_by_concurrent_calls_retries_each_on_its_own() -> None:
    retrier = Retrier(RetryPolicy(max_tries=3, base_delay=0.001))
    first, second = Flaky(2, TransientError("reset")), Flaky(1, TransientError("busy"))
    results: dict[str, str] = {}

    async def call(flaky: Flaky, what: str) -> None:
        results[what] = await retrier.call(flaky, what=what)

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, first, "GET /a")
            tg.start_soon(call, second, "GET /b")
    assert results == {"GET /a": "ok", "GET /b": "ok"}
    assert (len(first.calls), len(second.calls)) == (3, 2)
    retries = sorted(
        (e["call"], e["attempt"], e["error"]) for e in logs if e["event"] == "retrying"
    )
    assert retries == [
        ("GET /a", 1, "TransientError: reset"),
        ("GET /a", 2, "TransientError: reset"),
        ("GET /b", 1, "TransientError: busy"),
    ]


async def test_a_retrier_counts_tries_per_call_and_keeps_its_transient_types() -> None:
    retrier = Retrier(RetryPolicy(max_tries=2, base_delay=0.001), transient=(OSError,))
    for _ in range(2):  # the second call gets its own two tries
        flaky = Flaky(5, ConnectionResetError("reset"))
        with pytest.raises(ConnectionResetError, match="^reset$"):
            await retrier.call(flaky, what="x")
        assert len(flaky.calls) == 2
    transient = Flaky(1, TransientError("not an OSError here"))
    with pytest.raises(TransientError):
        await retrier.call(transient, what="x")
    assert len(transient.calls) == 1


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
