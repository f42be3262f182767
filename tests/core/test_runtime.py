"""tune_gc, the command line's garbage-collector settings, and the same settings for a run."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import anyio
import pytest

from asyncetl import (
    Chunk,
    ListSink,
    ListSource,
    NullSink,
    Pipeline,
    Position,
    Source,
    Transform,
    tune_gc,
)
from asyncetl.cli import main


def test_tune_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object()]
    assert any(o is survivor for o in gc.get_objects())
    tune_gc()
    assert gc.get_threshold() == (100_000, 10, 10)
    # Frozen: no collection looks at it again.
    assert not any(o is survivor for o in gc.get_objects())
    tune_gc(young_threshold=5_000)
    assert gc.get_threshold() == (5_000, 10, 10)


def test_run_tunes_the_collector(capsys: pytest.CaptureFixture[str]) -> None:
    gc.set_threshold(700, 10, 10)
    spec = f"{__name__}:make_pipeline"
    assert main(["run", spec]) == 0
    assert gc.get_threshold()[0] == 100_000
    assert "records_out    3" in capsys.readouterr().out


def make_pipeline() -> object:
    from asyncetl import ListSink, ListSource, Pipeline

    return Pipeline("gc", ListSource([1, 2, 3]), ListSink())


class GcState:
    """What the collector looked like from inside a run, one entry per batch."""

    def __init__(self, survivor: object) -> None:
        self.survivor = survivor
        self.seen: list[tuple[bool, int, bool]] = []

    def note(self, records: list[int]) -> list[int]:
        """Whether anything is frozen, the young threshold, and whether ``survivor`` is
        in the collector's sight."""
        visible = any(o is self.survivor for o in gc.get_objects())
        self.seen.append((gc.get_freeze_count() > 0, gc.get_threshold()[0], visible))
        return records


def watched_pipeline(name: str, state: GcState, source: Source[int] | None = None) -> Pipeline:
    transform = Transform(state.note, kind="batch", name="note")
    source = source or ListSource([1, 2, 3], chunk_size=2)
    return Pipeline(name, source, ListSink(), [transform], max_batch_size=2)


@pytest.mark.anyio
async def test_a_run_freezes_what_existed_at_its_start_until_it_ends() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object()]
    state = GcState(survivor)
    await watched_pipeline("eased", state).run()
    assert state.seen == [(True, 100_000, False), (True, 100_000, False)]
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)
    assert any(o is survivor for o in gc.get_objects())


@pytest.mark.anyio
async def test_records_in_flight_are_not_walked_by_young_collections_during_a_run() -> None:
    """Batches of 5,000 new records, a few batches in flight at once: more containers alive
    than the old threshold (10,000, at which this run collected twice, walking records
    still in flight), fewer than the young threshold, so no young collection starts."""
    gc.set_threshold(700, 10, 10)
    young_collections = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal young_collections
        if phase == "start" and info["generation"] == 0:
            young_collections += 1

    sink = NullSink()
    pipeline = Pipeline(
        "in-flight",
        ListSource(list(range(200_000)), chunk_size=5_000),
        sink,
        [Transform(lambda n: {"n": n, "key": {"n": n}})],  # two new containers a record
        max_batch_size=5_000,
    )
    gc.callbacks.append(count)
    try:
        await pipeline.run()
    finally:
        gc.callbacks.remove(count)
    assert sink.records == 200_000
    assert young_collections == 0


@pytest.mark.anyio
async def test_a_run_leaves_a_collector_the_process_owner_tuned_as_it_is() -> None:
    survivor = [object()]
    tune_gc(young_threshold=5_000)
    state = GcState(survivor)
    await watched_pipeline("tuned", state).run()
    assert state.seen == [(True, 5_000, False), (True, 5_000, False)]
    assert gc.get_threshold() == (5_000, 10, 10)
    # Still frozen: the run gave back nothing it had not taken.
    assert not any(o is survivor for o in gc.get_objects())


@pytest.mark.anyio
async def test_a_run_leaves_a_disabled_collector_alone() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object()]
    state = GcState(survivor)
    gc.disable()
    try:
        await watched_pipeline("disabled", state).run()
    finally:
        gc.enable()
    assert state.seen == [(False, 700, True), (False, 700, True)]


@pytest.mark.anyio
async def test_concurrent_runs_keep_the_collector_eased_until_the_last_ends() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object()]
    first, second = GcState(survivor), GcState(survivor)
    first_done = anyio.Event()

    async def run_first() -> None:
        await watched_pipeline("first", first).run()
        first_done.set()

    async def run_second() -> None:
        # Its last batch comes only once the first run has ended.
        source = GatedSource([1, 2, 3], first_done)
        await watched_pipeline("second", second, source).run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_second)
        tg.start_soon(run_first)
    assert first.seen == [(True, 100_000, False), (True, 100_000, False)]
    assert second.seen == [(True, 100_000, False), (True, 100_000, False)]
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.anyio
async def test_a_threshold_set_during_a_run_stands_after_it() -> None:
    gc.set_threshold(700, 10, 10)

    def set_threshold(records: list[int]) -> list[int]:
        gc.set_threshold(2_000, 10, 10)
        return records

    transform = Transform(set_threshold, kind="batch")
    await Pipeline("set", ListSource([1]), ListSink(), [transform]).run()
    assert gc.get_threshold() == (2_000, 10, 10)
    assert gc.get_freeze_count() == 0


class GatedSource(ListSource[int]):
    """A list source whose last chunk waits for ``gate``."""

    def __init__(self, records: list[int], gate: anyio.Event) -> None:
        super().__init__(records, chunk_size=2)
        self.gate = gate

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
        async for chunk in super().read(after, max_chunk=max_chunk):
            if chunk.position == len(self.records):
                await self.gate.wait()
            yield chunk
