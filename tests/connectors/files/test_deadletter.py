from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import DeadLetter, JsonFileCheckpointStore, Pipeline
from asyncetl.connectors.files import JsonlDeadLetterStore, JsonlSink, JsonlSource
from tests.connectors.files.helpers import at

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def letter(pipeline: str, n: int, *, time: datetime = T0) -> DeadLetter:
    return DeadLetter(
        pipeline=pipeline,
        stage="parse",
        error=f"bad {n}",
        error_type="ValueError",
        record={"n": n, "raw": "x"},
        position={"offset": n},
        time=time,
    )


async def test_put_list_remove_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    store = JsonlDeadLetterStore(str(path))
    await store.put([letter("p", 1), letter("q", 2), letter("p", 3)])
    await store.put([letter("p", 4, time=T0 + timedelta(seconds=1))])

    listed = await store.list("p")
    ids = [x.id or "" for x in listed]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 3
    assert [
        (x.pipeline, x.stage, x.error, x.error_type, x.record, x.position, x.time) for x in listed
    ] == [
        ("p", "parse", "bad 1", "ValueError", {"n": 1, "raw": "x"}, {"offset": 1}, T0),
        ("p", "parse", "bad 3", "ValueError", {"n": 3, "raw": "x"}, {"offset": 3}, T0),
        (
            "p",
            "parse",
            "bad 4",
            "ValueError",
            {"n": 4, "raw": "x"},
            {"offset": 4},
            T0 + timedelta(seconds=1),
        ),
    ]
    assert all(x.time.tzinfo is not None for x in listed)
    assert [x.error for x in await store.list("p", limit=2)] == ["bad 1", "bad 3"]

    await store.remove("p", [ids[0], ids[2], "no-such-id"])
    assert [x.error for x in await store.list("p")] == ["bad 3"]
    assert [x.error for x in await store.list("q")] == ["bad 2"]
    assert len(path.read_bytes().splitlines()) == 2


async def test_times_are_stored_in_utc_and_naive_times_taken_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    store = JsonlDeadLetterStore(str(path))
    plus_two = timezone(timedelta(hours=2))
    await store.put(
        [
            letter("p", 1, time=datetime(2024, 1, 1, 12, tzinfo=plus_two)),
            letter("p", 2, time=datetime(2024, 1, 1, 12)),
        ]
    )
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["time"] for line in lines] == [
        "2024-01-01T10:00:00+00:00",
        "2024-01-01T12:00:00+00:00",
    ]
    assert [x.time for x in await store.list("p")] == [
        datetime(2024, 1, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 12, tzinfo=UTC),
    ]


async def test_unreadable_lines_are_skipped_by_list_and_kept_by_remove(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    store = JsonlDeadLetterStore(str(path))
    await store.put([letter("p", 1)])
    with path.open("ab") as file:
        file.write(b"garbage\n")
    await store.put([letter("p", 2)])
    with capture_logs() as logs:
        listed = await store.list("p")
    assert [x.error for x in listed] == ["bad 1", "bad 2"]
    assert [(e["event"], e["line"]) for e in logs] == [("unreadable dead letter skipped", 2)]

    with capture_logs():
        await store.remove("p", [listed[0].id or "?"])
    assert path.read_bytes().splitlines()[0] == b"garbage"
    assert len(path.read_bytes().splitlines()) == 2


async def test_missing_file_lists_nothing(tmp_path: Path) -> None:
    store = JsonlDeadLetterStore(str(tmp_path / "none.jsonl"))
    assert await store.list("p") == []
    await store.remove("p", ["abc"])
    assert not (tmp_path / "none.jsonl").exists()


async def test_pipeline_dead_letters_malformed_lines_and_they_can_be_replayed(
    tmp_path: Path,
) -> None:
    source_path = tmp_path / "in.jsonl"
    source_path.write_bytes(b'{"id":1}\n{"id":2,\n{"id":3}\n[4]\n{"id":5}\n')
    dead = JsonlDeadLetterStore(str(tmp_path / "dead.jsonl"))
    source = JsonlSource(str(source_path))
    pipeline = Pipeline(
        "files",
        source,
        JsonlSink(str(tmp_path / "out.jsonl")),
        checkpoints=JsonFileCheckpointStore(tmp_path / "checkpoints.json"),
        dead_letters=dead,
        source_errors="dead_letter",
        max_batch_size=2,
    )
    with capture_logs():
        stats = await pipeline.run()
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"id":1}\n{"id":3}\n{"id":5}\n'
    assert (stats.records_out, stats.dead_lettered, stats.position) == (3, 2, at(source_path, 40))

    letters = await dead.list("files")
    assert [(x.stage, x.record, x.error_type, x.position) for x in letters] == [
        ("jsonl", '{"id":2,', "ValueError", at(source_path, 18)),
        ("jsonl", "[4]", "ValueError", at(source_path, 31)),
    ]
    assert letters[1].error == f"line at byte 27 of {source_path} is an array, not a JSON object"
    # Replay: a fixed text decodes; the broken one still fails the same way.
    assert source.decode('{"id":2}') == {"id": 2}
    with pytest.raises(ValueError, match="not valid JSON"):
        source.decode(letters[0].record)


async def test_a_letter_whose_key_is_stored_is_skipped_also_by_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(orjson.dumps({"id": "old", **_fields(letter("p", 0))}) + b"\n")  # no key
    keyed = [replace(letter("p", n), key=f"k{n}") for n in (1, 2)]
    await JsonlDeadLetterStore(str(path)).put([keyed[0], keyed[0]])
    again = JsonlDeadLetterStore(str(path))  # a rerun: the keys come from the file
    await again.put(keyed)
    listed = await again.list("p")
    assert [(x.error, x.key) for x in listed] == [("bad 0", None), ("bad 1", "k1"), ("bad 2", "k2")]

    await again.remove("p", [listed[1].id or ""])
    await again.put(keyed)  # a removed letter's key is free again
    assert [(x.error, x.key) for x in await again.list("p")] == [
        ("bad 0", None),
        ("bad 2", "k2"),
        ("bad 1", "k1"),
    ]


def _fields(dead: DeadLetter) -> dict[str, object]:
    return {
        "pipeline": dead.pipeline,
        "stage": dead.stage,
        "error": dead.error,
        "error_type": dead.error_type,
        "record": dead.record,
        "position": dead.position,
        "time": dead.time.isoformat(),
    }


@pytest.mark.anyio
async def test_purge_rewrites_only_matching_lines_and_keeps_broken_ones(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    store = JsonlDeadLetterStore(str(path))
    now = datetime(2026, 5, 1, tzinfo=UTC)
    await store.put([DeadLetter("p", stage, "e", "E", {"s": stage}, 1, now) for stage in "aba"])
    with path.open("ab") as file:
        file.write(b"torn {\n")
    lines = path.read_bytes().splitlines(keepends=True)
    assert await store.purge("p", stage="zzz") == 0
    assert path.read_bytes() == b"".join(lines)
    assert await store.purge("p", stage="a") == 2
    assert path.read_bytes() == lines[1] + lines[3]
    assert [x.record for x in await store.find("p", limit=5)] == [{"s": "b"}]
