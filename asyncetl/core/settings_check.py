"""Checks of a connector's constructor settings, each naming the key it refuses.

Every check returns the value it accepted (converted where noted), so that a
constructor reads ``self.group = nonempty(group, where, "group")``. ``where``
names the connector in the message, e.g. ``KafkaSource 'kafka'``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from asyncetl.core.errors import ConfigError
from asyncetl.core.retry import RetryPolicy

__all__ = [
    "identifier_names",
    "non_negative_int",
    "nonempty",
    "positive_int",
    "positive_seconds",
    "retry_policy",
]


def nonempty(value: object, where: str, key: str) -> str:
    """``value`` if it is a non-empty string.

    :raises ConfigError: otherwise, naming ``key``.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"must be a non-empty string, not {value!r}", where=where, key=key)
    return value


def positive_int(value: object, where: str, key: str) -> int:
    """``value`` if it is a positive integer (``True`` is no integer here).

    :raises ConfigError: otherwise, naming ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, not {value!r}", where=where, key=key)
    return value


def non_negative_int(value: object, where: str, key: str) -> int:
    """``value`` if it is an integer, zero or more (``True`` is no integer here).

    :raises ConfigError: otherwise, naming ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"must be a non-negative integer, not {value!r}", where=where, key=key)
    return value


def positive_seconds(value: object, where: str, key: str) -> float:
    """``value`` as a float, if it is a positive, finite number.

    :raises ConfigError: otherwise (NaN included), naming ``key``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0  # also refuses NaN
        or math.isinf(value)
    ):
        raise ConfigError(
            f"must be a positive number of seconds, not {value!r}", where=where, key=key
        )
    return float(value)


def retry_policy(retries: object, retry_max_time: object, where: str) -> RetryPolicy:
    """The policy for a connector's ``retries`` (after the first try) and ``retry_max_time``.

    Each wait is capped at five seconds.

    :raises ConfigError: on a negative count or a time that is not a positive number.
    """
    tries = non_negative_int(retries, where, "retries") + 1
    max_time = positive_seconds(retry_max_time, where, "retry_max_time")
    return RetryPolicy(max_tries=tries, max_time=max_time, max_delay=5.0)


def identifier_names(
    names: object,
    where: str,
    key: str,
    *,
    quote: Callable[[str], str],
    system: str,
) -> Sequence[str]:
    """``names`` if it is a non-empty list of identifiers ``quote`` accepts, none repeated
    regardless of case (``system``, such as SQLite or DuckDB, ignores it).

    :raises ConfigError: otherwise, naming ``key`` and the first name refused.
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ConfigError(f"must be a non-empty list of names, not {names!r}", where=where, key=key)
    for name in names:
        try:
            quote(name)
        except ConfigError:
            raise ConfigError(
                f"{name!r} is not a valid {system} identifier", where=where, key=key
            ) from None
    if len({str(n).lower() for n in names}) != len(names):
        raise ConfigError(
            f"names repeat ({system} ignores case): {list(names)!r}", where=where, key=key
        )
    return names
