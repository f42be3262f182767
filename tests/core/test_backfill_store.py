"""The pure rules of partition states that every backfill store follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asyncetl.core.backfill_store import PartitionState, Reset, Status

NOW = datetime(2024, 1, 31, 12, tzinfo=UTC)


def state(status: Status, lease_until: datetime | None = None) -> PartitionState:
    return PartitionState("2024-01-31", "day", 1706659200, status, lease_until=lease_until)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("none", set()),
        ("failed", {"failed"}),
        ("all", {"failed", "succeeded", "stale"}),
    ],
)
def test_what_each_reset_sends_back_to_pending(reset: Reset, expected: set[str]) -> None:
    states = {
        "pending": state("pending"),
        "failed": state("failed"),
        "succeeded": state("succeeded"),
        "stale": state("running", lease_until=NOW - timedelta(seconds=1)),
        "live": state("running", lease_until=NOW + timedelta(seconds=1)),
    }

    resettable = {name for name, s in states.items() if s.resettable(reset, NOW)}

    assert resettable == expected
