"""Change events applied by DuckDBSink: inserts, updates, deletes and truncates by key, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncetl import PermanentError
from asyncetl.connectors.duckdb import DuckDBSink
from asyncetl.core.changes import UNCHANGED, ChangeEvent
from tests.connectors.duckdb.helpers import query, reasons, write

pytestmark = pytest.mark.anyio


def change(op: str, id: int, **after: object) -> ChangeEvent:
    if op == "d":
        return ChangeEvent("d", "public", "items", key={"id": id}, before={"id": id})
    return ChangeEvent(op, "public", "items", key={"id": id}, after={"id": id, **after})  # type: ignore[arg-type]


async def test_inserts_updates_and_deletes_land_as_the_last_change_of_each_key(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.duckdb"
    async with DuckDBSink(str(db), "items", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, [change("r", 1, v="a"), change("r", 2, v="b"), change("r", 3, v="c")])
        rejects = await write(
            sink,
            [
                change("u", 1, v="a2"),
                change("d", 2),
                change("c", 4, v="d"),
                change("u", 4, v="d2"),
                change("d", 3),
                change("c", 3, v="c-again"),
                change("c", 5, v="e"),
                change("d", 5),
                {"id": 6, "v": "plain"},
            ],
        )
    assert rejects == []
    assert query(db, "SELECT id, v FROM items ORDER BY id") == [
        (1, "a2"),
        (3, "c-again"),
        (4, "d2"),
        (6, "plain"),
    ]


async def test_unchanged_values_keep_what_is_stored_or_what_came_earlier(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    async with DuckDBSink(str(db), "items", mode="upsert", key=["id"], create=True) as sink:
        await write(
            sink, [change("r", 1, v="a", big="toast-1"), change("r", 2, v="b", big="toast-2")]
        )
        await write(
            sink,
            [
                change("u", 1, v="a2", big=UNCHANGED),
                change("u", 2, v="b2", big="new"),
                change("u", 2, v="b3", big=UNCHANGED),
            ],
        )
    assert query(db, "SELECT id, v, big FROM items ORDER BY id") == [
        (1, "a2", "toast-1"),
        (2, "b3", "new"),
    ]
    assert query(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%asyncetl%'") == [
        (0,)
    ]


async def test_a_truncate_empties_the_table_between_the_changes_around_it(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    async with DuckDBSink(str(db), "items", mode="upsert", key=["id"], create=True) as sink:
        await write(sink, [change("r", 1, v="a"), change("r", 2, v="b")])
        truncate = ChangeEvent("t", "public", "items")
        await write(sink, [change("u", 3, v="c"), truncate, change("c", 4, v="d")])
    assert query(db, "SELECT id, v FROM items ORDER BY id") == [(4, "d")]


async def test_a_change_without_its_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    keyless = ChangeEvent("c", "public", "items", after={"v": "x"})
    async with DuckDBSink(str(db), "items", mode="upsert", key=["id"], create=True) as sink:
        rejects = await write(sink, [keyless, change("c", 1, v="a")])
    assert reasons(rejects) == [
        (
            keyless,
            "ValueError",
            "record's key column 'id' is missing or null; DuckDB table 'items' is keyed by it, "
            "and a change without its key cannot be applied",
        )
    ]
    assert query(db, "SELECT id, v FROM items") == [(1, "a")]


async def test_change_events_need_the_upsert_mode(tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    async with DuckDBSink(str(db), "items", create=True) as sink:
        with pytest.raises(PermanentError) as caught:
            await write(sink, [change("c", 1, v="a")])
    assert str(caught.value) == (
        "DuckDBSink duckdb_sink got change events in mode 'append'; change events are applied "
        "by key: set mode = 'upsert' and key"
    )
