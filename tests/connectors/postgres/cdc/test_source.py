"""CdcSource against the real server: snapshot then stream, positions, acks, heartbeats, faults."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs

from asyncetl import JsonValue, ListSink, MemoryCheckpointStore, Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from asyncetl.connectors.postgres.cdc._lsn import format_lsn, parse_lsn
from asyncetl.core.changes import UNCHANGED
from asyncetl.core.errors import ConfigError, PermanentError, StageError
from tests.connectors.postgres.cdc.support import (
    confirmed_flush,
    execute,
    fetch,
    fetchval,
    fresh_database,
    random_name,
    rows_of,
    server_and_database,
    streaming,
    take,
    wait_for,
)
from tests.postgres_servers import PrivateServer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _info_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def make_source(dsn: str, **kwargs: Any) -> CdcSource:
    options: dict[str, Any] = {
        "slot": random_name("slot"),
        "publication": random_name("pub"),
        "status_interval": 0.2,
    }
    options.update(kwargs)
    return CdcSource(dsn, **options)


async def test_snapshot_then_stream_in_a_pipeline(cdc_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE items (id int PRIMARY KEY, name text);"
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    source = make_source(cdc_db, tables=["items"])
    sink = ListSink[Any]()
    checkpoints = MemoryCheckpointStore()
    pipeline = Pipeline(
        "p", source, sink, checkpoints=checkpoints, max_batch_size=2, max_batch_age=0.05
    )
    xid: list[int] = []

    async def write() -> None:
        await wait_for(lambda: streaming(cdc_db, source.slot))
        conn = await anyio_connect(cdc_db)
        async with conn.transaction():
            xid.append(int(await conn.fetchval("SELECT txid_current()")))
            await conn.execute("INSERT INTO items VALUES (4, 'd')")
            await conn.execute("UPDATE items SET name = 'B' WHERE id = 2")
            await conn.execute("DELETE FROM items WHERE id = 1")
        await conn.close()
        await wait_for(lambda: _has(sink, 6))
        pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await pipeline.run()

    assert rows_of(sink.records) == [
        ("r", {"id": 1}, {"id": 1, "name": "a"}),
        ("r", {"id": 2}, {"id": 2, "name": "b"}),
        ("r", {"id": 3}, {"id": 3, "name": "c"}),
        ("c", {"id": 4}, {"id": 4, "name": "d"}),
        ("u", {"id": 2}, {"id": 2, "name": "B"}),
        ("d", {"id": 1}, None),
    ]
    streamed = sink.records[3:]
    assert {e.xid for e in streamed} == set(xid)
    assert [e.seq for e in streamed] == [0, 1, 2]
    assert streamed[2].before == {"id": 1}
    assert len({e.lsn for e in streamed}) == 1
    committed = checkpoints.positions["p", "cdc"]
    assert isinstance(committed, dict) and set(committed) == {
        "lsn",
        "database",
        "slot",
        "publication",
    }
    # The commit's end LSN lies after its commit LSN; the slot confirmed exactly what was committed.
    assert parse_lsn(str(committed["lsn"])) > (streamed[0].lsn or 0)
    await wait_for(lambda: _confirmed_is(cdc_db, source.slot, committed["lsn"]))


async def _has(sink: ListSink[Any], count: int) -> bool:
    return len(sink.records) >= count


async def _confirmed_is(dsn: str, slot: str, lsn: Any) -> bool:
    return bool(await confirmed_flush(dsn, slot) == lsn)


async def anyio_connect(dsn: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn)


async def test_only_acknowledged_positions_are_reported_flushed(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], snapshot="never")
    try:
        records, positions = await take_after_writes(
            source, cdc_db, ["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"], 2
        )
        assert [e.after for e in records] == [{"id": 1}, {"id": 2}]
        start = await confirmed_flush(cdc_db, source.slot)
        # Status updates keep flowing (every 0.2 s) but nothing was acknowledged yet.
        await anyio.sleep(0.6)
        assert await confirmed_flush(cdc_db, source.slot) == start
        first_commit = positions[0]
        assert isinstance(first_commit, dict)
        await source.acknowledge(first_commit)
        await wait_for(lambda: _confirmed_is(cdc_db, source.slot, first_commit["lsn"]))
    finally:
        await source.aclose()


async def take_after_writes(
    source: CdcSource, dsn: str, statements: list[str], count: int, **kwargs: Any
) -> tuple[list[Any], list[Any]]:
    """Start reading, run ``statements`` (each its own transaction) once streaming, take ``count``."""
    done = anyio.Event()

    async def write() -> None:
        await wait_for(lambda: streaming(dsn, source.slot))
        for statement in statements:
            await execute(dsn, statement)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        result = await take(source, count, **kwargs)
    return result


async def test_resume_inside_a_transaction_skips_what_was_emitted(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], snapshot="never")
    try:
        records, positions = await take_after_writes(
            source, cdc_db, ["INSERT INTO t SELECT generate_series(1, 10)"], 3, max_chunk=3
        )
    finally:
        await source.aclose()
    # Chunks hold at most 3 changes but may hold fewer: we stopped somewhere inside the transaction.
    emitted = len(records)
    assert 3 <= emitted < 10
    assert [e.after for e in records] == [{"id": i} for i in range(1, emitted + 1)]
    middle = positions[-1]
    assert isinstance(middle, dict)
    assert middle["n"] == emitted and middle["tx"] == format_lsn(records[0].lsn or 0)
    resumed = CdcSource(
        cdc_db,
        slot=source.slot,
        publication=source.publication,
        tables=["t"],
        snapshot="never",
        status_interval=0.2,
    )
    try:
        rest, rest_positions = await take(resumed, 10 - emitted, after=middle, committed=True)
    finally:
        await resumed.aclose()
    assert [e.after["id"] for e in rest if e.after] == list(range(emitted + 1, 11))
    assert [e.seq for e in rest] == list(range(emitted, 10))
    assert set(rest_positions[-1]) == {"lsn", "database", "slot", "publication"}  # type: ignore[arg-type]


async def test_types_from_stream_and_snapshot_agree(cdc_db: str) -> None:
    await execute(
        cdc_db,
        """
        CREATE TABLE typed (id bigint PRIMARY KEY, small smallint, n numeric(10, 2), f double precision,
          b boolean, t text, v varchar(5), ts timestamp, tz timestamptz, d date, j jsonb, js json,
          ints int[], texts text[], u uuid, raw bytea, iv interval, big text);
        ALTER TABLE typed ALTER big SET STORAGE EXTERNAL;
        INSERT INTO typed VALUES (1, 2, 3.25, 1.5, true, 'x', 'abc', '2024-01-02 03:04:05.5',
          '2024-01-02 03:04:05+02', '2024-02-29', '{"a": [1, null]}', '[1, "two"]',
          '{1,NULL,3}', '{"a b","c\\"d",NULL}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
          '\\x00ff', '1 day 02:00:00', repeat('z', 5000))""",
    )
    expected = {
        "id": 1,
        "small": 2,
        "n": Decimal("3.25"),
        "f": 1.5,
        "b": True,
        "t": "x",
        "v": "abc",
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
        "tz": dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC),
        "d": dt.date(2024, 2, 29),
        "j": '{"a": [1, null]}',  # the exact text (JsonText, a str)
        "js": '[1, "two"]',
        "ints": [1, None, 3],
        "texts": ["a b", 'c"d', None],
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "raw": b"\x00\xff",
        "iv": "1 day 02:00:00",
        "big": "z" * 5000,
    }
    source = make_source(cdc_db, tables=["typed"])
    try:
        records, _ = await take_after_writes(
            source,
            cdc_db,
            [
                "INSERT INTO typed SELECT 2, small, n, f, b, t, v, ts, tz, d, j, js, ints, texts, u, raw, "
                "iv, big FROM typed WHERE id = 1",
                "UPDATE typed SET t = 'y' WHERE id = 2",
            ],
            3,
        )
    finally:
        await source.aclose()
    snapshot_row, inserted, updated = records
    assert snapshot_row.op == "r" and snapshot_row.after == expected
    assert inserted.op == "c" and inserted.after == {**expected, "id": 2}
    assert updated.op == "u" and updated.after == {**expected, "id": 2, "t": "y", "big": UNCHANGED}
    assert updated.unchanged == {"big"}
    assert inserted.columns is not None and inserted.columns["n"] == "numeric(10,2)"
    assert inserted.columns["v"] == "character varying(5)" and inserted.key_columns == ("id",)


async def test_truncate_and_replica_identity_full(cdc_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE k (a int, b text); ALTER TABLE k REPLICA IDENTITY FULL;"
        "INSERT INTO k VALUES (1, 'x')",
    )
    source = make_source(cdc_db, tables=["k"], snapshot="never")
    try:
        records, _ = await take_after_writes(
            source, cdc_db, ["UPDATE k SET b = 'y'", "DELETE FROM k", "TRUNCATE k"], 3
        )
    finally:
        await source.aclose()
    update, delete, truncate = records
    assert (update.op, update.key, update.before, update.after) == (
        "u",
        {"a": 1, "b": "y"},
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
    )
    assert (delete.op, delete.before) == ("d", {"a": 1, "b": "y"})
    assert (truncate.op, truncate.table, dict(truncate.options)) == (
        "t",
        "k",
        {"cascade": False, "restart_identity": False},
    )


async def test_snapshot_resumes_from_its_last_committed_chunk(cdc_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id text PRIMARY KEY);"
        "INSERT INTO a SELECT generate_series(1, 5);"
        "INSERT INTO b SELECT 'k' || g FROM generate_series(1, 4) g",
    )
    source = make_source(cdc_db, tables=["a", "b"])
    try:
        first, positions = await take(source, 4, max_chunk=2)
    finally:
        await source.aclose()
    assert [e.after for e in first] == [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]
    start = positions[0]
    assert isinstance(start, dict)
    identity = {
        "database": source.dsn.where,
        "slot": source.slot,
        "publication": source.publication,
    }
    assert positions[-1] == {
        "lsn": start["lsn"],
        "snapshot": {"table": ["public", "a"], "after": ["4"]},
        **identity,
    }
    # Changes made while no one reads: the resumed snapshot sees them, and the stream replays them.
    await execute(cdc_db, "INSERT INTO a VALUES (6); DELETE FROM b WHERE id = 'k1'")
    resumed = CdcSource(
        cdc_db,
        slot=source.slot,
        publication=source.publication,
        tables=["a", "b"],
        status_interval=0.2,
    )
    try:
        rest, rest_positions = await take(resumed, 7, after=positions[-1], max_chunk=2)
    finally:
        await resumed.aclose()
    assert rows_of(rest) == [
        ("r", {"id": 5}, {"id": 5}),
        ("r", {"id": 6}, {"id": 6}),
        ("r", {"id": "k2"}, {"id": "k2"}),
        ("r", {"id": "k3"}, {"id": "k3"}),
        ("r", {"id": "k4"}, {"id": "k4"}),
        ("c", {"id": 6}, {"id": 6}),
        ("d", {"id": "k1"}, None),
    ]
    assert {"lsn": start["lsn"], **identity} in rest_positions


async def test_heartbeat_moves_an_idle_slot(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int)")
    source = make_source(cdc_db, tables=["quiet"], snapshot="never", heartbeat_interval=0.1)
    try:
        busy_end: list[int] = []

        async def write_elsewhere() -> None:
            await wait_for(lambda: streaming(cdc_db, source.slot))
            conn = await anyio_connect(cdc_db)
            async with conn.transaction():
                await conn.execute("INSERT INTO busy SELECT generate_series(1, 1000)")
                # The commit record comes after this, so its end lies beyond it.
                busy_end.append(
                    parse_lsn(await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text"))
                )
            await conn.close()

        async def on_chunk(chunk: Any) -> None:
            assert chunk.records == []
            if busy_end and parse_lsn(chunk.position["lsn"]) > busy_end[0]:
                await source.acknowledge(chunk.position)
                raise _Done

        reached = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(write_elsewhere)
                await take(source, 1, on_chunk=on_chunk)
        except* _Done:
            reached = True
        assert reached
        # No change of the quiet table came, yet the slot moved past the busy table's WAL.
        flushed = await wait_for(lambda: confirmed_flush(cdc_db, source.slot))
        assert parse_lsn(flushed) > busy_end[0]
    finally:
        await source.aclose()


class _Done(Exception):
    pass


async def test_reconnects_after_the_walsender_is_terminated(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], snapshot="never")
    terminated: list[int] = []

    async def on_chunk(chunk: Any) -> None:
        if not terminated:
            pid = await fetchval(
                cdc_db,
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                source.slot,
            )
            terminated.append(await fetchval(cdc_db, "SELECT pg_terminate_backend($1)", pid))
            await execute(cdc_db, "INSERT INTO t VALUES (2)")

    try:
        with capture_logs() as logs:
            try:
                records, _ = await take_after_writes(
                    source, cdc_db, ["INSERT INTO t VALUES (1)"], 2, on_chunk=on_chunk
                )
            finally:
                pass
    finally:
        await source.aclose()
    assert terminated == [True]
    assert [e.after for e in records] == [{"id": 1}, {"id": 2}]
    lost = [e for e in logs if e["event"] == "replication connection lost; reconnecting"]
    assert lost and "terminating connection due to administrator command" in lost[0]["error"]


async def test_a_standby_takes_over_when_the_consumer_ends(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    first = make_source(cdc_db, tables=["t"], snapshot="never", standby_poll=0.1)
    second = CdcSource(
        cdc_db,
        slot=first.slot,
        publication=first.publication,
        tables=["t"],
        snapshot="never",
        status_interval=0.2,
        standby_poll=0.1,
    )
    got: list[Any] = []

    async def standby() -> None:
        records, _ = await take(second, 2, seconds=20)
        got.extend(records)

    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                records, _ = await take_after_writes(first, cdc_db, ["INSERT INTO t VALUES (1)"], 1)
                tg.start_soon(standby)
                await wait_for(
                    lambda: _logged_soon(
                        logs, "standby: another process consumes the slot; waiting"
                    )
                )
                await first.aclose()
                await execute(cdc_db, "INSERT INTO t VALUES (2)")
    finally:
        await first.aclose()
        await second.aclose()
    assert [e.after for e in records] == [{"id": 1}]
    # Nothing was acknowledged, so the standby resumes from the slot and sees both.
    assert [e.after for e in got] == [{"id": 1}, {"id": 2}]
    assert _logged(logs, "taking over the slot")


def _logged(logs: Sequence[Mapping[str, Any]], event: str) -> bool:
    return any(e["event"] == event for e in logs)


async def _logged_soon(logs: Sequence[Mapping[str, Any]], event: str) -> bool:
    return _logged(logs, event)


async def test_a_lost_slot_is_a_clear_error(private_pg: PrivateServer) -> None:
    # A private server: max_slot_wal_keep_size is server-wide and would invalidate other slots.
    async with fresh_database(private_pg.dsn()) as dsn:
        await execute(dsn, "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE junk (x int)")
        source = make_source(dsn, tables=["t"], snapshot="never")
        try:
            await take_after_writes(source, dsn, ["INSERT INTO t VALUES (1)"], 1)
        finally:
            await source.aclose()
        try:
            await execute(dsn, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
            await execute(dsn, "SELECT pg_reload_conf()")
            await anyio.sleep(0.2)
            for _ in range(3):
                await execute(dsn, "INSERT INTO junk VALUES (1); SELECT pg_switch_wal()")
            await execute(dsn, "CHECKPOINT")
        finally:
            await execute(dsn, "ALTER SYSTEM RESET max_slot_wal_keep_size")
            await execute(dsn, "SELECT pg_reload_conf()")
        rows = await fetch(
            dsn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", source.slot
        )
        assert [r[0] for r in rows] == ["lost"]
        again = CdcSource(
            dsn, slot=source.slot, publication=source.publication, tables=["t"], snapshot="never"
        )
        try:
            with pytest.raises(PermanentError) as caught:
                await take(again, 1, after={"lsn": "0/0"})
        finally:
            await again.aclose()
    assert str(caught.value) == (
        f"the replication slot on 127.0.0.1:{private_pg.port}/{dsn.rsplit('/', 1)[1]} has lost "
        f"WAL it still needed (slot {source.slot!r} has wal_status = lost), so changes were "
        "removed before they were read; drop the slot and the pipeline's checkpoint "
        "(python -m asyncetl cdc drop SPEC) and run again to re-create the slot and re-snapshot"
    )


async def test_clear_errors_for_missing_things(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    no_pub = make_source(cdc_db, tables=["t"], create_publication=False)
    no_table = make_source(cdc_db, tables=["nope"])
    no_slot = make_source(cdc_db, tables=["t"], create_slot=False)
    gone = make_source(cdc_db, tables=["t"])
    expected = {
        no_pub: f"publication {no_pub.publication!r} does not exist; create it (CREATE PUBLICATION "
        "… FOR TABLE …) or set create_publication = true",
        no_table: "table 'nope' does not exist in the source database; create it or remove it "
        "from tables",
        no_slot: f"replication slot {no_slot.slot!r} does not exist on "
        f"{server_and_database(cdc_db)}; create it or set create_slot = true",
        gone: f"replication slot {gone.slot!r} no longer exists but the checkpoint is at "
        "{'lsn': '0/10'}; changes since then are lost: reset the checkpoint (python -m "
        "asyncetl checkpoint reset SPEC) and run again to re-create the slot and re-snapshot",
    }
    for source, message in expected.items():
        try:
            with pytest.raises(PermanentError) as caught:
                await take(source, 1, after={"lsn": "0/10"} if source is gone else None)
        finally:
            await source.aclose()
        assert str(caught.value) == message
    with pytest.raises(ConfigError, match="replication slot name 'Bad-Name' is invalid"):
        CdcSource(cdc_db, slot="Bad-Name", publication="p")


async def test_a_run_whose_slot_is_gone_fails_before_creating_a_publication(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    gone = make_source(cdc_db, tables=["t"])
    try:
        with pytest.raises(PermanentError, match="no longer exists but the checkpoint is at"):
            await take(gone, 1, after={"lsn": "0/10"})
    finally:
        await gone.aclose()
    publications = await fetchval(
        cdc_db, "SELECT count(*) FROM pg_publication WHERE pubname = $1", gone.publication
    )
    assert publications == 0


async def test_pipeline_fails_with_a_stage_error_naming_the_source(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], create_publication=False)
    pipeline = Pipeline("p", source, ListSink(), stop_when_idle=1.0)
    with pytest.raises(StageError, match="stage 'cdc' failed .*publication"):
        await pipeline.run()


async def test_end_to_end_into_the_apply_sink(cdc_db: str, target_db: str) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE docs (id int PRIMARY KEY, title text, body text, tags text[], meta jsonb);"
        "ALTER TABLE docs ALTER body SET STORAGE EXTERNAL;"
        "INSERT INTO docs SELECT g, 't' || g, repeat('b', 3000) || g, '{x,y}', '{\"n\": 1}' "
        "FROM generate_series(1, 50) g",
    )
    source = make_source(cdc_db, tables=["docs"])
    sink = ApplySink(target_db, create=True)
    checkpoints = PostgresCheckpointStore(target_db)
    pipeline = Pipeline(
        "e2e", source, sink, checkpoints=checkpoints, max_batch_size=20, max_batch_age=0.05
    )
    statements = [
        "UPDATE docs SET title = 'changed' WHERE id <= 10",  # body: unchanged TOAST
        "UPDATE docs SET id = id + 1000 WHERE id BETWEEN 11 AND 15",  # key changes
        "DELETE FROM docs WHERE id BETWEEN 16 AND 20",
        "INSERT INTO docs VALUES (99, 'new', NULL, NULL, '[1, 2]')",
        "BEGIN; TRUNCATE docs; INSERT INTO docs VALUES (1, 'after truncate', 'b', '{}', 'null');"
        " INSERT INTO docs SELECT g, 'again', repeat('c', 4000), NULL, NULL"
        " FROM generate_series(2, 30) g; COMMIT",
        "UPDATE docs SET title = 'last' WHERE id > 20",
    ]
    compare = "SELECT id, title, md5(body), tags, meta::text FROM docs ORDER BY id"

    async def drive() -> None:
        await wait_for(lambda: streaming(cdc_db, source.slot))
        for index, statement in enumerate(statements):
            await execute(cdc_db, statement)
            if index == 0:  # the target must match the source at every step we look at
                await wait_for(lambda: _same(cdc_db, target_db, compare))
        await wait_for(lambda: _same(cdc_db, target_db, compare))
        pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await pipeline.run()
    assert await _same(cdc_db, target_db, compare)
    assert len(await fetch(target_db, "SELECT 1 FROM docs")) == 30


async def _same(source: str, target: str, query: str) -> bool:
    try:
        return [tuple(r) for r in await fetch(source, query)] == [
            tuple(r) for r in await fetch(target, query)
        ]
    except asyncpg.UndefinedTableError:
        return False


class _SlowSink(ListSink[Any]):
    async def write(self, batch: Any) -> Any:
        await anyio.sleep(1.2)
        return await super().write(batch)


async def test_status_updates_continue_while_the_pipeline_is_full(cdc_db: str) -> None:
    # The walsender gives up on a client silent for wal_sender_timeout; here 0.8 s, while
    # each batch takes the sink 1.2 s and the full queue holds the reader back.
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], snapshot="never", status_interval=0.2)
    source.params = dataclasses.replace(source.params, settings={"wal_sender_timeout": "800ms"})
    sink = _SlowSink()
    pipeline = Pipeline("p", source, sink, max_batch_size=1, max_batch_age=0.01, queue_size=1)

    async def drive() -> None:
        await wait_for(lambda: streaming(cdc_db, source.slot))
        for i in range(4):
            await execute(cdc_db, f"INSERT INTO t VALUES ({i})")
        await wait_for(lambda: _has(sink, 4))
        pipeline.stop()

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await pipeline.run()
    assert [e.after for e in sink.records] == [{"id": i} for i in range(4)]
    assert not _logged(logs, "replication connection lost; reconnecting")


async def test_lag_metrics_are_measured_and_logged(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(cdc_db, tables=["t"], snapshot="never", metrics_interval=0.1)
    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(take, source, 1)
                await wait_for(lambda: _logged_soon(logs, "cdc lag"))
                await execute(cdc_db, "INSERT INTO t VALUES (1)")
    finally:
        await source.aclose()
    metrics = source.metrics
    assert set(metrics) == {
        "slot",
        "lag_bytes",
        "restart_lag_bytes",
        "wal_status",
        "confirmed_flush_lsn",
        "lag_seconds",
    }
    assert metrics["slot"] == source.slot and metrics["wal_status"] == "reserved"
    assert isinstance(metrics["lag_bytes"], int) and isinstance(metrics["restart_lag_bytes"], int)
    line = next(e for e in logs if e["event"] == "cdc lag")
    assert line["slot"] == source.slot and "lag_bytes" in line


def test_a_position_written_for_another_slot_is_refused() -> None:
    source = CdcSource(
        "postgresql://etl:s3cret@127.0.0.1:5432/app", slot="new_slot", publication="pub"
    )
    source.check_position({"lsn": "0/10"})  # written before positions named their slot
    old: dict[str, JsonValue] = {
        "lsn": "0/10",
        "database": "127.0.0.1:5432/app",
        "slot": "old_slot",
        "publication": "pub",
    }
    source.check_position({**old, "slot": "new_slot"})
    with pytest.raises(ConfigError) as caught:
        source.check_position(old)
    assert str(caught.value) == (
        "CdcSource 'cdc': position: cannot resume from the committed position "
        '{"lsn":"0/10","database":"127.0.0.1:5432/app","slot":"old_slot","publication":"pub"}: '
        'it was written for slot "old_slot", not for slot "new_slot"; point slot back there, '
        'or to read "new_slot" from the start, reset the checkpoint '
        "(python -m asyncetl checkpoint reset SPEC)"
    )
    elsewhere = {**old, "slot": "new_slot", "database": "db.internal:5432/app"}
    with pytest.raises(ConfigError, match='written for database "db.internal:5432/app", not'):
        source.check_position(elsewhere)
    with pytest.raises(ConfigError) as shape:
        source.check_position(7)
    assert str(shape.value) == (
        "CdcSource 'cdc': position: 7 is not a CDC position; expected an object with an 'lsn'"
    )
