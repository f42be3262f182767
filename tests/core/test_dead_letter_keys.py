"""Dead-letter keys: the same record at the same place always gets the same key, stored once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    DeadLetter,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    Pipeline,
    Reject,
    StageError,
    Transform,
)
from asyncetl.core.deadletter import dead_letters, keyed

pytestmark = pytest.mark.anyio


def test_keys_digest_stage_position_record_and_ordinal() -> None:
    rejects = [Reject({"a": 1}, ValueError("x")), Reject({"a": 1}, ValueError("y"))]
    first = keyed(dead_letters("p", "check", rejects, 10))
    again = keyed(dead_letters("p", "check", rejects, 10))
    assert [d.key for d in first] == [d.key for d in again]
    assert len({d.key for d in first}) == 2  # identical records, two letters
    elsewhere = keyed(dead_letters("p", "check", rejects[:1], 11))
    other_stage = keyed(dead_letters("p", "sink", rejects[:1], 10))
    assert elsewhere[0].key not in {d.key for d in first}
    assert other_stage[0].key not in {d.key for d in first}
    assert all(len(d.key or "") == 64 for d in first)


async def test_the_memory_store_skips_keys_it_holds() -> None:
    store = MemoryDeadLetterStore()
    letters = keyed(dead_letters("p", "s", [Reject(1, ValueError("x"))], 1))
    await store.put([*letters, *letters])
    await store.put(letters)
    assert [(d.id, d.record) for d in await store.list("p")] == [("1", 1)]


def odd_is_bad(n: int) -> int:
    if n % 2:
        raise ValueError(f"{n} is odd")
    return n


class RefusingSink(ListSink[int]):
    """Refuses multiples of three."""

    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        await super().write(batch.replace([n for n in batch.records if n % 3]))
        return [
            Reject(n, ValueError(f"{n} is a multiple of 3")) for n in batch.records if n % 3 == 0
        ]


async def test_a_batch_dead_letters_from_transform_and_sink_together_after_the_write() -> None:
    store, checkpoints = MemoryDeadLetterStore(), MemoryCheckpointStore()
    run = Pipeline(
        "p",
        ListSource(list(range(8)), chunk_size=4),
        RefusingSink(),
        [Transform(odd_is_bad, name="even", on_error="dead_letter")],
        checkpoints=checkpoints,
        dead_letters=store,
        sink_errors="dead_letter",
        max_batch_size=4,
    )
    with capture_logs() as logs:
        stats = await run.run()
    assert [(d.stage, d.record, d.position) for d in await store.list("p")] == [
        ("even", 1, 4),
        ("even", 3, 4),
        ("list_sink", 0, 4),
        ("even", 5, 8),
        ("even", 7, 8),
        ("list_sink", 6, 8),
    ]
    assert stats.dead_lettered == 6
    assert [(e["stage"], e["records"]) for e in logs if e["event"] == "dead-lettered"] == [
        ("even", 2),
        ("list_sink", 1),
        ("even", 2),
        ("list_sink", 1),
    ]


class BrokenStore(MemoryDeadLetterStore):
    """A store whose disk is gone; a real one cannot be made to fail on cue in memory."""

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        raise OSError("disk gone")


async def test_a_batch_whose_dead_letters_cannot_be_stored_is_not_committed() -> None:
    checkpoints = MemoryCheckpointStore()
    run = Pipeline(
        "p",
        ListSource([*range(0, 16, 2), 9, *range(16, 24, 2)], chunk_size=4),
        ListSink(),
        [Transform(odd_is_bad, name="even", on_error="dead_letter")],
        checkpoints=checkpoints,
        dead_letters=BrokenStore(),
        max_batch_size=4,
    )
    with capture_logs(), pytest.raises(StageError, match="disk gone") as caught:
        await run.run()
    assert caught.value.stage == "dead_letters"
    assert [c.position for c in checkpoints.history] == [4, 8]
