from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncetl import Watermark


def contiguous_prefix(acked: set[int]) -> int:
    """How many batches from 0 are all acknowledged."""
    n = 0
    while n in acked:
        n += 1
    return n


@given(st.integers(min_value=1, max_value=60).flatmap(lambda n: st.permutations(range(n))))
def test_random_ack_orders_never_commit_past_a_gap(order: list[int]) -> None:
    mark = Watermark(start="start")
    for seq in range(len(order)):
        mark.register(seq, f"p{seq}")
    acked: set[int] = set()
    previous = -1
    for seq in order:
        predicted = mark.peek_ack(seq)
        mark.ack(seq)
        acked.add(seq)
        prefix = contiguous_prefix(acked)
        expected = "start" if prefix == 0 else f"p{prefix - 1}"
        assert mark.position == expected == predicted
        assert prefix - 1 >= previous  # never backwards
        previous = prefix - 1
        assert mark.pending == len(order) - prefix
    assert mark.position == f"p{len(order) - 1}"


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_interleaved_register_and_ack(acks_now: list[bool]) -> None:
    mark = Watermark()
    waiting: list[int] = []
    for seq, ack_now in enumerate(acks_now):
        mark.register(seq, seq)
        waiting.append(seq)
        if ack_now:
            mark.ack(waiting.pop())  # newest first: out of order
    committed = mark.position
    assert committed is None or all(s > committed for s in waiting)  # type: ignore[operator]


def test_ack_reports_whether_the_watermark_moved() -> None:
    mark = Watermark()
    mark.register(0, "a")
    mark.register(1, "b")
    assert mark.ack(1) is False
    assert mark.position is None
    assert mark.ack(0) is True
    assert mark.position == "b"


def test_unknown_and_duplicate_acks_are_refused() -> None:
    mark = Watermark()
    mark.register(0, "a")
    with pytest.raises(ValueError, match="batch 5 is not awaiting acknowledgement"):
        mark.ack(5)
    mark.ack(0)
    with pytest.raises(ValueError, match="batch 0 is not awaiting acknowledgement"):
        mark.ack(0)
    with pytest.raises(ValueError, match="batch 3 registered out of order; expected 1"):
        mark.register(3, "x")
