"""A file source's progress: bytes read of the file's size, with a recent rate and ETA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncetl import Batch, ListSink, Pipeline, Reject
from asyncetl.connectors.files import CsvSource, JsonlSource

pytestmark = pytest.mark.anyio


class SlowRecordSink(ListSink[Any]):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def write(self, batch: Batch[Any]) -> Sequence[Reject]:
        await anyio.sleep(self.delay)
        return await super().write(batch)


async def test_a_jsonl_file_shows_bytes_read_of_its_size_and_an_eta_while_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(b'{"id": %d}\n' % i for i in range(2000)))
    size = path.stat().st_size
    source = JsonlSource(str(path), block_size=256)
    pipeline = Pipeline("file", source, SlowRecordSink(delay=0.05), max_batch_size=20, queue_size=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(10):
            while not pipeline.observe().progress or pipeline.observe().progress[0].eta_s is None:
                await anyio.sleep(0.05)
        part = pipeline.observe().progress[0]
        assert (part.part, part.unit, part.total) == ("", "bytes", size)
        assert 0 < part.done < size
        assert part.per_s > 0
        assert part.eta_s == round((size - part.done) / part.per_s, 1)
        pipeline.stop(immediate=True)
    assert source.progress()[0].total == size


async def test_a_csv_file_counts_from_its_header_and_ends_at_its_size(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n1,a\n2,b\n3,c\n")
    source = CsvSource(str(path))
    await Pipeline("csv", source, ListSink[Any]()).run()
    assert [(p.done, p.total, p.unit) for p in source.progress()] == [(20, 20, "bytes")]


async def test_a_followed_file_has_no_total(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1}\n')
    source = JsonlSource(str(path), follow=True, poll_interval=0.01)
    pipeline = Pipeline("follow", source, ListSink[Any](), stop_when_idle=0.2)
    await pipeline.run()
    assert [(p.done, p.total) for p in source.progress()] == [(10, None)]
