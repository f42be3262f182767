"""JetStreamSink against a real NATS JetStream: publish acks, message ids, dropped replays."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    CheckpointError,
    JsonValue,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    PermanentError,
    Pipeline,
)
from asyncetl.connectors.nats import JetStreamRecord, JetStreamSink, message_id
from tests.connectors.nats.helpers import NATS_URL, Stream, pipeline, source

pytestmark = pytest.mark.anyio


def orders(first: int, last: int) -> list[JsonValue]:
    return [{"id": i, "sku": f"sku-{i}"} for i in range(first, last)]


async def stored(stream: Stream) -> list[JsonValue]:
    """The data of every message in the stream, read back through the source."""
    sink = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(source(stream, durable="check"), sink).run()
    return [record["data"] for record in sink.records]


async def write(sink: JetStreamSink, batches: Sequence[Batch[JsonValue]]) -> list[object]:
    await sink.open()
    try:
        rejects = [reject for batch in batches for reject in await sink.write(batch)]
    finally:
        await sink.aclose()
    return [reject.record for reject in rejects]


async def test_a_pipeline_round_trip_keeps_records_and_stamps_message_ids(stream: Stream) -> None:
    records = [{"n": 1, "tags": ["a"]}, "text", 3, None, {"nested": {"x": 1.5}}]
    with capture_logs():
        await Pipeline(
            "to_nats", ListSource(records), JetStreamSink(NATS_URL, stream.subject)
        ).run()
    back = ListSink[JetStreamRecord]()
    with capture_logs():
        await pipeline(source(stream), back).run()

    assert [record["data"] for record in back.records] == records
    assert [record["headers"] for record in back.records] == [
        {"Nats-Msg-Id": message_id("nats_sink", stream.subject, 5, i)} for i in range(5)
    ]


async def test_a_replayed_batch_is_dropped_by_the_duplicate_window(stream: Stream) -> None:
    sink = JetStreamSink(NATS_URL, stream.subject)
    batch = Batch(0, orders(0, 5), 5)
    await write(sink, [batch, batch])

    assert await stored(stream) == orders(0, 5)
    assert sink.duplicates == 5


async def test_a_batch_replayed_after_a_failed_commit_is_not_duplicated(stream: Stream) -> None:
    class FlakyCheckpoints(MemoryCheckpointStore):
        async def save(self, checkpoint: Checkpoint) -> None:
            if len(self.history) == 1 and not getattr(self, "failed", False):
                self.failed = True
                raise OSError("disk full")
            await super().save(checkpoint)

    checkpoints = FlakyCheckpoints()
    sink = JetStreamSink(NATS_URL, stream.subject)
    run = Pipeline(
        "to_nats", ListSource(orders(0, 30)), sink, checkpoints=checkpoints, max_batch_size=10
    )
    with capture_logs(), pytest.raises(CheckpointError, match="disk full"):
        await run.run()
    assert checkpoints.positions == {("to_nats", "list_source"): 10}

    with capture_logs():
        await run.run()  # batch two again (same position, same records), then batch three

    assert sink.duplicates == 10
    assert await stored(stream) == orders(0, 30)


async def test_with_id_field_a_replay_cut_into_other_batches_is_dropped(stream: Stream) -> None:
    sink = JetStreamSink(NATS_URL, stream.subject, id_field="id")
    rejected = await write(
        sink, [Batch(0, orders(0, 5), 5), Batch(1, [*orders(3, 8), {"sku": "no id"}], 8)]
    )

    assert rejected == [{"sku": "no id"}]
    assert await stored(stream) == orders(0, 8)
    assert sink.duplicates == 2


async def test_without_dedupe_a_replayed_batch_is_published_again(stream: Stream) -> None:
    sink = JetStreamSink(NATS_URL, stream.subject, dedupe=False)
    batch = Batch(0, orders(0, 3), 3)
    await write(sink, [batch, batch])  # at-least-once: the documented behaviour

    assert await stored(stream) == orders(0, 3) * 2


async def test_a_record_json_cannot_encode_is_a_reject(stream: Stream) -> None:
    sink = JetStreamSink(NATS_URL, stream.subject)
    odd: object = {"x": {1, 2}}
    rejected = await write(sink, [Batch(0, [odd, {"ok": True}], 2)])  # type: ignore[list-item]

    assert rejected == [odd]
    assert await stored(stream) == [{"ok": True}]


async def test_a_subject_no_stream_captures_fails_clearly() -> None:
    sink = JetStreamSink(NATS_URL, "asyncetl_test_nobody.listens")
    with pytest.raises(PermanentError) as caught:
        await write(sink, [Batch(0, orders(0, 1), 1)])
    assert str(caught.value) == (
        "no JetStream stream on NATS at 127.0.0.1:4222 answered publish to "
        "asyncetl_test_nobody.listens; create a stream whose subjects include it"
    )
