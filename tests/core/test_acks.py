"""AckLedger: which upstream handles a committed position releases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asyncetl.core.acks import AckLedger


def ledger_of(*chunks: tuple[str, list[int]]) -> AckLedger[int, str]:
    """A ledger that handed out ``chunks`` (position, keys), each key's handle ``h<key>``."""
    ledger: AckLedger[int, str] = AckLedger()
    for position, keys in chunks:
        ledger.add(position, [(key, f"h{key}") for key in keys])
    return ledger


def test_take_through_returns_every_chunk_up_to_the_position_in_order() -> None:
    ledger = ledger_of(("p1", [1, 2]), ("p2", [3]), ("p3", [4, 5]))

    assert ledger.take_through("p2") == ["h1", "h2", "h3"]
    assert len(ledger) == 2
    assert 3 not in ledger
    assert 4 in ledger
    assert ledger.take_through("p3") == ["h4", "h5"]
    assert len(ledger) == 0


def test_a_position_never_handed_out_or_already_taken_takes_nothing() -> None:
    ledger = ledger_of(("p1", [1]), ("p2", [2]))

    assert ledger.take_through("elsewhere") == []
    assert ledger.take_through("p1") == ["h1"]
    assert ledger.take_through("p1") == []
    assert len(ledger) == 1


def test_a_chunk_without_messages_still_counts_as_handed_out() -> None:
    ledger = ledger_of(("p1", [1]), ("empty", []), ("p3", [3]))

    assert ledger.take_through("empty") == ["h1"]
    assert ledger.take_through("p3") == ["h3"]


def test_refresh_replaces_the_handle_of_an_outstanding_key_only() -> None:
    ledger = ledger_of(("p1", [1, 2]))

    ledger.refresh(2, "redelivered")
    ledger.refresh(9, "never handed out")

    assert 9 not in ledger
    assert ledger.take_through("p1") == ["h1", "redelivered"]


def test_keys_that_are_their_own_handles_are_taken_as_themselves() -> None:
    ledger: AckLedger[str, str] = AckLedger()
    ledger.add_keys("1-1", ["1-0", "1-1"])
    ledger.add_keys("2-0", ["2-0"])

    assert "1-1" in ledger
    assert ledger.take_through("1-1") == ["1-0", "1-1"]
    assert ledger.take_through("2-0") == ["2-0"]
    assert len(ledger) == 0


def test_holds_any_says_whether_some_key_is_outstanding() -> None:
    ledger = ledger_of(("p1", [1, 2]))

    assert ledger.holds_any([7, 2])
    assert not ledger.holds_any([7, 8])
    assert not ledger.holds_any([])
    ledger.take_through("p1")
    assert not ledger.holds_any([1, 2])


def test_a_key_carried_again_by_a_later_chunk_is_taken_once() -> None:
    ledger = ledger_of(("p1", [1, 2]), ("p2", [2, 3]))

    assert ledger.take_through("p2") == ["h1", "h2", "h3"]


def test_clear_forgets_everything_and_returns_what_was_outstanding() -> None:
    ledger = ledger_of(("p1", [1]), ("p2", [2, 3]))

    assert ledger.clear() == ["h1", "h2", "h3"]
    assert len(ledger) == 0
    assert ledger.take_through("p2") == []


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12), st.data())
def test_taking_through_any_position_releases_exactly_the_chunks_up_to_it(
    sizes: list[int], data: st.DataObject
) -> None:
    keys = iter(range(sum(sizes)))
    chunks = [(f"p{i}", [next(keys) for _ in range(size)]) for i, size in enumerate(sizes)]
    ledger = ledger_of(*chunks)
    cut = data.draw(st.integers(min_value=0, max_value=len(chunks) - 1))

    taken = ledger.take_through(f"p{cut}")

    before = [key for _, chunk_keys in chunks[: cut + 1] for key in chunk_keys]
    after = [key for _, chunk_keys in chunks[cut + 1 :] for key in chunk_keys]
    assert taken == [f"h{key}" for key in before]
    assert len(ledger) == len(after)
    assert all(key in ledger for key in after)
