"""The one contract of every dead-letter store: find, count and purge filter alike.

Each test runs against every store asyncetl ships (memory, JSON Lines, SQLite,
DuckDB, PostgreSQL on the real server), so a filter that one store applies in SQL and
another in Python cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from asyncetl import DeadLetter, DeadLetterStore, JsonValue, MemoryDeadLetterStore
from asyncetl.connectors.duckdb import DuckDBDeadLetterStore
from asyncetl.connectors.files import JsonlDeadLetterStore
from asyncetl.connectors.postgres import PostgresDeadLetterStore
from asyncetl.connectors.sqlite import SqliteDeadLetterStore
from tests.conftest import throwaway_database

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
#: The memory store overrides none of find, count and purge: it runs the contract's defaults.
STORES = ("memory", "jsonl", "sqlite", "postgres", "duckdb")


def letter(pipeline: str, stage: str, n: int, minutes: float) -> DeadLetter:
    time = T0 + timedelta(minutes=minutes)
    return DeadLetter(pipeline, stage, f"bad {n}", "ValueError", {"n": n}, n, time)


#: Six letters of pipeline p (stages a and b, a minute apart) and one of pipeline q.
LETTERS = [
    letter("p", "a", 0, 0),
    letter("p", "b", 1, 1),
    letter("q", "a", 2, 1),
    letter("p", "a", 3, 2),
    letter("p", "b", 4, 2.5),
    letter("p", "a", 5, 3),
    letter("p", "a", 6, 3.000001),
]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeadLetterStore]:
    async with AsyncExitStack() as stack:
        opened = await stack.enter_async_context(await make_store(stack, request.param, tmp_path))
        await opened.put(LETTERS[:3])
        await opened.put(LETTERS[3:])
        yield opened


async def make_store(stack: AsyncExitStack, kind: str, tmp_path: Path) -> DeadLetterStore:
    if kind == "postgres":
        dsn = await stack.enter_async_context(throwaway_database())
        return PostgresDeadLetterStore(dsn)
    if kind == "jsonl":
        return JsonlDeadLetterStore(str(tmp_path / "dead.jsonl"))
    if kind == "sqlite":
        return SqliteDeadLetterStore(str(tmp_path / "dead.db"))
    if kind == "duckdb":
        return DuckDBDeadLetterStore(str(tmp_path / "dead.duckdb"))
    return MemoryDeadLetterStore()


def numbers(letters: list[DeadLetter]) -> list[JsonValue]:
    return [letter.position for letter in letters]


async def ids_of(store: DeadLetterStore, *wanted: int) -> list[str]:
    found = await store.find("p")
    return [x.id for x in found if x.id is not None and x.position in wanted]


async def test_find_without_filters_is_every_letter_of_the_pipeline(
    store: DeadLetterStore,
) -> None:
    found = await store.find("p")
    assert numbers(found) == [0, 1, 3, 4, 5, 6]
    assert found == await store.list("p")
    assert [(x.stage, x.error, x.record, x.time) for x in found[:2]] == [
        ("a", "bad 0", {"n": 0}, T0),
        ("b", "bad 1", {"n": 1}, T0 + timedelta(minutes=1)),
    ]
    assert numbers(await store.find("q")) == [2]
    assert await store.find("nobody") == []


async def test_find_filters_by_stage_time_and_ids(store: DeadLetterStore) -> None:
    assert numbers(await store.find("p", stage="a")) == [0, 3, 5, 6]
    assert numbers(await store.find("p", stage="c")) == []
    since = T0 + timedelta(minutes=2)
    assert numbers(await store.find("p", since=since)) == [3, 4, 5, 6]
    before = T0 + timedelta(minutes=3)
    assert numbers(await store.find("p", before=before)) == [0, 1, 3, 4]
    assert numbers(await store.find("p", since=before)) == [5, 6]
    just_after = before + timedelta(microseconds=1)
    assert numbers(await store.find("p", since=just_after)) == [6]
    assert numbers(await store.find("p", stage="b", since=since, before=before)) == [4]
    wanted = await ids_of(store, 1, 5)
    assert numbers(await store.find("p", ids=wanted)) == [1, 5]
    assert numbers(await store.find("p", ids=[*wanted, "404", "no such id"], stage="a")) == [5]
    assert await store.find("p", ids=[]) == []
    assert await store.find("p", ids=["9" * 30, "-1", "١"]) == []
    assert numbers(await store.find("p", since=since.replace(tzinfo=None))) == [3, 4, 5, 6]


async def test_a_limit_counts_only_matching_letters(store: DeadLetterStore) -> None:
    assert numbers(await store.find("p", stage="a", limit=3)) == [0, 3, 5]
    assert numbers(await store.find("p", limit=0)) == []
    assert numbers(await store.find("p", stage="b", limit=10)) == [1, 4]


async def test_count_agrees_with_find(store: DeadLetterStore) -> None:
    assert await store.count("p") == 6
    assert await store.count("q") == 1
    assert await store.count("p", stage="a", since=T0 + timedelta(minutes=1)) == 3
    assert await store.count("p", before=T0) == 0
    assert await store.count("p", ids=await ids_of(store, 0, 4)) == 2


async def test_purge_deletes_exactly_the_matching_letters(store: DeadLetterStore) -> None:
    assert await store.purge("p", stage="a", before=T0 + timedelta(minutes=3)) == 2
    assert numbers(await store.find("p")) == [1, 4, 5, 6]
    assert await store.purge("p", ids=[*await ids_of(store, 4, 0), "404"]) == 1
    assert numbers(await store.find("p")) == [1, 5, 6]
    assert await store.purge("p", stage="nothing") == 0
    assert await store.purge("p") == 3
    assert await store.find("p") == []
    assert numbers(await store.find("q")) == [2]


async def test_purge_keeps_other_pipelines_of_the_same_stage(store: DeadLetterStore) -> None:
    assert await store.purge("q", stage="a") == 1
    assert await store.find("q") == []
    assert numbers(await store.find("p", stage="a")) == [0, 3, 5, 6]
