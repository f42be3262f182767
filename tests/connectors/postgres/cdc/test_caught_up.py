"""``stop_when_idle`` for CDC: a run stops once the slot confirmed the server's WAL end as it
stood when the quiet began, not merely after a quiet spell."""

from __future__ import annotations

import pytest

from asyncetl import Pipeline
from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
from tests.connectors.postgres.cdc.support import execute, fetchval, random_name, table_text

pytestmark = pytest.mark.anyio


def pipeline(source_dsn: str, target_dsn: str, slot: str, publication: str) -> Pipeline:
    return Pipeline(
        "caught_up",
        CdcSource(source_dsn, slot=slot, publication=publication, tables=["t"]),
        ApplySink(target_dsn, create=True),
        checkpoints=PostgresCheckpointStore(target_dsn),
        max_batch_age=0.05,
        stop_when_idle=0.1,
    )


async def test_a_quiet_spell_while_the_server_still_decodes_wal_is_no_stop(
    cdc_db: str, target_db: str
) -> None:
    await execute(
        cdc_db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE unpublished (id int, pad text);"
        "INSERT INTO t VALUES (1)",
    )
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
    confirmed = await fetchval(
        cdc_db,
        "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2",
        end,
        slot,
    )
    assert confirmed is True
