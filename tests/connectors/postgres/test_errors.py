"""Safety and clear errors: odd identifiers, killed connections, missing things, bad values."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest
import structlog.testing

from asyncetl import ConnectorError, ListSource, PermanentError, Pipeline, StageError
from asyncetl.connectors.postgres import PostgresCheckpointStore, PostgresSink, TableSource
from tests.connectors.postgres.helpers import batch, connect, execute, rows

pytestmark = pytest.mark.anyio

ODD = 'x"; DROP TABLE y; --'


async def test_odd_table_name_is_just_a_name(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE y (id int); INSERT INTO y VALUES (42)")
    sink = PostgresSink(pg_database, ODD, key=["id"], create=True)
    await sink.open()
    try:
        await sink.write(batch([{"id": 1, ODD: "v"}]))
    finally:
        await sink.aclose()
    source = TableSource(pg_database, ODD)
    await source.open()
    try:
        chunks = [c async for c in source.read(None, max_chunk=10)]
    finally:
        await source.aclose()
    assert [c.records for c in chunks] == [[{"id": 1, ODD: "v"}]]
    assert await rows(pg_database, "SELECT id FROM y") == [(42,)]
    assert await rows(pg_database, 'SELECT * FROM "x""; DROP TABLE y; --"') == [(1, "v")]


async def test_killed_connection_mid_batch_is_retried_once_whole(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE log (n int)")  # append: twice would show
    records = [{"n": i} for i in range(6)]
    sink = PostgresSink(pg_database, "log", mode="append", retries=3)
    pipeline = Pipeline(
        "kill",
        ListSource(records, chunk_size=3),
        sink,
        checkpoints=PostgresCheckpointStore(pg_database),
        max_batch_size=3,
    )
    async with connect(pg_database) as blocker, connect(pg_database) as admin:
        blocker_tx = blocker.transaction()
        await blocker_tx.start()
        await blocker.execute("LOCK TABLE log IN ACCESS EXCLUSIVE MODE")
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipeline.run)
                victim = None
                with anyio.fail_after(10):
                    while victim is None:  # the sink's batch waits for the lock
                        await anyio.sleep(0.02)
                        victim = await admin.fetchval(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                        )
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
                await blocker_tx.rollback()
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["retrying"]
    assert await rows(pg_database, "SELECT n FROM log ORDER BY n") == [(i,) for i in range(6)]
    assert await rows(pg_database, "SELECT position::text FROM asyncetl_checkpoints") == [("6",)]


async def test_missing_table_without_create(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "nope")
    with pytest.raises(PermanentError) as info:
        await sink.open()
    where = pg_database.split("@")[1]
    assert str(info.value) == (
        f"table nope does not exist in {where}; create it or set create = true on the sink"
    )


async def test_missing_key_column(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, a text)")
    sink = PostgresSink(pg_database, "t", key=["code"])
    with pytest.raises(PermanentError) as info:
        await sink.open()
    assert str(info.value) == (
        "key column 'code' is missing from table public.t (its columns: "
        "id, a); fix the sink's key or add the column"
    )


async def test_record_without_its_key_is_rejected(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, a text)")
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        rejects = await sink.write(batch([{"a": "no id"}, {"id": 1, "a": "ok"}]))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        ({"a": "no id"}, "record has no field 'id', which the sink needs for upsert")
    ]
    assert await rows(pg_database, "SELECT * FROM t") == [(1, "ok")]


async def test_type_mismatch_names_column_and_value(pg_database: str) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, amount numeric, n int)")
    records = [
        {"id": 1, "amount": 1, "n": 1},
        {"id": 2, "amount": "lots", "n": 2},
        {"id": 3, "amount": 3, "n": "three"},
    ]
    pipeline = Pipeline("types", ListSource(records), PostgresSink(pg_database, "t"))
    with pytest.raises(StageError) as info:
        await pipeline.run()
    # The good record is written; the run stops before its checkpoint, so a re-run rewrites it.
    assert await rows(pg_database, "SELECT id FROM t") == [(1,)]
    assert str(info.value) == (
        "stage 'postgres' failed on the batch ending at position 3: PermanentError: column "
        "'amount' of table public.t is numeric, which cannot take the value 'lots' (not a "
        "decimal number); convert it with a transform or fix the table"
    )


async def test_type_mismatches_go_to_dead_letters_and_the_rest_is_written(
    pg_database: str,
) -> None:
    await execute(pg_database, "CREATE TABLE t (id int PRIMARY KEY, n int)")
    records: list[dict[str, Any]] = [
        {"id": 1, "n": 1},
        {"id": 2, "n": "two"},
        {"id": 3, "n": 2**40},
        {"id": 4, "n": 4},
    ]
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        rejects = await sink.write(batch(records))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            {"id": 2, "n": "two"},
            "column 'n' of table public.t is integer, which cannot take the "
            "value 'two' ('str' object cannot be interpreted as an integer); convert it with a transform or "
            "fix the table",
        ),
        (
            {"id": 3, "n": 2**40},
            "column 'n' of table public.t is integer, which cannot take the "
            "value 1099511627776 (value out of int32 range); convert it with a transform or fix "
            "the table",
        ),
    ]
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [(1, 1), (4, 4)]


async def test_permission_denied(pg_database: str) -> None:
    role = f"asyncetl_noperm_{secrets.token_hex(4)}"
    await execute(pg_database, f"CREATE TABLE t (id int PRIMARY KEY); CREATE ROLE {role} LOGIN")
    try:
        dsn = pg_database.replace("postgres@", f"{role}@")
        sink = PostgresSink(dsn, "t")
        await sink.open()
        try:
            with pytest.raises(PermanentError) as info:
                await sink.write(batch([{"id": 1}]))
        finally:
            await sink.aclose()
        where = pg_database.split("@")[1]
        assert str(info.value) == (
            f"permission denied on {where} while writing to public.t: permission denied for "
            f"table t; grant the privilege to role '{role}' or use another role"
        )
    finally:
        await execute(pg_database, f"DROP ROLE {role}")


async def test_unreachable_server_names_host_and_port_never_the_password() -> None:
    store = PostgresCheckpointStore(
        "postgresql://etl:s3cret-pw@127.0.0.1:1/db", retries=2, retry_max_time=2
    )
    with structlog.testing.capture_logs() as logs, pytest.raises(ConnectorError) as info:
        await store.open()
    message = str(info.value)
    assert message == (
        "cannot reach PostgreSQL at 127.0.0.1:1 while connecting as 'etl': Connect call failed "
        "('127.0.0.1', 1); check that the server is running and that the DSN's host and port "
        "are right"
    )
    assert len(logs) == 2
    assert "s3cret-pw" not in repr(logs) + message + repr(store.dsn)


async def test_type_mismatches_in_an_upsert_over_existing_rows_go_to_dead_letters(
    pg_database: str,
) -> None:
    # Merged with INSERT … ON CONFLICT, values bound as arrays: the refused values are
    # still found record by record.
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, n int, tag text); "
        "INSERT INTO t SELECT g, 0, 'old' FROM generate_series(1, 5) g",
    )
    records: list[dict[str, Any]] = [
        {"id": 1, "n": 1, "tag": "a"},
        {"id": 2, "n": "two", "tag": "b"},
        {"id": 3, "n": 2**40, "tag": "c"},
    ]
    # A list in every row is no array to bind: it would shift the column's values.
    listed: list[dict[str, Any]] = [
        {"id": 4, "n": 4, "tag": ["x", "y"]},
        {"id": 5, "n": 5, "tag": ["e", "f"]},
    ]
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        # A key already stored: from now on every batch is merged.
        assert await sink.write(batch([{"id": 1, "n": 0, "tag": "old"}])) == []
        rejects = [*await sink.write(batch(records)), *await sink.write(batch(listed))]
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            records[1],
            "column 'n' of table public.t is integer, which cannot take the "
            "value 'two' ('str' object cannot be interpreted as an integer); convert it with a "
            "transform or fix the table",
        ),
        (
            records[2],
            "column 'n' of table public.t is integer, which cannot take the "
            "value 1099511627776 (value out of int32 range); convert it with a transform or fix "
            "the table",
        ),
        (
            listed[0],
            "column 'tag' of table public.t is text, which cannot take the value ['x', 'y'] "
            "(expected str, got list); convert it with a transform or fix the table",
        ),
        (
            listed[1],
            "column 'tag' of table public.t is text, which cannot take the value ['e', 'f'] "
            "(expected str, got list); convert it with a transform or fix the table",
        ),
    ]
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [
        (1, 1, "a"),
        (2, 0, "old"),
        (3, 0, "old"),
        (4, 0, "old"),
        (5, 0, "old"),
    ]


async def test_an_upsert_over_existing_rows_refuses_a_value_too_long_rather_than_cut_it(
    pg_database: str,
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(3)); INSERT INTO t VALUES (1, 'a')",
    )
    sink = PostgresSink(pg_database, "t")
    await sink.open()
    try:
        assert await sink.write(batch([{"id": 1, "code": "a"}])) == []  # now merging
        rejects = await sink.write(batch([{"id": 1, "code": "abcdef"}, {"id": 2, "code": "ok"}]))
    finally:
        await sink.aclose()
    assert [(r.record, str(r.error)) for r in rejects] == [
        (
            {"id": 1, "code": "abcdef"},
            "table public.t refused the record: value too long for type character varying(3); "
            "fix the record, or the table's constraint",
        )
    ]
    assert await rows(pg_database, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "ok")]
