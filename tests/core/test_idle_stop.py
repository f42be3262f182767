"""``stop_when_idle`` with a source whose upstream must confirm its end: the mark is asked
once a quiet spell, heartbeats confirm it, a gathering sink is flushed for it, and the run
gives up only after a spell without any commit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import Chunk, ListSink, Pipeline, Position, Source
from asyncetl.core import _stages
from tests.core.helpers import TrackedSource
from tests.core.test_holding_sink import GatheringSink

pytestmark = pytest.mark.anyio

GAVE_UP = "idle; stopping before the source confirmed its upstream's end"


class WalkingSource(Source[int]):
    """Reads ``n`` records; once asked where its upstream ends (``ahead`` positions past
    where it has read), walks on over an upstream with nothing for it: one heartbeat (a
    position, no records) every ``step`` seconds, as a replication stream passing other
    databases' WAL does. With ``ahead = None`` it never walks, and its upstream ends
    where it will never get."""

    def __init__(self, n: int, *, ahead: int | None, step: float) -> None:
        self.name = "walking"
        self.n = n
        self.ahead = ahead
        self.step = step
        self.read_to = 0
        self.asked: list[int] = []
        self.acknowledged: list[int] = []
        self._walk = anyio.Event()

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
        self.read_to = self.n
        yield Chunk(list(range(self.n)), self.n)
        await self._walk.wait()
        while True:
            await anyio.sleep(self.step)
            if self.ahead is not None:
                self.read_to += 1
                yield Chunk([], self.read_to)

    async def acknowledge(self, position: Position) -> None:
        assert isinstance(position, int)
        self.acknowledged.append(position)

    async def upstream_end(self) -> object:
        self.asked.append(self.read_to + (self.ahead if self.ahead is not None else 1_000_000))
        self._walk.set()
        return self.asked[-1]

    def confirmed_through(self, mark: object) -> bool:
        assert isinstance(mark, int)
        return bool(self.acknowledged) and self.acknowledged[-1] >= mark


def pipeline(source: Source[int]) -> Pipeline:
    return Pipeline("p", source, ListSink(), max_batch_age=0.01, stop_when_idle=0.1)


async def test_heartbeats_confirm_the_mark_asked_when_the_quiet_began() -> None:
    # An upstream that always ends a little past the source: asked again at each heartbeat,
    # its end would move on for ever and the run would only give up.
    source = WalkingSource(3, ahead=5, step=0.01)
    with capture_logs() as logs, anyio.fail_after(10):
        stats = await pipeline(source).run()
    assert source.asked == [8]
    assert source.acknowledged[0] == 3
    assert source.acknowledged[-1] >= 8
    assert stats.records_in == 3
    assert GAVE_UP not in [e["event"] for e in logs]
    assert "idle; stopping" in [e["event"] for e in logs]


async def test_a_run_waits_past_the_confirm_wait_while_the_source_keeps_confirming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_stages, "_CONFIRM_WAIT", 0.3)
    # 40 heartbeats 20 ms apart: the end is confirmed after ~0.8 s, well past the 0.3 s
    # the run waits without progress, yet every heartbeat committed is progress.
    source = WalkingSource(3, ahead=40, step=0.02)
    with capture_logs() as logs, anyio.fail_after(10):
        await pipeline(source).run()
    assert source.asked == [43]
    assert source.acknowledged[-1] >= 43
    assert GAVE_UP not in [e["event"] for e in logs]


async def test_a_run_gives_up_after_the_confirm_wait_without_any_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_stages, "_CONFIRM_WAIT", 0.3)
    source = WalkingSource(3, ahead=None, step=0.02)
    with capture_logs() as logs, anyio.fail_after(10):
        stats = await pipeline(source).run()
    assert source.acknowledged == [3]
    assert not stats.stopped_early  # what was read is committed all the same
    assert [e["log_level"] for e in logs if e["event"] == GAVE_UP] == ["warning"]


class ConfirmingSource(TrackedSource):
    """Follows a finite upstream whose end is the last position, confirmed once acknowledged."""

    async def upstream_end(self) -> object:
        return self.n

    def confirmed_through(self, mark: object) -> bool:
        return bool(self.acknowledged) and self.acknowledged[-1] == mark


async def test_a_sink_that_gathers_for_a_later_commit_is_flushed_once_the_run_is_quiet() -> None:
    events: list[str] = []
    source = ConfirmingSource(30, chunk=10, events=events, follow=True)
    sink = GatheringSink(events, every=1000, wait=3600)  # its own deadline: in an hour
    run = Pipeline("p", source, sink, max_batch_size=10, max_batch_age=0.01, stop_when_idle=0.1)
    with capture_logs() as logs, anyio.fail_after(10):
        stats = await run.run()
    assert sink.durable == list(range(30))
    assert [e for e in events if e.startswith(("flush", "ack"))] == ["flush 30", "ack 30"]
    assert (stats.records_in, stats.stopped_early) == (30, False)
    assert GAVE_UP not in [e["event"] for e in logs]
