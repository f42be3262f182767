"""File sources and sinks inside a running pipeline."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    JsonFileCheckpointStore,
    ListSink,
    MemoryCheckpointStore,
    PermanentError,
    Pipeline,
    StageError,
)
from asyncetl.connectors.files import CsvSource, JsonlSink, JsonlSource
from tests.connectors.files.helpers import append_bytes, at

pytestmark = pytest.mark.anyio


async def test_a_following_pipeline_loads_appended_lines_and_stops_gracefully(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id":0}\n')
    store = MemoryCheckpointStore()
    sink: ListSink[dict[str, object]] = ListSink()
    pipeline = Pipeline(
        "follow",
        JsonlSource(str(path), follow=True, poll_interval=0.01),
        sink,
        checkpoints=store,
        max_batch_age=0.02,
    )

    async def append_then_stop() -> None:
        for i in range(1, 4):
            await anyio.sleep(0.05)
            append_bytes(path, b'{"id":%d}\n' % i)
        append_bytes(path, b'{"id":')  # half a line when the stop comes
        with anyio.fail_after(5):
            while len(sink.records) < 4:
                await anyio.sleep(0.01)
        pipeline.stop()

    with capture_logs():
        async with anyio.create_task_group() as tg:
            tg.start_soon(append_then_stop)
            stats = await pipeline.run()
    assert sink.records == [{"id": i} for i in range(4)]
    assert stats.position == store.positions["follow", "jsonl"] == at(path, 36)


async def test_stop_when_idle_ends_a_following_csv_pipeline_after_a_resume(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,v\n1,a\n2,b\n")
    checkpoints = JsonFileCheckpointStore(tmp_path / "checkpoints.json")
    out = tmp_path / "out.jsonl"

    def run() -> Pipeline:
        source = CsvSource(str(path), follow=True, poll_interval=0.01)
        return Pipeline(
            "csv",
            source,
            JsonlSink(str(out)),
            checkpoints=checkpoints,
            stop_when_idle=0.2,
            max_batch_age=0.02,
        )

    with capture_logs():
        first = await run().run()
        append_bytes(path, b"3,c\n")
        second = await run().run()
    assert (first.position, second.position) == (at(path, 13), at(path, 17))
    assert out.read_bytes() == (b'{"id":"1","v":"a"}\n{"id":"2","v":"b"}\n{"id":"3","v":"c"}\n')


async def test_a_pipeline_reads_every_block_once_in_order_and_ends_at_the_last_line(
    tmp_path: Path,
) -> None:
    # Blocks of 64 bytes read one ahead of the decoding: 500 lines, each exactly once.
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(b'{"id":%d}\n' % i for i in range(500)) + b'{"id":')
    store = MemoryCheckpointStore()
    sink: ListSink[dict[str, object]] = ListSink()
    pipeline = Pipeline(
        "blocks",
        JsonlSource(str(path), block_size=64),
        sink,
        checkpoints=store,
        max_batch_size=7,
    )
    with capture_logs() as logs:
        stats = await pipeline.run()
    assert sink.records == [{"id": i} for i in range(500)]
    end = path.stat().st_size - len(b'{"id":')
    assert stats.position == store.positions["blocks", "jsonl"] == at(path, end)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "incomplete last line; stopping before it"
    ]


async def test_a_missing_file_fails_the_pipeline_with_the_source_s_own_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing.jsonl"
    pipeline = Pipeline("missing", JsonlSource(str(path)), ListSink())
    with capture_logs(), pytest.raises(StageError) as caught:
        await pipeline.run()
    assert caught.value.stage == "jsonl"
    cause = caught.value.__cause__
    assert isinstance(cause, PermanentError)
    assert str(cause) == f"file {path} does not exist; check the path"
