"""Partitions: calendar periods and integer ranges over an inclusive operator range."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncetl.backfill import Partition, date_partitions, int_partitions, make_partitions
from asyncetl.core.errors import ConfigError


def test_daily_partitions_cover_every_day_of_the_range_inclusive() -> None:
    partitions = date_partitions("2024-01-01", "2024-03-31", "day")
    assert len(partitions) == 91
    assert partitions[0] == Partition(
        "2024-01-01",
        "day",
        1704067200,
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=UTC),
    )
    assert partitions[-1].key == "2024-03-31"
    assert partitions[-1].end == datetime(2024, 4, 1, tzinfo=UTC)
    assert partitions[0].variables == {
        "PARTITION_KEY": "2024-01-01",
        "PARTITION_START": "2024-01-01T00:00:00+00:00",
        "PARTITION_END": "2024-01-02T00:00:00+00:00",
    }


def test_hourly_partitions_with_a_date_only_end_cover_that_whole_day() -> None:
    keys = [p.key for p in date_partitions("2024-01-01", "2024-01-02", "hour")]
    assert len(keys) == 48
    assert keys[0] == "2024-01-01T00"
    assert keys[-1] == "2024-01-02T23"


def test_hourly_partitions_overlapping_a_datetime_range() -> None:
    keys = [p.key for p in date_partitions("2024-01-01T22:30", "2024-01-02T01:00", "hour")]
    assert keys == ["2024-01-01T22", "2024-01-01T23", "2024-01-02T00", "2024-01-02T01"]


def test_monthly_partitions_round_to_whole_months_and_cross_years() -> None:
    keys = [p.key for p in date_partitions("2023-11-15", "2024-02-02", "month")]
    assert keys == ["2023-11", "2023-12", "2024-01", "2024-02"]
    last = date_partitions("2023-12", "2023-12", "month")[0]
    assert (last.start, last.end) == (
        datetime(2023, 12, 1, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=UTC),
    )


def test_a_month_as_the_end_means_its_last_day() -> None:
    assert date_partitions("2024-02-27", "2024-02", "day")[-1].key == "2024-02-29"


def test_offsets_are_converted_to_utc() -> None:
    keys = [
        p.key for p in date_partitions("2024-01-01T01:00+02:00", "2024-01-01T01:00+02:00", "day")
    ]
    assert keys == ["2023-12-31"]


def test_integer_partitions_cut_the_last_range_at_the_end() -> None:
    partitions = int_partitions(0, 950, 100)
    assert [p.key for p in partitions[-2:]] == ["800..899", "900..950"]
    assert (partitions[-1].start, partitions[-1].end) == (900, 951)
    assert partitions[0].kind == "int:100"
    assert make_partitions("10", "12", "int", size=2) == [
        Partition("10..11", "int:2", 10, 10, 12),
        Partition("12..12", "int:2", 12, 12, 13),
    ]


@pytest.mark.parametrize(
    ("first", "last", "every", "message"),
    [
        (
            "2024-02-30",
            "2024-03-01",
            "day",
            "start: '2024-02-30' is not a valid date (day is out of range for month)",
        ),
        (
            "yesterday",
            "2024-03-01",
            "day",
            "start: 'yesterday' is not a date; write it as YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDTHH[:MM[:SS]][+HH:MM]",
        ),
        (
            "2024-03-01",
            "2024-01-01",
            "day",
            "start: start 2024-03-01 is after end 2024-01-01; swap them",
        ),
        (
            "2024-01-01",
            "2024-01-02",
            "week",
            "every: must be one of hour, day, month, int, not 'week'",
        ),
        ("9", "3", "int", "start: start 9 is after end 3; swap them"),
        ("a", "3", "int", "start: 'a' is not an integer"),
    ],
)
def test_bad_ranges_are_one_clear_message(first: str, last: str, every: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_partitions(first, last, every, size=5)
    assert str(caught.value) == message


def test_integer_partitions_need_a_positive_size() -> None:
    with pytest.raises(ConfigError, match=r"^size: integer partitions need a size"):
        make_partitions("1", "5", "int")
    with pytest.raises(ConfigError, match=r"^size: must be a positive integer, not 0$"):
        int_partitions(1, 5, 0)


@given(st.integers(-10_000, 10_000), st.integers(0, 5_000), st.integers(1, 700))
def test_integer_partitions_tile_the_range_exactly(lo: int, span: int, size: int) -> None:
    partitions = int_partitions(lo, lo + span, size)
    bounds = [(p.start, p.end) for p in partitions if isinstance(p.start, int)]
    ints = [(a, b) for a, b in bounds if isinstance(b, int)]
    assert len(ints) == len(partitions)
    covered = [n for a, b in ints for n in range(a, b)]
    assert covered == list(range(lo, lo + span + 1))
    assert all(b - a <= size for a, b in ints)
    assert len({p.key for p in partitions}) == len(partitions)


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    st.sampled_from(["hour", "day", "month"]),
)
def test_date_partitions_are_contiguous_and_cover_the_range(
    start: datetime, span: timedelta, every: str
) -> None:
    end = start + span
    if every == "hour" and span > timedelta(days=20):
        end = start + timedelta(days=20)
    partitions = date_partitions(start.isoformat(), end.isoformat(), every)  # type: ignore[arg-type]
    assert partitions[0].start <= start.replace(tzinfo=UTC) < partitions[0].end  # type: ignore[operator]
    assert partitions[-1].start <= end.replace(tzinfo=UTC) < partitions[-1].end  # type: ignore[operator]
    for before, after in itertools.pairwise(partitions):
        assert before.end == after.start
        assert before.ordinal < after.ordinal
