"""``cdc status`` and ``cdc drop`` against a real slot."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest

from asyncetl.connectors.postgres.cdc import CdcSource, cdc_drop, cdc_status
from asyncetl.connectors.postgres.cdc._lsn import parse_lsn
from asyncetl.core.errors import PermanentError
from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    fetchval,
    fresh_database,
    random_name,
    streaming,
    take,
    wait_for,
)

pytestmark = pytest.mark.anyio


async def test_status_then_drop(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    slot, publication = random_name("slot"), random_name("pub")
    assert await cdc_status(cdc_db, slot=slot, publication=publication) == {
        "slot": slot,
        "exists": False,
        "checkpoint": None,
        "snapshot": None,
        "publication": {"name": publication, "exists": False, "tables": None},
    }
    source = CdcSource(cdc_db, slot=slot, publication=publication, tables=["t"])
    try:
        async with aclosing(source.read(None, max_chunk=1)) as chunks:  # type: ignore[type-var]
            chunk = await chunks.__anext__()
        assert chunk.position is not None
        status = await cdc_status(
            cdc_db, slot=slot, publication=publication, position=chunk.position
        )
        assert status["snapshot"] == {"table": ["public", "t"], "after": ["1"]}
        assert status["publication"] == {
            "name": publication,
            "exists": True,
            "tables": ["public.t"],
        }
        assert (status["exists"], status["active"], status["wal_status"]) == (
            True,
            False,
            "reserved",
        )
        # Not streaming yet, but a consumer holds the slot: it is snapshotting.
        assert status["consumer_attached"] is True
        await execute(cdc_db, "INSERT INTO t SELECT generate_series(3, 1000)")
        status = await cdc_status(cdc_db, slot=slot, publication=publication)
        assert isinstance(status["lag_bytes"], int) and status["lag_bytes"] > 0
        assert status["wal_retained_bytes"] >= status["lag_bytes"]  # type: ignore[operator]
        # Counted from the first pending change: at most the whole distance to the slot's.
        assert (
            parse_lsn(str(status["current_lsn"])) - parse_lsn(str(status["confirmed_flush_lsn"]))
            >= status["lag_bytes"]
        )
    finally:
        await source.aclose()
    assert await cdc_drop(cdc_db, slot=slot, publication=publication) == {
        "slot_dropped": True,
        "publication_dropped": True,
    }
    assert (
        await fetch(cdc_db, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", slot) == []
    )
    assert await cdc_drop(cdc_db, slot=slot, publication=publication) == {
        "slot_dropped": False,
        "publication_dropped": False,
    }


async def test_drop_refuses_a_slot_in_use(cdc_db: str) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    slot, publication = random_name("slot"), random_name("pub")
    source = CdcSource(cdc_db, slot=slot, publication=publication, tables=["t"], snapshot="never")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, source, 1)
            await wait_for(
                lambda: fetchval(
                    cdc_db, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot
                )
            )
            with pytest.raises(
                PermanentError,
                match=f"replication slot '{slot}' is in use by "
                r"process \d+; stop the pipeline",
            ):
                await cdc_drop(cdc_db, slot=slot, publication=publication)
            await wait_for(lambda: streaming(cdc_db, slot))
            await execute(cdc_db, "INSERT INTO t VALUES (1)")
    finally:
        await source.aclose()


async def test_a_caught_up_slot_reads_no_lag_whatever_other_databases_write(
    cdc_db: str, logical_pg: str
) -> None:
    await execute(cdc_db, "CREATE TABLE t (id int PRIMARY KEY)")
    slot, publication = random_name("slot"), random_name("pub")
    source = CdcSource(cdc_db, slot=slot, publication=publication, tables=["t"], snapshot="never")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, source, 1)
            await wait_for(lambda: streaming(cdc_db, slot))
            tg.cancel_scope.cancel()  # caught up: nothing of this database is pending
    finally:
        await source.aclose()
    confirmed = await fetchval(
        cdc_db,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        slot,
    )
    async with fresh_database(logical_pg) as other:
        await execute(other, "CREATE TABLE noise AS SELECT generate_series(1, 20000) AS n")
    status = await cdc_status(cdc_db, slot=slot, publication=publication)
    assert parse_lsn(str(status["current_lsn"])) - parse_lsn(confirmed) > 100_000
    assert (status["active"], status["consumer_attached"], status["lag_bytes"]) == (False, False, 0)
    await execute(cdc_db, "INSERT INTO t VALUES (2)")
    status = await cdc_status(cdc_db, slot=slot, publication=publication)
    assert isinstance(status["lag_bytes"], int) and status["lag_bytes"] > 0
    await cdc_drop(cdc_db, slot=slot, publication=publication)
