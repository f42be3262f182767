"""A sink that writes alone: the other stages make no batch while it writes."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from asyncetl import Batch, Pipeline, Reject, StageError, Transform
from tests.core.helpers import SlowSink, TrackedSource

pytestmark = pytest.mark.anyio


class WindowSink(SlowSink):
    """Logs when each write starts as well as when it ends (``write <position>``)."""

    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        self.events.append(f"write start {batch.position}")
        return await super().write(batch)


def logged_transform(events: list[str]) -> Transform:
    def note(records: list[int]) -> list[int]:
        events.append(f"transform {records[-1] + 1}")
        return records

    return Transform(note, kind="batch", name="note")


def inside_writes(events: list[str]) -> list[list[str]]:
    """The events logged between each write's start and its end."""
    windows: list[list[str]] = []
    current: list[str] | None = None
    for event in events:
        if event.startswith("write start"):
            current = []
        elif event.startswith("write "):
            assert current is not None
            windows.append(current)
            current = None
        elif current is not None:
            current.append(event)
    return windows


async def run(*, writes_alone: bool) -> tuple[list[str], WindowSink]:
    events: list[str] = []
    sink = WindowSink(delay=0.01, events=events)
    sink.writes_alone = writes_alone
    source = TrackedSource(60, chunk=10, events=events)
    pipeline = Pipeline("gate", source, sink, [logged_transform(events)], max_batch_size=10)
    with anyio.fail_after(10):
        await pipeline.run()
    return events, sink


async def test_while_it_writes_no_stage_transforms_and_the_source_reads_one_chunk_at_most() -> None:
    events, sink = await run(writes_alone=True)
    assert [r for b in sink.batches for r in b.records] == list(range(60))
    assert [b.position for b in sink.batches] == [10, 20, 30, 40, 50, 60]
    windows = inside_writes(events)
    assert len(windows) == 6
    for window in windows:
        assert not [e for e in window if e.startswith("transform")], window
        assert len([e for e in window if e.startswith("read")]) <= 1, window
    # Every batch still goes through in order, each acknowledged after its write.
    acks = [e for e in events if e.startswith("ack")]
    assert acks == ["ack 10", "ack 20", "ack 30", "ack 40", "ack 50", "ack 60"]


async def test_other_sinks_have_the_next_batches_made_while_they_write() -> None:
    events, sink = await run(writes_alone=False)
    assert [r for b in sink.batches for r in b.records] == list(range(60))
    # The first write's pause is spent reading and transforming what follows.
    first = inside_writes(events)[0]
    assert "transform 20" in first
    assert "read 30" in first


async def test_a_failed_write_lets_the_waiting_stages_go_and_the_run_fails() -> None:
    events: list[str] = []
    sink = WindowSink(delay=0.01, fail_on=25, events=events)
    sink.writes_alone = True
    source = TrackedSource(60, chunk=10, events=events)
    pipeline = Pipeline("gate", source, sink, [logged_transform(events)], max_batch_size=10)
    with anyio.fail_after(10), pytest.raises(StageError) as caught:
        await pipeline.run()
    assert caught.value.stage == "slow_sink"
    assert str(caught.value.__cause__) == "cannot write record 25"
    assert [b.position for b in sink.batches] == [10, 20]
    assert source.acknowledged == [10, 20]
