from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import CheckpointError, Chunk, ConfigError, PermanentError
from asyncetl.connectors.files import CsvSource
from tests.connectors.files.helpers import append_bytes, at, follow_into, read_all, records, rejects

pytestmark = pytest.mark.anyio


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


async def test_header_names_the_fields_and_positions_follow_each_row(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,name\n1,ann\n2,bob\n")
    source = CsvSource(str(path))
    chunks = await read_all(source, max_chunk=1)
    assert [(c.records, c.position, c.rejects) for c in chunks] == [
        ([{"id": "1", "name": "ann"}], at(path, 14), []),
        ([{"id": "2", "name": "bob"}], at(path, 20), []),
    ]
    assert source.header == ["id", "name"]


async def test_resume_reads_the_header_then_exactly_the_remainder(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,name\r\n1,ann\r\n2,bob\r\n3,cy\r\n")
    first = await read_all(CsvSource(str(path)), max_chunk=1)
    assert [c.position for c in first] == [at(path, 16), at(path, 23), at(path, 29)]
    rest = await read_all(CsvSource(str(path)), first[0].position)
    assert records(rest) == [{"id": "2", "name": "bob"}, {"id": "3", "name": "cy"}]
    assert rest[-1].position == at(path, 29)


async def test_blocks_hand_on_whole_chunks_until_the_end_of_the_file(tmp_path: Path) -> None:
    # 5-byte rows in 16-byte blocks: no block ends on a chunk boundary.
    path = write(tmp_path / "in.csv", b"id,n\n" + b"".join(b"%d,x%d\n" % (i, i) for i in range(5)))
    chunks = await read_all(CsvSource(str(path), block_size=16), max_chunk=2)
    assert [([r["id"] for r in c.records], c.position) for c in chunks] == [
        (["0", "1"], at(path, 15)),
        (["2", "3"], at(path, 25)),
        (["4"], at(path, 30)),
    ]


async def test_quoted_fields_may_hold_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    content = b'id,note\n1,"two\nlines"\n2,"a, ""quoted"" b"\n3,plain\n'
    path = write(tmp_path / "in.csv", content)
    chunks = await read_all(CsvSource(str(path), block_size=5), max_chunk=1)
    assert records(chunks) == [
        {"id": "1", "note": "two\nlines"},
        {"id": "2", "note": 'a, "quoted" b'},
        {"id": "3", "note": "plain"},
    ]
    assert [c.position for c in chunks] == [at(path, 22), at(path, 42), at(path, 50)]
    # Resuming just after the multi-line row gives the rest, nothing else.
    rest = await read_all(CsvSource(str(path)), 22)
    assert [r["id"] for r in records(rest)] == ["2", "3"]


async def test_bad_rows_become_rejects_with_their_exact_text(tmp_path: Path) -> None:
    content = b'id,name\n1,ann\n2\n3,b,extra\n4,"x"y\n\n5,eve\n'
    path = write(tmp_path / "in.csv", content)
    chunks = await read_all(CsvSource(str(path)))
    assert records(chunks) == [{"id": "1", "name": "ann"}, {"id": "5", "name": "eve"}]
    assert rejects(chunks) == [
        ("2", "ValueError", f"row at byte 14 of {path} has 1 fields, the header has 2"),
        ("3,b,extra", "ValueError", f"row at byte 16 of {path} has 3 fields, the header has 2"),
        (
            '4,"x"y',
            "ValueError",
            f"row at byte 26 of {path} is not valid CSV: ',' expected after '\"'",
        ),
    ]
    assert chunks[-1].position == at(path, len(content))


async def test_encoding_and_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "name;city\nJosé;Zürich\n".encode("latin-1"))
    chunks = await read_all(CsvSource(str(path), delimiter=";", encoding="latin-1"))
    assert records(chunks) == [{"name": "José", "city": "Zürich"}]
    assert chunks[-1].position == at(path, 22)


async def test_bytes_invalid_in_the_encoding_make_a_reject(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"a,b\n1,\xff\n2,ok\n")
    chunks = await read_all(CsvSource(str(path)))
    assert records(chunks) == [{"a": "2", "b": "ok"}]
    assert rejects(chunks) == [
        (
            "1,\\xff",
            "ValueError",
            f"row at byte 4 of {path} is not valid CSV: it holds bytes that are not valid utf-8",
        ),
    ]


async def test_partial_last_row_ends_the_source_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b'id,note\n1,a\n2,"open\nstill open')
    with capture_logs() as logs:
        chunks = await read_all(CsvSource(str(path)))
    assert records(chunks) == [{"id": "1", "note": "a"}]
    assert chunks[-1].position == at(path, 12)
    assert logs == [
        {
            "event": "incomplete last row; stopping before it",
            "log_level": "warning",
            "path": str(path),
            "offset": 12,
            "pending_bytes": 18,
        }
    ]


async def test_follow_completes_a_quoted_row_that_arrives_in_pieces(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b'id,note\n1,"first\n')
    source = CsvSource(str(path), follow=True, poll_interval=0.01)
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, str]]](10)
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(follow_into, source, send)
        with anyio.move_on_after(0.3):
            early = await receive.receive()
            pytest.fail(f"got a chunk for an incomplete row: {early}")
        append_bytes(path, b'second"\n2,x\n')
        with anyio.fail_after(5):
            chunk = await receive.receive()
        assert (chunk.records, chunk.position) == (
            [{"id": "1", "note": "first\nsecond"}, {"id": "2", "note": "x"}],
            at(path, 29),
        )
        tg.cancel_scope.cancel()


async def test_follow_waits_for_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"")
    source = CsvSource(str(path), follow=True, poll_interval=0.01)
    send, receive = anyio.create_memory_object_stream[Chunk[dict[str, str]]](10)
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(follow_into, source, send)
        await anyio.sleep(0.05)
        append_bytes(path, b"k,v\na,1\n")
        with anyio.fail_after(5):
            chunk = await receive.receive()
        assert (chunk.records, chunk.position) == ([{"k": "a", "v": "1"}], at(path, 8))
        tg.cancel_scope.cancel()


async def test_empty_and_header_only_files_give_nothing(tmp_path: Path) -> None:
    assert await read_all(CsvSource(str(write(tmp_path / "a.csv", b"")))) == []
    assert await read_all(CsvSource(str(write(tmp_path / "b.csv", b"id,name\n")))) == []


async def test_decode_parses_a_dead_lettered_row_with_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,note\n1,a\n")
    source = CsvSource(str(path))
    with pytest.raises(
        ValueError, match=r"^the header of .* is not known yet; read the file first$"
    ):
        source.decode("1,a")
    await read_all(source)
    assert source.decode('2,"x\ny"') == {"id": "2", "note": "x\ny"}
    with pytest.raises(ValueError, match=r"^the row has 3 fields, the header has 2$"):
        source.decode("1,2,3")


async def test_a_position_inside_the_header_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,name\n1,a\n")
    with pytest.raises(CheckpointError) as caught:
        await read_all(CsvSource(str(path)), 3)
    assert str(caught.value) == (
        f"the committed position 3 of {path} lies inside its header row; "
        "delete the checkpoint to start over"
    )


async def test_a_csv_position_written_for_another_file_is_refused(tmp_path: Path) -> None:
    old = write(tmp_path / "old.csv", b"id\n1\n")
    new = write(tmp_path / "new.csv", b"id\n1\n2\n")
    [chunk] = await read_all(CsvSource(str(old)))
    with pytest.raises(ConfigError) as caught:
        await read_all(CsvSource(str(new), name="rows"), chunk.position)
    assert str(caught.value) == (
        "CsvSource 'rows': position: cannot resume from the committed position "
        f'{{"path":"{old}","offset":5}}: it was written for file "{old}", not for path '
        f'"{new}"; point path back there, or to read "{new}" from the start, reset the '
        "checkpoint (python -m asyncetl checkpoint reset SPEC)"
    )


async def test_a_repeated_header_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,id\n1,2\n")
    with pytest.raises(PermanentError) as caught:
        await read_all(CsvSource(str(path)))
    assert str(caught.value) == (
        f"the header row of {path} repeats column 'id'; give each column a unique name"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"delimiter": ";;"},
            "CsvSource csv: delimiter: must be one character other than a "
            "quote or a line end, not ';;'",
        ),
        (
            {"encoding": "utf-16"},
            "CsvSource csv: encoding: 'utf-16' is not ASCII-compatible; convert the file to UTF-8",
        ),
        ({"encoding": "klingon"}, "CsvSource csv: encoding: 'klingon' is not a known encoding"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CsvSource("in.csv", **options)  # type: ignore[arg-type]
    assert str(caught.value) == message
