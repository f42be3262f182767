"""Running one user job (a backfill partition, a flow step) with tries, a timeout and backoff.

Shared by :mod:`asyncetl.backfill` and :mod:`asyncetl.flow`, so that both
follow one set of rules:

- Each try is cancelled after ``timeout`` seconds (``None``: no limit) and
  counts as failed.
- A failed try is retried with exponential backoff and full jitter
  (``backoff``): the first wait is at most ``retry_base_delay`` seconds, the
  ceiling doubles per try and never passes ``retry_max_delay``; no retry starts
  after ``max_tries`` tries or ``retry_max_time`` seconds from the first.
- A :class:`~asyncetl.core.errors.PermanentError` or
  :class:`~asyncetl.core.errors.ConfigError` is not retried.
- The outcome is ``None`` or the last failure as one line of text, for a
  status store.

Unlike :func:`asyncetl.core.retry.retry_call`, which retries one idempotent I/O
call on transient errors only, this retries the user's whole job on any error:
the job must be idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import backoff

from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.logs import Logger

__all__ = ["TrySettings", "describe_error", "run_tries"]

_MAX_ERROR = 2000


class TrySettings(Protocol):
    """How often and how long a job is tried: see the module's docstring."""

    @property
    def max_tries(self) -> int: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def retry_base_delay(self) -> float: ...

    @property
    def retry_max_delay(self) -> float: ...

    @property
    def retry_max_time(self) -> float: ...


async def run_tries(
    job: Callable[[], Awaitable[object]],
    settings: TrySettings,
    *,
    noun: str,
    log: Logger,
) -> str | None:
    """Await ``job()`` until a try succeeds or no retry is left.

    :param noun: what the job is (``partition``, ``step``), for log lines and
        the timeout's description.
    :param log: logs each retry as ``retrying <noun>``, with the attempt, the
        wait and the error; bind what identifies the job to it.
    :returns: ``None`` on success, else the last failure (see :func:`describe_error`).
    """

    async def once() -> None:
        with anyio.fail_after(settings.timeout):
            await job()

    def log_retry(details: Any) -> None:
        log.warning(
            f"retrying {noun}",
            attempt=details["tries"],
            wait=round(details["wait"], 3),
            error=describe_error(details["exception"], noun),
        )

    retrying = backoff.on_exception(
        backoff.expo,
        Exception,
        max_tries=settings.max_tries,
        max_time=settings.retry_max_time,
        giveup=_permanent,
        on_backoff=log_retry,
        logger=None,
        jitter=backoff.full_jitter,
        factor=settings.retry_base_delay,
        max_value=settings.retry_max_delay,
    )(once)
    try:
        await retrying()
    except Exception as exc:
        return describe_error(exc, noun)
    return None


def describe_error(exc: BaseException, noun: str) -> str:
    """``Type: message`` in at most 2,000 characters; a bare timeout says the ``noun`` overran."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: the {noun} took longer than its timeout"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _permanent(exc: Exception) -> bool:
    return isinstance(exc, PermanentError | ConfigError)
