"""PostgresSink modes against a real server: exact target contents after each batch."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from asyncetl import Checkpoint, ConfigError, Pipeline
from asyncetl.connectors.postgres import PostgresCheckpointStore, PostgresSink, TableSource
from tests.connectors.postgres.helpers import batch, execute, rows

pytestmark = pytest.mark.anyio


async def test_upsert_inserts_updates_and_keeps_last_of_duplicate_keys(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, name text, score float8)")
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        assert (
            await sink.write(
                batch([{"id": 1, "name": "a", "score": 1.0}, {"id": 2, "name": "b", "score": 2.0}])
            )
            == []
        )
        await sink.write(
            batch(
                [
                    {"id": 2, "name": "B", "score": 2.5},
                    {"id": 3, "name": "c", "score": 3.0},
                    {"id": 3, "name": "C", "score": 3.5},
                ],
                1,
            )
        )
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [
        (1, "a", 1.0),
        (2, "B", 2.5),
        (3, "C", 3.5),
    ]


async def test_upsert_copies_new_keys_in_and_merges_from_the_first_conflict_on(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, name text)")
    store = PostgresCheckpointStore(pg_database)
    sink = PostgresSink(pg_database, "t")
    write = sink.transactional_writer(store)
    assert write is not None
    await store.open()
    await sink.open()
    try:
        await write(
            batch([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]), Checkpoint("p", "s", 1)
        )
        # Another writer adds key 3: the next batch's COPY meets it, rolls back to
        # its savepoint and merges, in the same transaction as its checkpoint.
        await execute(pg_database, "INSERT INTO t VALUES (3, 'other writer')")
        await write(
            batch([{"id": 4, "name": "d"}, {"id": 3, "name": "c"}], 1), Checkpoint("p", "s", 2)
        )
        await write(
            batch([{"id": 5, "name": "e"}, {"id": 1, "name": "A"}], 2), Checkpoint("p", "s", 3)
        )
        assert sink.rows_changed == 6
        assert await store.load("p", "s") == 3
    finally:
        await sink.aclose()
        await store.aclose()
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [
        (1, "A"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
        (5, "e"),
    ]


async def test_upsert_refuses_a_record_conflicting_on_another_unique_index(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, email text UNIQUE, name text)")
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, "email": "a@x", "name": "a"}]))
        rejects = await sink.write(batch([{"id": 2, "email": "a@x", "name": "b"}], 1))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            {"id": 2, "email": "a@x", "name": "b"},
            "table public.t refused the record: duplicate key value violates unique constraint "
            '"t_email_key" (Key (email)=(a@x) already exists.); fix the record, or the '
            "table's constraint",
        )
    ]
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [(1, "a@x", "a")]


async def test_upsert_updates_only_the_fields_a_record_has(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, a text, b text)")
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, "a": "a1", "b": "b1"}]))
        await sink.write(batch([{"id": 1, "b": "b2"}, {"id": 2, "a": "a2", "b": "x"}], 1))
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [
        (1, "a1", "b2"),
        (2, "a2", "x"),
    ]


async def test_version_guard_keeps_the_newer_row(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, v int, payload text)")
    sink = PostgresSink(pg_database, "t", version_column="v")
    await sink.open()
    try:
        await sink.write(
            batch([{"id": 1, "v": 5, "payload": "new"}, {"id": 2, "v": 1, "payload": "old"}])
        )
        # A replayed/backfilled older version of 1, a newer one of 2, and within one
        # batch an older row arriving after a newer one for key 3.
        await sink.write(
            batch(
                [
                    {"id": 1, "v": 4, "payload": "stale"},
                    {"id": 2, "v": 2, "payload": "fresh"},
                    {"id": 3, "v": 9, "payload": "nine"},
                    {"id": 3, "v": 8, "payload": "eight"},
                ],
                1,
            )
        )
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [
        (1, 5, "new"),
        (2, 2, "fresh"),
        (3, 9, "nine"),
    ]


async def test_row_hash_skips_unchanged_rows(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, name text, _row_hash text)")
    sink = PostgresSink(pg_database, "t", row_hash=["name"])
    records = [{"id": i, "name": f"n{i}"} for i in range(5)]
    await sink.open()
    try:
        await sink.write(batch(records))
        before = dict(await rows(pg_database, "SELECT id, xmin::text FROM t"))
        records[2] = {"id": 2, "name": "changed"}
        await sink.write(batch(records, 1))
        after = dict(await rows(pg_database, "SELECT id, xmin::text FROM t"))
    finally:
        await sink.aclose()
    assert [i for i in before if before[i] != after[i]] == [2]
    assert await rows(pg_database, "SELECT name FROM t ORDER BY id") == [
        ("n0",),
        ("n1",),
        ("changed",),
        ("n3",),
        ("n4",),
    ]


def test_row_hash_is_stable_across_processes() -> None:
    code = (
        "from datetime import UTC, date, datetime\n"
        "from decimal import Decimal\n"
        "from asyncetl.connectors.postgres._rows import row_hash\n"
        "print(row_hash((1, 'a', Decimal('1.50'), datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),"
        " date(2024, 1, 2), b'\\x00\\xff', None, {'b': 1, 'a': [1, 2]})))\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    # The same in every process (unlike hash()), and pinned so the encoding never drifts.
    assert digests == {"28210ee09f8c47bde2611ffd735b6d88"}


async def test_append_copies_and_row_hash_makes_a_replay_append_nothing(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE log (at int, msg text)")
    plain = PostgresSink(pg_database, "log", mode="append")
    await plain.open()
    try:
        await plain.write(batch([{"at": 1, "msg": "x"}, {"at": 1, "msg": "x"}]))
    finally:
        await plain.aclose()
    assert await rows(pg_database, "SELECT * FROM log") == [(1, "x"), (1, "x")]

    hashed = PostgresSink(pg_database, "log2", mode="append", row_hash=["*"], create=True)
    twice: list[dict[str, Any]] = [
        {"at": 1, "msg": "x"},
        {"at": 1, "msg": "x"},
        {"at": 2, "msg": None},
    ]
    await hashed.open()
    try:
        await hashed.write(batch(twice))
        await hashed.write(batch(twice, 1))  # a replay
        await hashed.write(batch([*twice, {"at": 1, "msg": "x"}], 2))  # one more copy
    finally:
        await hashed.aclose()
    assert await rows(pg_database, "SELECT at, msg FROM log2 ORDER BY at") == [
        (1, "x"),
        (1, "x"),
        (1, "x"),
        (2, None),
    ]


async def test_replace_partition_replaces_only_the_batch_partitions(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE daily (day date, shop text, total int);"
        "INSERT INTO daily VALUES ('2024-01-01', 'a', 1), ('2024-01-01', 'b', 2),"
        "('2024-01-02', 'a', 3)",
    )
    sink = PostgresSink(pg_database, "daily", mode="replace_partition", partition=["day"])
    await sink.open()
    try:
        await sink.write(batch([{"day": date(2024, 1, 1), "shop": "c", "total": 10}]))
    finally:
        await sink.aclose()
    assert await rows(
        pg_database, "SELECT day::text, shop, total FROM daily ORDER BY day, shop"
    ) == [("2024-01-01", "c", 10), ("2024-01-02", "a", 3)]


async def test_refresh_swap_publishes_only_on_swap(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE TABLE dim (id int PRIMARY KEY, v text);INSERT INTO dim VALUES (1, 'old')",
    )
    sink = PostgresSink(pg_database, "dim", mode="refresh_swap")
    await sink.open()
    try:
        await sink.write(batch([{"id": 2, "v": "new"}]))
        await sink.write(batch([{"id": 3, "v": "newer"}], 1))
        assert await rows(pg_database, "SELECT * FROM dim") == [(1, "old")]
        await sink.swap()
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT * FROM dim ORDER BY id") == [(2, "new"), (3, "newer")]
    assert (
        await rows(
            pg_database,
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'dim\\_\\_%' AND relkind = 'r'",
        )
        == []
    )


async def test_soft_delete_flags_and_revives(pg_database: str) -> None:
    await execute(
        pg_database, "CREATE TABLE u (id int PRIMARY KEY, name text, deleted_at timestamptz)"
    )
    sink = PostgresSink(pg_database, "u", mode="soft_delete")
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]))
        await sink.write(batch([{"id": 1, "_deleted": True}], 1))
        assert await rows(
            pg_database, "SELECT id, name, deleted_at IS NOT NULL FROM u ORDER BY id"
        ) == [(1, "a", True), (2, "b", False)]
        await sink.write(batch([{"id": 1, "name": "a2", "_deleted": False}], 2))
    finally:
        await sink.aclose()
    assert await rows(
        pg_database, "SELECT id, name, deleted_at IS NOT NULL FROM u ORDER BY id"
    ) == [(1, "a2", False), (2, "b", False)]


async def test_create_from_the_batch_infers_types_and_key(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "sales.new_t", key=["id"], create=True)
    record = {
        "id": 1,
        "price": Decimal("2.50"),
        "at": datetime(2024, 1, 1, tzinfo=UTC),
        "tags": ["a"],
        "ok": True,
        "note": None,
    }
    await sink.open()
    try:
        await sink.write(batch([record]))
        assert sink.schema is not None
        assert [(c.name, c.type) for c in sink.schema.columns] == [
            ("id", "bigint"),
            ("price", "numeric"),
            ("at", "timestamp with time zone"),
            ("tags", "jsonb"),
            ("ok", "boolean"),
            ("note", "text"),
        ]
        assert sink.schema.primary_key == ("id",)
    finally:
        await sink.aclose()
    assert await rows(pg_database, "SELECT id, price, tags FROM sales.new_t") == [
        (1, Decimal("2.50"), '["a"]')
    ]


async def test_create_makes_the_named_columns_not_null(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "docs", key=["id"], create=True, not_null=["doc"])
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, "doc": {"a": 1}, "note": "x"}]))
    finally:
        await sink.aclose()
    assert await rows(
        pg_database,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'docs' ORDER BY ordinal_position",
    ) == [("id", "bigint", "NO"), ("doc", "jsonb", "NO"), ("note", "text", "YES")]


async def test_create_from_the_source_schema(pg_database: str) -> None:
    await execute(
        pg_database,
        "CREATE SCHEMA src; CREATE TABLE src.items (a int, b varchar(5) "
        "NOT NULL, c numeric(10,2), PRIMARY KEY (b, a))",
    )
    sink = PostgresSink(
        pg_database, "copy_of_items", create=True, source_dsn=pg_database, source_table="src.items"
    )
    await sink.open()
    try:
        assert sink.schema is not None
        assert [(c.name, c.type, c.not_null) for c in sink.schema.columns] == [
            ("a", "integer", True),
            ("b", "character varying(5)", True),
            ("c", "numeric(10,2)", False),
        ]
        assert sink.schema.primary_key == ("b", "a")
    finally:
        await sink.aclose()


def test_bad_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sink postgres: mode: must be one of upsert, append"):
        PostgresSink("postgresql://h/db", "t", mode="merge")
    with pytest.raises(ConfigError, match="replace_partition needs the partition columns"):
        PostgresSink("postgresql://h/db", "t", mode="replace_partition")


@pytest.mark.parametrize(
    "mode", ["upsert", "append", "replace_partition", "refresh_swap", "soft_delete"]
)
def test_each_mode_has_its_own_writer_chosen_at_construction(mode: str) -> None:
    sink = PostgresSink("postgresql://h/db", "t", mode=mode, partition=["day"])
    assert sink.writer.mode == mode
    assert type(sink.writer).__module__ == f"asyncetl.connectors.postgres._writers.{mode}"


async def test_swap_is_only_for_refresh_swap(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = PostgresSink(pg_database, "t", mode="append")
    await sink.open()
    try:
        with pytest.raises(
            ConfigError, match=r"^sink postgres: swap\(\) is for a refresh_swap sink whose table"
        ):
            await sink.swap()
    finally:
        await sink.aclose()


async def test_refresh_swap_from_a_snapshot_swaps_at_the_end_of_each_scan(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE src (id int PRIMARY KEY, v text);"
        "INSERT INTO src SELECT g, 'a' FROM generate_series(1, 5) g;"
        "CREATE TABLE dim (id int PRIMARY KEY, v text); INSERT INTO dim VALUES (99, 'gone')",
    )

    def pipeline() -> Pipeline:
        return Pipeline(
            "refresh",
            TableSource(pg_database, "src", snapshot=True, chunk_size=2),
            PostgresSink(pg_database, "dim", mode="refresh_swap"),
            checkpoints=PostgresCheckpointStore(pg_database),
            max_batch_size=2,
        )

    await pipeline().run()
    assert await rows(pg_database, "SELECT * FROM dim ORDER BY id") == [
        (i, "a") for i in range(1, 6)
    ]
    await execute(pg_database, "DELETE FROM src WHERE id > 2; UPDATE src SET v = 'b'")
    await pipeline().run()
    assert await rows(pg_database, "SELECT * FROM dim ORDER BY id") == [(1, "b"), (2, "b")]
    assert await rows(pg_database, "SELECT position FROM asyncetl_checkpoints") == [("null",)]
