from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import cast

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from asyncetl import Chunk, ConfigError, JsonValue, PermanentError
from asyncetl.connectors.files import JsonlSource
from asyncetl.connectors.files._jsonl import JsonRecord
from tests.connectors.files.helpers import append_bytes, at, follow_into, read_all, records, rejects

pytestmark = pytest.mark.anyio


def write_lines(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(lines))
    return path


async def test_records_come_in_chunks_ending_at_byte_offsets(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":2}\n', b'{"id":3,"x":[1]}\n')
    chunks = await read_all(JsonlSource(str(path)), max_chunk=2)
    assert [(c.records, c.position, c.rejects) for c in chunks] == [
        ([{"id": 1}, {"id": 2}], at(path, 18), []),
        ([{"id": 3, "x": [1]}], at(path, 35), []),
    ]


async def test_resume_after_a_committed_offset_reads_exactly_the_remainder(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", *(b'{"id":%d}\n' % i for i in range(10)))
    first = await read_all(JsonlSource(str(path)), max_chunk=3)
    committed = first[1].position
    assert committed == at(path, 54)  # six lines of nine bytes

    rest = await read_all(JsonlSource(str(path)), committed, max_chunk=3)
    assert records(rest) == [{"id": i} for i in range(6, 10)]
    assert (
        [c.position for c in rest]
        == [c.position for c in first[2:]]
        == [at(path, 81), at(path, 90)]
    )


async def test_resume_at_the_end_reads_nothing(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n')
    assert await read_all(JsonlSource(str(path)), 9) == []


async def test_blank_lines_are_skipped_but_the_position_moves_past_them(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"a":1}\n', b"\n", b"  \r\n", b'{"a":2}\n')
    chunks = await read_all(JsonlSource(str(path)), max_chunk=1)
    assert [(c.records, c.position, c.rejects) for c in chunks] == [
        ([{"a": 1}], at(path, 8), []),
        ([], at(path, 9), []),
        ([], at(path, 13), []),
        ([{"a": 2}], at(path, 21), []),
    ]


async def test_objects_after_leading_blanks_or_before_crlf_are_records(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        b' {"a":1}\n',
        b'{"a":2}\r\n',
        b'\t{"a":3}\n',
        b'{"a":4}\n',
        b'{"a":5}\n',
    )
    chunks = await read_all(JsonlSource(str(path)), max_chunk=2)
    assert [(c.records, c.position, c.rejects) for c in chunks] == [
        ([{"a": 1}, {"a": 2}], at(path, 18), []),
        ([{"a": 3}, {"a": 4}], at(path, 35), []),
        ([{"a": 5}], at(path, 43), []),
    ]


async def test_malformed_lines_become_rejects_with_their_exact_text(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        b'{"id":1}\n',  # 0
        b'{"id":2\n',  # 9
        b"[1,2]\n",  # 17
        b"not json\r\n",  # 23
        b'"text"\n',  # 33
        b'{"id":3}\n',  # 40
    )
    chunks = await read_all(JsonlSource(str(path)))
    assert records(chunks) == [{"id": 1}, {"id": 3}]
    assert rejects(chunks) == [
        (
            '{"id":2',
            "ValueError",
            f"line at byte 9 of {path} is not valid JSON: unexpected end of data: "
            "line 1 column 8 (char 7)",
        ),
        ("[1,2]", "ValueError", f"line at byte 17 of {path} is an array, not a JSON object"),
        (
            "not json",
            "ValueError",
            f"line at byte 23 of {path} is not valid JSON: invalid literal, expected 'null': "
            "line 1 column 1 (char 0)",
        ),
        ('"text"', "ValueError", f"line at byte 33 of {path} is a string, not a JSON object"),
    ]
    assert [c.position for c in chunks] == [at(path, 49)]


async def test_invalid_utf8_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"a":"\xff"}\n', b'{"a":"ok"}\n')
    chunks = await read_all(JsonlSource(str(path)))
    assert records(chunks) == [{"a": "ok"}]
    assert [raw for raw, _, _ in rejects(chunks)] == ['{"a":"\\xff"}']


async def test_decode_parses_a_dead_lettered_line_again(tmp_path: Path) -> None:
    source = JsonlSource(str(tmp_path / "in.jsonl"))
    assert source.decode('{"id": 7, "tags": ["a"]}') == {"id": 7, "tags": ["a"]}
    assert source.decode({"id": 7}) == {"id": 7}
    with pytest.raises(ValueError, match=r"^the line is an array, not a JSON object$"):
        source.decode("[1]")
    with pytest.raises(ValueError, match=r"^the line is not valid JSON: unexpected end of data"):
        source.decode('{"id":')
    with pytest.raises(
        TypeError, match=r"^a JSONL dead letter holds the line's text, not a number$"
    ):
        source.decode(3)


async def test_partial_last_line_ends_the_source_with_a_warning(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":2}\n', b'{"id":')
    with capture_logs() as logs:
        chunks = await read_all(JsonlSource(str(path)))
    assert records(chunks) == [{"id": 1}, {"id": 2}]
    assert chunks[-1].position == at(path, 18)
    assert logs == [
        {
            "event": "incomplete last line; stopping before it",
            "log_level": "warning",
            "path": str(path),
            "offset": 18,
            "pending_bytes": 6,
        }
    ]
    # The incomplete line is still there to be read once it is finished.
    append_bytes(path, b"3}\n")
    assert records(await read_all(JsonlSource(str(path)), 18)) == [{"id": 3}]


async def test_follow_waits_for_a_partial_line_and_yields_it_once_complete(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":')
    source = JsonlSource(str(path), follow=True, poll_interval=0.01)
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, JsonValue]]](10)
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(follow_into, source, send)
        with anyio.fail_after(5):
            first = await receive.receive()
        assert (first.records, first.position) == ([{"id": 1}], at(path, 9))

        with anyio.move_on_after(0.3):  # many polls: the half line must not come out
            early = await receive.receive()
            pytest.fail(f"got a chunk for an incomplete line: {early}")

        append_bytes(path, b"2}\n")
        with anyio.fail_after(5):
            second = await receive.receive()
        assert (second.records, second.position, second.rejects) == ([{"id": 2}], at(path, 18), [])

        append_bytes(path, b'{"id":3}\n{"id":4}\n')
        with anyio.fail_after(5):
            third = await receive.receive()
        assert (third.records, third.position) == ([{"id": 3}, {"id": 4}], at(path, 36))
        tg.cancel_scope.cancel()


async def test_follow_resumes_after_a_position_and_picks_up_appends(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":2}\n')
    source = JsonlSource(str(path), follow=True, poll_interval=0.01)
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, JsonValue]]](10)
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(follow_into, source, send, 9)
        with anyio.fail_after(5):
            assert (await receive.receive()).records == [{"id": 2}]
        append_bytes(path, b'{"id":3}\n')
        with anyio.fail_after(5):
            chunk = await receive.receive()
        assert (chunk.records, chunk.position) == ([{"id": 3}], at(path, 27))
        tg.cancel_scope.cancel()


async def test_blocks_hand_on_whole_chunks_until_the_end_of_the_file(tmp_path: Path) -> None:
    # 11-byte lines in 40-byte blocks: three complete lines a block, chunks of two.
    path = write_lines(tmp_path / "in.jsonl", *(b'{"id":%d}\n' % i for i in range(100, 107)))
    chunks = await read_all(JsonlSource(str(path), block_size=40), max_chunk=2)
    assert [([r["id"] for r in c.records], c.position) for c in chunks] == [
        ([100, 101], at(path, 22)),
        ([102, 103], at(path, 44)),
        ([104, 105], at(path, 66)),
        ([106], at(path, 77)),
    ]


@pytest.mark.parametrize("lines", [8, 11])
async def test_a_file_that_ends_where_a_block_ends_hands_on_the_lines_it_holds(
    tmp_path: Path, lines: int
) -> None:
    # 10-byte lines in 40-byte blocks, chunks of three: every block leaves a line held
    # for the next, and the last block ends exactly at the end of the file (80 bytes),
    # so the last read finds nothing new; with 11 lines the file ends mid-block.
    path = write_lines(tmp_path / "in.jsonl", *(b'{"id":%d}\n' % i for i in range(10, 10 + lines)))
    chunks = await read_all(JsonlSource(str(path), block_size=40), max_chunk=3)
    ids = [[r["id"] for r in c.records] for c in chunks]
    assert ids == [list(range(10, 10 + lines))[i : i + 3] for i in range(0, lines, 3)]
    assert chunks[-1].position == at(path, 10 * lines)


async def test_a_followed_file_hands_on_what_it_holds_at_its_end(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":2}\n', b'{"id":3}\n')
    source = JsonlSource(str(path), follow=True, poll_interval=0.01)
    chunks: list[Chunk[JsonRecord]] = []
    with anyio.fail_after(5):
        reading_all = cast(
            "AsyncGenerator[Chunk[JsonRecord], None]", source.read(None, max_chunk=2)
        )
        async with aclosing(reading_all) as reading:
            async for chunk in reading:
                chunks.append(chunk)
                if len(chunks) == 2:
                    break
    assert [(c.records, c.position) for c in chunks] == [
        ([{"id": 1}, {"id": 2}], at(path, 18)),
        ([{"id": 3}], at(path, 27)),
    ]


async def test_line_longer_than_a_block_and_crlf_endings(tmp_path: Path) -> None:
    long = b'{"text":"' + b"x" * 200 + b'"}\r\n'
    path = write_lines(tmp_path / "in.jsonl", b'{"a":1}\r\n', long, b'{"a":2}\r\n')
    chunks = await read_all(JsonlSource(str(path), block_size=16), max_chunk=1)
    assert records(chunks) == [{"a": 1}, {"text": "x" * 200}, {"a": 2}]
    assert [c.position for c in chunks] == [
        at(path, 9),
        at(path, 9 + len(long)),
        at(path, 18 + len(long)),
    ]


async def test_lines_of_over_a_mebibyte_arrive_whole_and_in_order(tmp_path: Path) -> None:
    big = {"id": 1, "text": "x" * (1 << 20)}
    path = write_lines(
        tmp_path / "in.jsonl", orjson.dumps(big) + b"\n", b'{"id":2}\n', b'{"id":3}\n'
    )
    chunks = await read_all(JsonlSource(str(path), block_size=1 << 21), max_chunk=2)
    size = path.stat().st_size
    assert [(c.records, c.position) for c in chunks] == [
        ([big, {"id": 2}], at(path, size - 9)),
        ([{"id": 3}], at(path, size)),
    ]


async def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(PermanentError) as caught:
        await read_all(JsonlSource(str(path)))
    assert str(caught.value) == f"file {path} does not exist; check the path"


async def test_a_position_inside_a_line_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n', b'{"id":2}\n')
    with pytest.raises(PermanentError) as caught:
        await read_all(JsonlSource(str(path)), 5)
    assert str(caught.value) == (
        f"the committed position 5 of {path} is not at the start of a line; the file was "
        "changed, so restore it or delete the checkpoint to start over"
    )


async def test_a_file_shorter_than_the_position_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n')
    with pytest.raises(PermanentError) as caught:
        await read_all(JsonlSource(str(path)), 90)
    assert str(caught.value) == (
        f"{path} is 9 bytes long, shorter than the position 90 already read; it was "
        "truncated or replaced, so restore it or delete the checkpoint to start over"
    )


async def test_a_position_that_is_not_an_offset_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n')
    positions: list[tuple[JsonValue, str]] = [
        ("9", '"9"'),
        ({"path": str(path)}, f'{{"path":"{path}"}}'),
    ]
    for position, shown in positions:
        source = JsonlSource(str(path))
        with pytest.raises(ConfigError) as caught:
            source.check_position(position)
        assert str(caught.value) == (
            f"JsonlSource 'jsonl': position: cannot resume from the committed position {shown}, "
            f'which is not a byte offset into "{path}" ({{"path": ..., "offset": n}}); reset '
            "the checkpoint (python -m asyncetl checkpoint reset SPEC)"
        )
        with pytest.raises(ConfigError) as read_refused:
            await read_all(source, position)
        assert str(read_refused.value) == str(caught.value)


async def test_a_position_written_for_another_file_is_refused(tmp_path: Path) -> None:
    old = write_lines(tmp_path / "old.jsonl", b'{"id":1}\n{"id":2}\n')
    new = write_lines(tmp_path / "new.jsonl", b'{"id":1}\n{"id":2}\n{"id":3}\n')
    [chunk] = await read_all(JsonlSource(str(old)))
    assert chunk.position == at(old, 18)
    source = JsonlSource(str(new))
    with pytest.raises(ConfigError) as caught:
        source.check_position(chunk.position)
    assert str(caught.value) == (
        "JsonlSource 'jsonl': position: cannot resume from the committed position "
        f'{{"path":"{old}","offset":18}}: it was written for file "{old}", not for path '
        f'"{new}"; point path back there, or to read "{new}" from the start, reset the '
        "checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )
    with pytest.raises(ConfigError) as read_refused:
        await read_all(source, chunk.position)
    assert str(read_refused.value) == str(caught.value)


async def test_a_bare_offset_written_before_positions_named_their_file_is_taken(
    tmp_path: Path,
) -> None:
    path = write_lines(tmp_path / "in.jsonl", b'{"id":1}\n{"id":2}\n')
    source = JsonlSource(str(path))
    source.check_position(9)
    [chunk] = await read_all(source, 9)
    assert (chunk.records, chunk.position) == ([{"id": 2}], at(path, 18))


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        JsonlSource("x.jsonl", poll_interval=0)
    assert str(caught.value) == (
        "JsonlSource jsonl: poll_interval: must be a positive number of seconds, not 0"
    )


# -- property: chunking and resuming at any committed offset ---------------------

_values = st.one_of(st.integers(-5, 10**6), st.text(max_size=8), st.booleans(), st.none())
_records = st.dictionaries(st.sampled_from(["id", "name", "ok", "ünï"]), _values, max_size=3)
_lines = st.one_of(
    _records.map(lambda r: ("record", r)),
    st.sampled_from([b"", b"  ", b"{broken", b"[1]", b"\r"]).map(lambda b: ("other", b)),
)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(_lines, max_size=25),
    max_chunk=st.integers(1, 6),
    block_size=st.sampled_from([8, 13, 64, 4096]),
    tail=st.sampled_from([b"", b'{"partial":']),
)
async def test_any_committed_offset_resumes_with_exactly_the_remaining_records(
    lines: list[tuple[str, object]], max_chunk: int, block_size: int, tail: bytes
) -> None:
    content = (
        b"".join(
            (orjson.dumps(item) if kind == "record" else item) + b"\n"  # type: ignore[operator]
            for kind, item in lines
        )
        + tail
    )
    expected = [item for kind, item in lines if kind == "record"]
    expected_rejects = [
        item.decode() for kind, item in lines if kind == "other" and item in (b"{broken", b"[1]")
    ]
    with tempfile.TemporaryDirectory() as directory, capture_logs():
        path = Path(directory) / "in.jsonl"
        path.write_bytes(content)
        source = JsonlSource(str(path), block_size=block_size)
        chunks = await read_all(source, max_chunk=max_chunk)
        assert records(chunks) == expected
        assert [raw for raw, _, _ in rejects(chunks)] == expected_rejects
        assert all(len(c.records) + len(c.rejects) <= max_chunk for c in chunks)
        if chunks:
            assert chunks[-1].position == at(path, len(content) - len(tail))
        for k, chunk in enumerate(chunks):
            rest = await read_all(source, chunk.position, max_chunk=max_chunk)
            assert records(rest) == records(chunks[k + 1 :])
            assert rejects(rest) == rejects(chunks[k + 1 :])
