"""``stop_when_idle`` for CDC: a run stops once the slot confirmed the server's WAL end as it
stood when the quiet began, not merely after a quiet spell; and once it has, at once."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from asyncetl import Pipeline, RunStats
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from asyncetl.core import _stages
from tests.connectors.postgres.cdc.support import (
    execute,
    fetch,
    fetchval,
    random_name,
    table_text,
    wait_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def short_confirm_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on a source that confirms nothing after 5 s, not 30: a slot that is caught
    up confirms within a second, and one still behind keeps confirming progress."""
    monkeypatch.setattr(_stages, "_CONFIRM_WAIT", 5.0)


TABLES = (
    "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE unpublished (id int, pad text);"
    "INSERT INTO t VALUES (1)"
)


def pipeline(source_dsn: str, target_dsn: str, slot: str, publication: str) -> Pipeline:
    return Pipeline(
        "caught_up",
        CdcSource(source_dsn, slot=slot, publication=publication, tables=["t"]),
        ApplySink(target_dsn, create=True),
        checkpoints=PostgresCheckpointStore(target_dsn),
        max_batch_age=0.05,
        stop_when_idle=0.1,
    )


async def run_logged(
    source_dsn: str, target_dsn: str, slot: str, publication: str
) -> tuple[RunStats, list[str]]:
    """One run; with how it stopped when idle (confirmed, or given up on the source)."""
    with capture_logs() as logs:
        stats = await pipeline(source_dsn, target_dsn, slot, publication).run()
    return stats, stops(logs)


def stops(logs: Sequence[MutableMapping[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if str(e["event"]).startswith("idle; stopping")]


async def confirmed_past(dsn: str, slot: str, lsn: int) -> bool:
    confirmed: bool = await fetchval(
        dsn,
        "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2",
        lsn,
        slot,
    )
    return confirmed


async def test_a_quiet_spell_while_the_server_still_decodes_wal_is_no_stop(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, TABLES)
    slot, publication = random_name("slot"), random_name("pub")
    await pipeline(cdc_db, target_db, slot, publication).run()
    assert await table_text(target_db, "t") == ["(1)"]
    # WAL the walsender must decode (and filter out) before it reaches the next change:
    # longer than the idle time, during which the stream has nothing to say.
    await execute(
        cdc_db,
        "INSERT INTO unpublished SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g",
    )
    await execute(cdc_db, "INSERT INTO t VALUES (2)")
    end = await fetchval(cdc_db, "SELECT pg_current_wal_lsn()")
    await pipeline(cdc_db, target_db, slot, publication).run()
    assert await table_text(target_db, "t") == ["(1)", "(2)"]
    assert await confirmed_past(cdc_db, slot, end)


async def test_a_big_transaction_still_being_decoded_is_loaded_before_the_run_stops(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, TABLES)
    slot, publication = random_name("slot"), random_name("pub")
    await pipeline(cdc_db, target_db, slot, publication).run()
    # One transaction: the walsender sends nothing of it before it has decoded it all.
    await execute(cdc_db, "INSERT INTO t SELECT g FROM generate_series(2, 40000) g")
    end = await fetchval(cdc_db, "SELECT pg_current_wal_lsn()")
    stats, stopped = await run_logged(cdc_db, target_db, slot, publication)
    assert stats.records_in == 39_999
    assert stopped == ["idle; stopping"]
    assert await fetchval(target_db, "SELECT count(*) FROM t") == 40_000
    assert await confirmed_past(cdc_db, slot, end)


async def test_a_resumed_run_with_no_change_confirms_the_wal_end_and_stops(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, TABLES)
    slot, publication = random_name("slot"), random_name("pub")
    await pipeline(cdc_db, target_db, slot, publication).run()
    # WAL with no change for the stream: nothing is delivered for it, so only the
    # walsender's own reports move the slot past it.
    await execute(cdc_db, "INSERT INTO unpublished SELECT g, 'x' FROM generate_series(1, 1000) g")
    end = await fetchval(cdc_db, "SELECT pg_current_wal_lsn()")
    stats, stopped = await run_logged(cdc_db, target_db, slot, publication)
    assert stats.records_in == 0
    assert stopped == ["idle; stopping"]  # confirmed, not given up on
    assert await confirmed_past(cdc_db, slot, end)
    assert await table_text(target_db, "t") == ["(1)"]


async def test_a_wal_end_inside_an_open_transactions_unflushed_wal_is_reached(
    cdc_db: str, target_db: str
) -> None:
    await execute(cdc_db, TABLES)
    slot, publication = random_name("slot"), random_name("pub")
    await pipeline(cdc_db, target_db, slot, publication).run()
    await execute(cdc_db, "INSERT INTO t VALUES (2)")
    # A transaction that wrote pages of WAL and stays open: the WAL writer writes (and
    # flushes) its full pages only, so the server's WAL end comes to lie on a page
    # boundary inside a record whose tail no walsender can read until something commits.
    other = await asyncpg.connect(cdc_db)
    open_transaction = other.transaction()
    await open_transaction.start()
    try:
        await other.execute(
            "INSERT INTO unpublished SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g"
        )
        end = await wait_for(lambda: wal_end_inside_unflushed_wal(cdc_db), seconds=10)
        stats, stopped = await run_logged(cdc_db, target_db, slot, publication)
    finally:
        await open_transaction.rollback()
        await other.close()
    assert stats.records_in == 1
    assert stopped == ["idle; stopping"]  # confirmed, not given up on
    assert await confirmed_past(cdc_db, slot, end)
    assert await table_text(target_db, "t") == ["(1)", "(2)"]


async def wal_end_inside_unflushed_wal(dsn: str) -> int | None:
    """The server's WAL end, once it is a page boundary with WAL inserted past it."""
    row = await fetch(
        dsn,
        "SELECT pg_current_wal_lsn(), pg_current_wal_insert_lsn() > pg_current_wal_lsn()",
    )
    end, inserted_past = row[0]
    return int(end) if end % 8192 == 0 and inserted_past else None
