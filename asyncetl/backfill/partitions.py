"""Partitions: the units a backfill runs, one at a time each.

A partition is a half-open interval ``[start, end)`` of UTC datetimes (an hour,
a day or a month) or of integers (a key range of a given size). A range given by
an operator, ``[first, last]``, is covered by every partition that overlaps it;
a date-only ``last`` means the whole of that day. The :class:`Partition` value
type itself is defined in :mod:`asyncetl.core.backfill_store` and re-exported here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeAlias

from asyncetl.core.backfill_store import Partition
from asyncetl.core.errors import ConfigError

__all__ = [
    "EVERY",
    "Every",
    "Order",
    "Partition",
    "date_partitions",
    "int_partitions",
    "make_partitions",
    "parse_moment",
]

#: The kinds of partition: calendar periods, or integer ranges of a given size.
Every: TypeAlias = Literal["hour", "day", "month", "int"]
EVERY: tuple[Every, ...] = ("hour", "day", "month", "int")
#: Which partitions run first.
Order: TypeAlias = Literal["oldest", "newest"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MOMENT = re.compile(
    r"^\d{4}-\d{2}(-\d{2}([ T]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_FORMATS = "YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH[:MM[:SS]][+HH:MM]"


def parse_moment(text: str, *, what: str) -> tuple[datetime, bool]:
    """A UTC datetime from ``text``, and whether it named a whole day (or month).

    :param what: names the value in the error, e.g. ``--start``.
    :raises ConfigError: when ``text`` is not a date or datetime.
    """
    value = text.strip()
    if not _MOMENT.match(value):
        raise ConfigError(f"{text!r} is not a date; write it as {_FORMATS}", key=what)
    whole = len(value) <= 10
    if len(value) == 7:
        value += "-01"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a valid date ({exc})", key=what) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC), whole
    except OverflowError:  # an offset that moves it out of years 1..9999
        raise ConfigError(f"{text!r} is out of range in UTC", key=what) from None


def date_partitions(first: str, last: str, every: Every) -> list[Partition]:
    """Every ``every`` (hour, day or month) overlapping ``[first, last]``, oldest first.

    :raises ConfigError: on a bad date or when ``first`` is after ``last``.
    """
    if every not in ("hour", "day", "month"):
        raise ConfigError(f"must be hour, day or month, not {every!r}", key="every")
    start, _ = parse_moment(first, what="start")
    end, whole_day = parse_moment(last, what="end")
    try:
        if whole_day and len(last.strip()) == 7:
            end = _add(end, "month") - timedelta(microseconds=1)
        elif whole_day:
            end = end + timedelta(days=1) - timedelta(microseconds=1)
        if start > end:
            raise ConfigError(f"start {first} is after end {last}; swap them", key="start")
        partitions = []
        current = _floor(start, every)
        while current <= end:
            following = _add(current, every)
            partitions.append(_date_partition(current, following, every))
            current = following
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        # A partition is [start, end): the one holding the last moment of year 9999
        # would end in year 10000, which no datetime can hold.
        raise ConfigError(
            f"{last!r} is too late: the {every} holding it would end after year 9999",
            key="end",
        ) from None
    return partitions


def int_partitions(first: int | str, last: int | str, size: int) -> list[Partition]:
    """Ranges of ``size`` integers from ``first`` covering ``[first, last]``; the last is cut short.

    :raises ConfigError: on a non-integer bound, a size below 1, or ``first > last``.
    """
    lo, hi = _int(first, "start"), _int(last, "end")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"must be a positive integer, not {size!r}", key="size")
    if lo > hi:
        raise ConfigError(f"start {lo} is after end {hi}; swap them", key="start")
    return [
        Partition(
            f"{at}..{min(at + size, hi + 1) - 1}", f"int:{size}", at, at, min(at + size, hi + 1)
        )
        for at in range(lo, hi + 1, size)
    ]


def make_partitions(
    first: str, last: str, every: str, *, size: int | None = None
) -> list[Partition]:
    """Partitions of either family, chosen by ``every``.

    :raises ConfigError: on an unknown ``every``, a bad bound, or an inverted range.
    """
    if every == "int":
        if size is None:
            raise ConfigError("integer partitions need a size, e.g. --size 10000", key="size")
        return int_partitions(first, last, size)
    if every not in EVERY:
        raise ConfigError(f"must be one of {', '.join(EVERY)}, not {every!r}", key="every")
    return date_partitions(first, last, every)


def _int(value: int | str, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{value!r} is not an integer", key=what) from None


def _floor(moment: datetime, every: Every) -> datetime:
    if every == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if every == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _add(moment: datetime, every: Every) -> datetime:
    if every == "hour":
        return moment + timedelta(hours=1)
    if every == "day":
        return moment + timedelta(days=1)
    year, month = divmod(moment.month, 12)
    return moment.replace(year=moment.year + year, month=month + 1)


def _date_partition(start: datetime, end: datetime, every: Every) -> Partition:
    day: date = start.date()
    key = {
        "hour": f"{day.isoformat()}T{start.hour:02d}",
        "day": day.isoformat(),
        "month": day.isoformat()[:7],
    }[every]
    ordinal = int((start - _EPOCH).total_seconds())
    return Partition(key, every, ordinal, start, end)
