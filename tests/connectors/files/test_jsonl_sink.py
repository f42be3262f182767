from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from asyncetl import Batch, PermanentError
from asyncetl.connectors.files import JsonlSink

pytestmark = pytest.mark.anyio


async def test_one_line_per_record_with_unknown_types_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    await sink.open()
    try:
        rejects = await sink.write(
            Batch(
                0,
                [
                    {"a": 1, "b": [1, None]},
                    {"when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "price": Decimal("1.50")},
                    {1: "integer key"},
                    {"big": 2**70},
                    "plain text",
                    {"blob": b"\x00\xff", "parts": [bytearray(b"ab"), memoryview(b"")]},
                    {"blob": b"\x00\xff", "big": 2**70},
                ],
                7,
            )
        )
    finally:
        await sink.aclose()
    assert rejects == []
    assert path.read_bytes().splitlines() == [
        b'{"a":1,"b":[1,null]}',
        b'{"when":"2024-01-02T03:04:05+00:00","price":"1.50"}',
        b'{"1":"integer key"}',
        b'{"big":1180591620717411303424}',
        b'"plain text"',
        b'{"blob":"AP8=","parts":["YWI=",""]}',  # bytes as base64, not Python's repr
        b'{"blob":"AP8=","big":1180591620717411303424}',
    ]


async def test_batches_append_across_sinks(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    for n in range(3):
        sink = JsonlSink(str(path), fsync=n % 2 == 0)
        await sink.write(Batch(n, [{"n": n}], n))  # opens on first use
        await sink.aclose()
    assert path.read_bytes() == b'{"n":0}\n{"n":1}\n{"n":2}\n'


async def test_a_torn_last_line_is_closed_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":')
    sink = JsonlSink(str(path))
    with capture_logs() as logs:
        await sink.write(Batch(0, [{"b": 2}], 1))
    await sink.aclose()
    assert path.read_bytes() == b'{"a":1}\n{"a":\n{"b":2}\n'
    assert logs == [
        {
            "event": "file ends in an incomplete line; starting a new line",
            "log_level": "warning",
            "path": str(path),
            "offset": 13,
        }
    ]


async def test_a_record_that_cannot_be_encoded_is_the_only_reject(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    circular: list[object] = []
    circular.append(circular)
    sink = JsonlSink(str(path))
    rejects = await sink.write(Batch(0, [{"ok": 1}, circular], 2))
    await sink.aclose()
    assert [(r.record is circular, str(r.error)) for r in rejects] == [
        (True, "cannot encode as JSON: Circular reference detected"),
    ]
    assert path.read_bytes() == b'{"ok":1}\n'


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.jsonl"
    with pytest.raises(PermanentError) as caught:
        await JsonlSink(str(path)).open()
    assert str(caught.value) == (
        f"cannot open {path} for appending: No such file or directory; check that its "
        "directory exists and is writable"
    )


async def test_a_batch_past_a_mebibyte_is_written_whole_and_in_order(tmp_path: Path) -> None:
    # The first mebibyte of lines is encoded before the append starts, the rest with it:
    # every record lands once, in order, and a refused one past the cut is still refused.
    path = tmp_path / "out.jsonl"
    circular: list[object] = []
    circular.append(circular)
    records: list[object] = [{"n": n, "text": "x" * 1000} for n in range(1500)]
    records[3], records[1400] = circular, circular
    sink = JsonlSink(str(path))
    rejects = await sink.write(Batch(0, records, 1500))
    await sink.aclose()
    assert [str(r.error) for r in rejects] == [
        "cannot encode as JSON: Circular reference detected"
    ] * 2
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == [
        n for n in range(1500) if n not in (3, 1400)
    ]


async def test_a_batch_of_refused_records_only_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    circular: list[object] = []
    circular.append(circular)
    sink = JsonlSink(str(path))
    rejects = await sink.write(Batch(0, [circular], 1))
    await sink.aclose()
    assert [r.record is circular for r in rejects] == [True]
    assert path.read_bytes() == b""
