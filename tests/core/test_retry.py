from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from asyncetl.core import PermanentError, RetryPolicy, TransientError, parse_retry_after, retry_call

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


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
