"""``check_pipeline``: every resource asked at once, problems keyed by spec key, a time limit."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from asyncetl import (
    Batch,
    ListSource,
    MemoryDeadLetterStore,
    PermanentError,
    Pipeline,
    Problem,
    Reject,
    Sink,
)
from asyncetl.spec import CheckReport, check_pipeline

pytestmark = pytest.mark.anyio


class Refusing(Sink[object]):
    """A sink whose open() fails, answering check() through the default."""

    def __init__(self) -> None:
        self.closed = 0

    async def open(self) -> None:
        raise PermanentError("no route to the warehouse")

    async def aclose(self) -> None:
        self.closed += 1

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        return ()


class Silent(Sink[object]):
    """A sink whose check never answers."""

    async def check(self) -> list[Problem]:
        await anyio.sleep(3600)
        return []

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        return ()


async def test_the_default_check_opens_and_closes_and_reports_what_open_raised() -> None:
    sink = Refusing()
    assert await sink.check() == [Problem(None, "no route to the warehouse")]
    assert sink.closed == 1


async def test_problems_carry_the_spec_key_and_every_resource_is_listed() -> None:
    pipeline = Pipeline("p", ListSource([1]), Refusing(), dead_letters=MemoryDeadLetterStore())
    assert await check_pipeline(pipeline, "p.toml") == CheckReport(
        checked=[
            ("source", "ListSource"),
            ("sink", "Refusing"),
            ("checkpoints", "MemoryCheckpointStore"),
            ("dead_letters", "MemoryDeadLetterStore"),
        ],
        problems=["p.toml: sink: no route to the warehouse"],
        keyed=[("sink", "no route to the warehouse")],
    )


async def test_a_resource_that_does_not_answer_in_time_is_a_problem() -> None:
    pipeline = Pipeline("p", ListSource([1]), Silent())
    with anyio.fail_after(5):
        report = await check_pipeline(pipeline, "p.toml", time_limit=0.2)
    assert report.problems == ["p.toml: sink: no answer within 0.2 s"]
