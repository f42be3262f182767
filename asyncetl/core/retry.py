"""Retrying one idempotent I/O call with exponential backoff and full jitter.

Built on ``backoff``: it supplies the loop, ``max_tries`` and ``max_time``; we
supply the wait sequence, which honours a server's requested delay
(:attr:`TransientError.retry_after`) and otherwise grows exponentially with
full jitter. A requested delay of zero falls back to the backoff, so a server
answering ``Retry-After: 0`` cannot make us spin.

The first attempt runs outside that loop: most calls succeed at once, and
entering backoff's loop (its wait generator, its bookkeeping per try) costs
more than many a call. When the first attempt fails, backoff's loop takes over
as if that failure were its own first try: the same waits, tries and log
lines, and ``max_time`` still counted from the first attempt's start.
:class:`Retrier` builds the loop once for a client that makes many calls
under one policy; :func:`retry_call` is the one-off form.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import backoff

from asyncetl.core._meter import count_retry
from asyncetl.core.errors import ConfigError, TransientError
from asyncetl.core.logs import get_logger

__all__ = ["Retrier", "RetryPolicy", "parse_retry_after", "retry_call"]

T = TypeVar("T")

_log = get_logger("asyncetl.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry one call.

    :param max_tries: attempts in all, the first included.
    :param max_time: seconds after the first attempt past which no retry starts.
    :param base_delay: the first backoff ceiling; it doubles per attempt.
    :param max_delay: cap on any single wait, a server's request included.
    """

    max_tries: int = 5
    max_time: float = 60.0
    base_delay: float = 0.1
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ConfigError(f"max_tries must be at least 1, not {self.max_tries}", key="retry")
        for name in ("max_time", "base_delay", "max_delay"):
            value = getattr(self, name)
            # `not value > 0` also refuses NaN; an infinite max_time would retry forever.
            if not value > 0 or math.isinf(value):
                raise ConfigError(
                    f"{name} must be a positive number of seconds, not {value!r}", key="retry"
                )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or HTTP date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    # Imported here: the email package costs every run's start-up, and few servers send dates.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _waits(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    exc = yield 0.0  # primed by backoff with send(None)
    attempt = 0
    while True:
        requested = getattr(exc, "retry_after", None)
        if requested:  # zero or absent: fall back to our own backoff
            delay = min(float(requested), policy.max_delay)
        else:
            delay = random.uniform(0, min(policy.max_delay, policy.base_delay * 2**attempt))  # noqa: S311
        attempt += 1
        exc = yield delay


class Retrier:
    """:func:`retry_call` built once, for a client that retries many calls under one policy.

    It keeps no state between calls, so concurrent tasks may share it; each call
    has its own tries, time limit and waits.

    :param policy: how hard to retry each call.
    :param transient: exception types worth retrying; anything else propagates at once.
    """

    __slots__ = ("_retrying", "policy", "transient")

    def __init__(
        self, policy: RetryPolicy, *, transient: tuple[type[Exception], ...] = (TransientError,)
    ) -> None:
        self.policy = policy
        self.transient = transient
        self._retrying: Callable[..., Awaitable[Any]] | None = None  # built at the first failure

    async def call(self, call: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Await ``call()``, retrying transient failures; the last failure propagates.

        :param what: names the call in log lines, e.g. ``GET http://host/items``; never a secret.
        """
        started = time.monotonic()
        try:
            return await call()
        except self.transient as exc:
            failure = exc
        # Out of the except block, so that later failures do not chain onto this one.
        return await self.resume(call, failure, what=what, started=started)

    async def resume(
        self, call: Callable[[], Awaitable[T]], failure: Exception, *, what: str, started: float
    ) -> T:
        """Go on retrying ``call()``, whose first attempt, begun at ``started``, raised ``failure``.

        For a caller that makes the first attempt itself, in its own coroutine, and
        hands over only when it fails: the happy path then costs no frame of the
        retrier's. The waits, log lines and time limit are those of :meth:`call`.

        :param failure: a transient failure, raised again when no retry is allowed.
        :param started: ``time.monotonic()`` when the first attempt began.
        """
        if self.policy.max_tries == 1:
            raise failure
        # backoff reads max_time when its loop starts: what is left of it after this attempt.
        _MAX_TIME.set(self.policy.max_time - (time.monotonic() - started))
        result: T = await self._loop()(call, what, [failure])
        return result

    def _loop(self) -> Callable[..., Awaitable[Any]]:
        if self._retrying is None:
            policy = self.policy
            self._retrying = backoff.on_exception(
                lambda: _waits(policy),
                self.transient,
                max_tries=policy.max_tries,
                max_time=_MAX_TIME.get,
                jitter=None,
                on_backoff=_log_retry,
                logger=None,
            )(_attempt)
        return self._retrying


_MAX_TIME: ContextVar[float] = ContextVar("asyncetl_retry_max_time")


async def _attempt(call: Callable[[], Awaitable[T]], what: str, failed: list[BaseException]) -> T:
    # A real coroutine function: backoff picks its async loop only for those. ``what``
    # is an argument only so that _log_retry finds it among the call's details. The
    # loop's first try is the attempt that already failed outside it: raised again here.
    if failed:
        raise failed.pop()
    return await call()


def _log_retry(details: Any) -> None:
    exc = details["exception"]
    count_retry(exc)
    _log.warning(
        "retrying",
        call=details["args"][1],
        attempt=details["tries"],
        wait=round(details["wait"], 3),
        error=f"{type(exc).__name__}: {exc}",
    )


async def retry_call(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    what: str,
    transient: tuple[type[Exception], ...] = (TransientError,),
) -> T:
    """Await ``call()``, retrying transient failures; the last failure propagates.

    :param what: names the call in log lines, e.g. ``GET http://host/items``; never a secret.
    :param transient: exception types worth retrying; anything else propagates at once.
    """
    return await Retrier(policy, transient=transient).call(call, what=what)
