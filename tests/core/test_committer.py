"""The Committer alone: the low watermark, the checkpoint and the upstream acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncetl import (
    Batch,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    DeadLetterStore,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    Position,
    Reject,
    RunStats,
    Settle,
    StageError,
    TransactionalWriter,
)
from asyncetl.core._committer import Committer

pytestmark = pytest.mark.anyio


def committer(
    store: CheckpointStore,
    source: ListSource[int] | None = None,
    sink: ListSink[int] | None = None,
) -> tuple[Committer, RunStats]:
    stats = RunStats()
    made = Committer(
        pipeline="p",
        source=source or ListSource([], name="src"),
        sink=sink or ListSink(),
        checkpoints=store,
        stats=stats,
        log=structlog.get_logger("test"),
    )
    return made, stats


def batches(n: int) -> list[Batch[int]]:
    return [Batch(seq, [seq], f"p{seq}") for seq in range(n)]


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=40).flatmap(lambda n: st.permutations(range(n))))
def test_acks_in_any_order_commit_only_the_acknowledged_prefix(order: list[int]) -> None:
    async def main() -> None:
        store = MemoryCheckpointStore()
        source: ListSource[int] = ListSource([], name="src")
        commit, stats = committer(store, source)
        assert await commit.resume() is None
        for batch in batches(len(order)):
            commit.register(batch)
        acked: set[int] = set()
        committed: list[Position] = []
        for seq in order:
            await commit.commit(Batch(seq, [seq], f"p{seq}"))
            acked.add(seq)
            prefix = 0
            while prefix in acked:
                prefix += 1
            expected = f"p{prefix - 1}" if prefix else None
            assert commit.position == store.positions.get(("p", "src")) == expected
            assert commit.pending == len(order) - prefix
            if expected is not None and (not committed or committed[-1] != expected):
                committed.append(expected)
        # Each move of the watermark saved once and acknowledged upstream once, in order.
        assert [c.position for c in store.history] == committed
        assert source.acknowledged == committed
        assert (stats.batches_committed, stats.position) == (len(committed), f"p{len(order) - 1}")

    anyio.run(main)


async def test_resume_starts_the_watermark_at_the_stored_position() -> None:
    store = MemoryCheckpointStore()
    await store.save(Checkpoint("p", "src", 41))
    commit, stats = committer(store)
    assert await commit.resume() == 41
    assert (commit.position, stats.position, commit.pending) == (41, 41, 0)
    commit.register(Batch(0, [], 42))
    assert commit.pending == 1
    await commit.commit(Batch(0, [], 42))
    assert (store.positions[("p", "src")], stats.position, commit.pending) == (42, 42, 0)


class _TransactionalSink(ListSink[int]):
    """Writes each batch with its checkpoint, as a sink committing to ``store`` would."""

    def __init__(self, store: MemoryCheckpointStore) -> None:
        super().__init__()
        self.store = store
        self.written: list[tuple[int, Checkpoint]] = []

    def commits_to(self, store: CheckpointStore) -> bool:
        return store is self.store

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[int] | None:
        return self._write_with_checkpoint if self.commits_to(store) else None

    async def _write_with_checkpoint(
        self, batch: Batch[int], checkpoint: Checkpoint, settle: Settle | None = None
    ) -> Sequence[Reject]:
        self.written.append((batch.seq, checkpoint))
        return ()


async def test_a_transactional_sink_writes_the_checkpoint_its_ack_will_commit() -> None:
    store = MemoryCheckpointStore()
    sink = _TransactionalSink(store)
    source: ListSource[int] = ListSource([], name="src")
    commit, stats = committer(store, source, sink)
    assert commit.transactional
    await commit.resume()
    first, second = batches(2)
    commit.register(first)
    commit.register(second)
    # Batch 1 first: its ack will not move the watermark past batch 0.
    await commit.write_with_checkpoint(second)
    await commit.commit(second)
    await commit.write_with_checkpoint(first)
    await commit.commit(first)
    assert sink.written == [(1, Checkpoint("p", "src", None)), (0, Checkpoint("p", "src", "p1"))]
    assert store.history == []  # the committer saved nothing itself
    assert (source.acknowledged, stats.position, stats.batches_committed) == (["p1"], "p1", 1)


async def test_with_a_sink_that_commits_elsewhere_the_committer_saves_the_checkpoint() -> None:
    store = MemoryCheckpointStore()
    sink = _TransactionalSink(MemoryCheckpointStore())
    commit, _ = committer(store, sink=sink)
    assert not commit.transactional
    await commit.resume()
    commit.register(Batch(0, [1], 1))
    await commit.commit(Batch(0, [1], 1))
    assert store.history == [Checkpoint("p", "src", 1)]
    assert sink.written == []


class _BrokenStore(MemoryCheckpointStore):
    async def save(self, checkpoint: Checkpoint) -> None:
        raise OSError("disk full")


async def test_a_failed_save_is_a_checkpoint_error_and_nothing_is_acknowledged() -> None:
    source: ListSource[int] = ListSource([], name="src")
    commit, stats = committer(_BrokenStore(), source)
    await commit.resume()
    commit.register(Batch(0, [1], 1))
    with pytest.raises(CheckpointError) as info:
        await commit.commit(Batch(0, [1], 1))
    assert str(info.value) == (
        "cannot save the checkpoint of pipeline 'p' at 1: OSError: disk full"
    )
    assert (source.acknowledged, stats.batches_committed) == ([], 0)


class _RefusingAck(ListSource[int]):
    async def acknowledge(self, position: Position) -> None:
        raise ConnectionError("upstream gone")


async def test_a_failed_upstream_ack_names_the_source_and_the_committed_position() -> None:
    store = MemoryCheckpointStore()
    commit, stats = committer(store, _RefusingAck([], name="src"))
    await commit.resume()
    commit.register(Batch(0, [1], 1))
    with pytest.raises(StageError) as info:
        await commit.commit(Batch(0, [1], 1))
    assert str(info.value) == (
        "stage 'src' failed on the batch ending at position 1: ConnectionError: upstream gone"
    )
    assert (store.positions[("p", "src")], stats.position) == (1, 1)  # saved before the ack


class _UnreadableStore(MemoryCheckpointStore):
    async def load(self, pipeline: str, source: str) -> Any:
        raise ValueError("garbled")


async def test_an_unreadable_checkpoint_is_a_checkpoint_error() -> None:
    commit, _ = committer(_UnreadableStore())
    with pytest.raises(CheckpointError) as info:
        await commit.resume()
    assert str(info.value) == "cannot load the checkpoint of pipeline 'p': ValueError: garbled"
