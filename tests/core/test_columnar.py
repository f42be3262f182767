"""Records as columns for columnar sinks, and row blocks that make records only when read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncetl import Batch, Chunk, ListSink, Pipeline, Source, Transform
from asyncetl.core.columnar import Columns, RowBlock, to_columns

pytestmark = pytest.mark.anyio

NAMES = ["id", "name", "tags"]
ROWS = [(1, "a", ["x"]), (2, None, []), (3, "c", None)]
DICTS = [dict(zip(NAMES, row, strict=True)) for row in ROWS]


def shape(columns: Columns) -> tuple[object, ...]:
    reasons = [(r.record, str(r.error)) for r in columns.rejects]
    return columns.names, columns.values, list(columns.records), reasons


def test_a_row_block_reads_as_the_list_of_its_records_and_keeps_changes_made_to_them() -> None:
    block = RowBlock(NAMES, ROWS)
    assert len(block) == 3
    assert block.columns() == {"id": [1, 2, 3], "name": ["a", None, "c"], "tags": [["x"], [], None]}
    assert block[1] == DICTS[1]
    assert block == DICTS
    assert block[1:] == DICTS[1:]
    assert block.columns() is None  # read: its records may change from here on
    for record in block:
        record["seen"] = True
    assert [record["seen"] for record in block] == [True, True, True]
    assert repr(block) == "RowBlock(['id', 'name', 'tags'], 3 rows)"


def test_a_block_whose_names_repeat_gives_its_records_as_dicts_would() -> None:
    block = RowBlock(["a", "b", "a"], [(1, 2, 3)])
    assert block.columns() is None
    columns = to_columns(block, target="t", known=None)
    assert (columns.names, columns.values) == (["a", "b"], {"a": [3], "b": [2]})


@pytest.mark.parametrize(
    ("known", "key", "extra"),
    [
        (None, ["id"], "reject"),
        (["id", "name", "tags", "more"], [], "reject"),  # a target column the rows lack
        (["id", "tags"], ["id"], "evolve"),  # a column the target gets
    ],
)
def test_an_unread_block_gives_the_columns_its_records_would(
    known: list[str] | None, key: list[str], extra: Any
) -> None:
    block = RowBlock(NAMES, ROWS)
    columns = to_columns(block, target="t", known=known, key=key, extra=extra)
    assert block.columns() is not None  # no record was made
    assert columns.records is block
    assert shape(columns) == shape(to_columns(DICTS, target="t", known=known, key=key, extra=extra))


@pytest.mark.parametrize(
    ("known", "key", "extra", "reason"),
    [
        (
            None,
            ["name"],
            "reject",
            "record's key column 'name' is null; t is keyed by it, and a record without its "
            "key cannot be stored",
        ),
        (
            ["id", "name"],
            [],
            "reject",
            "record has column 'tags', which t does not have; add the column, or set "
            "extra_columns = 'ignore' (leave it out) or 'evolve' (add it)",
        ),
    ],
)
def test_a_block_holding_records_to_refuse_refuses_them_as_a_list_would(
    known: list[str] | None, key: list[str], extra: Any, reason: str
) -> None:
    columns = to_columns(RowBlock(NAMES, ROWS), target="t", known=known, key=key, extra=extra)
    assert shape(columns) == shape(to_columns(DICTS, target="t", known=known, key=key, extra=extra))
    refused = [r.record for r in columns.rejects]
    assert refused == ([DICTS[1]] if key else DICTS)
    assert {str(r.error) for r in columns.rejects} == {reason}


class Blocks(Source[dict[str, object]]):
    name = "blocks"

    def __init__(self, chunks: Sequence[int]) -> None:
        self.chunks = chunks

    async def read(self, after: object, *, max_chunk: int) -> AsyncIterator[Chunk[Any]]:
        start = 0
        for size in self.chunks:
            rows = [(i, f"n{i}") for i in range(start, start + size)]
            start += size
            yield Chunk(RowBlock(["id", "name"], rows), start)


class Seen(ListSink[Any]):
    """Keeps what each batch's records were, as the sink was handed them."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[tuple[str, bool]] = []

    async def write(self, batch: Batch[Any]) -> Sequence[Any]:
        records = batch.records
        unread = isinstance(records, RowBlock) and records.columns() is not None
        self.handed.append((type(records).__name__, unread))
        return await super().write(batch)


async def test_a_block_reaches_the_sink_unread_and_blocks_merged_into_a_batch_become_a_list() -> (
    None
):
    sink = Seen()
    with capture_logs():
        await Pipeline("p", Blocks([4, 4, 2, 1]), sink, max_batch_size=4).run()
    assert sink.handed[:2] == [("RowBlock", True), ("RowBlock", True)]
    assert sink.handed[2:] == [("list", False)]  # 2 + 1 rows gathered into one batch
    assert sink.records == [{"id": i, "name": f"n{i}"} for i in range(11)]


def named(record: dict[str, object]) -> dict[str, object]:
    record["name"] = str(record["name"]).upper()
    return record


async def test_a_transform_reads_a_blocks_records_as_dicts() -> None:
    sink = Seen()
    with capture_logs():
        await Pipeline("p", Blocks([3]), sink, [Transform(named)], max_batch_size=3).run()
    assert sink.records == [{"id": i, "name": f"N{i}"} for i in range(3)]
