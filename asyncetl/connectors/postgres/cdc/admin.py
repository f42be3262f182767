"""What ``python -m asyncetl cdc status|drop SPEC`` does, as functions the CLI calls.

:func:`cdc_status` reports a slot's position, lag in bytes and time, retained WAL
and health, with the snapshot progress from the pipeline's committed position.
:func:`cdc_drop` drops the slot and the publication (the CLI asks for
confirmation first).
"""

from __future__ import annotations

import asyncpg

from asyncetl.connectors.postgres._connect import Dsn, map_errors
from asyncetl.connectors.postgres.cdc import _catalog as catalog
from asyncetl.connectors.postgres.cdc._lsn import format_lsn, parse_lsn
from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.errors import PermanentError

__all__ = ["cdc_drop", "cdc_status"]

#: The first change the slot still holds for its publication. Logical decoding reads
#: only this database's WAL, so none pending means the slot is caught up, whatever
#: other databases wrote since (the server's WAL position moves for those too).
_FIRST_PENDING = """
SELECT lsn::text FROM pg_logical_slot_peek_binary_changes(
    $1, NULL, 1, 'proto_version', '1', 'publication_names', $2
) LIMIT 1
"""

_WALSENDER = """
SELECT extract(epoch FROM r.flush_lag)::float8 AS flush_lag, r.state
FROM pg_stat_replication r WHERE r.pid = $1
"""


async def cdc_status(
    dsn: str, *, slot: str, publication: str, position: Position = None
) -> dict[str, JsonValue]:
    """The state of ``slot`` and ``publication``, as plain JSON data.

    Keys: ``slot``, ``exists``, ``active``, ``active_pid``, ``wal_status``,
    ``confirmed_flush_lsn``, ``restart_lsn``, ``current_lsn``, ``lag_bytes``
    (WAL not yet confirmed; while no consumer streams, counted from the first
    change of this database still pending, so a caught-up slot reads zero
    whatever other databases write), ``consumer_attached`` (a pipeline holds the
    slot, streaming or still snapshotting), ``lag_seconds`` (the walsender's flush lag
    while a consumer is attached), ``wal_retained_bytes``, ``publication``
    (name, whether it exists, its tables), ``checkpoint`` (``position``) and
    ``snapshot`` (the snapshot progress in it, ``None`` once streaming).

    :param position: the pipeline's committed position, when the caller has it.
    :raises PermanentError: when the database cannot be queried.
    """
    source = Dsn.parse(dsn)
    catalog.check_slot_name(slot)
    conn = await catalog.connect(source, f"reading the status of slot {slot!r}")
    try:
        with map_errors(source, f"reading the status of slot {slot!r}"):
            info = await catalog.slot_info(conn, slot)
            tables = await _publication_tables(conn, publication)
            walsender = None
            if info is not None and info.active_pid is not None:
                walsender = await conn.fetchrow(_WALSENDER, info.active_pid)
            attached = await catalog.consumer_attached(conn, slot)
            lag = info.lag_bytes if info is not None else None
            if info is not None and not info.active and lag and tables is not None:
                lag = await _own_lag(conn, slot, publication, info.current_lsn)
    finally:
        await conn.close()
    snapshot = position.get("snapshot") if isinstance(position, dict) else None
    status: dict[str, JsonValue] = {
        "slot": slot,
        "exists": info is not None,
        "publication": {"name": publication, "exists": tables is not None, "tables": tables},
        "checkpoint": position,
        "snapshot": snapshot,
    }
    if info is None:
        return status
    status.update(
        {
            "active": info.active,
            "consumer_attached": info.active or attached,
            "active_pid": info.active_pid,
            "wal_status": info.wal_status,
            "confirmed_flush_lsn": _lsn(info.confirmed_flush),
            "restart_lsn": _lsn(info.restart_lsn),
            "current_lsn": format_lsn(info.current_lsn),
            "lag_bytes": lag,
            "lag_seconds": walsender["flush_lag"] if walsender is not None else None,
            "wal_retained_bytes": info.restart_lag_bytes,
        }
    )
    return status


async def cdc_drop(
    dsn: str, *, slot: str, publication: str, drop_publication: bool = True
) -> dict[str, bool]:
    """Drop ``slot`` and (unless told not to) ``publication``; what was dropped.

    Changes not yet read from the slot are lost; the pipeline's checkpoint
    should be dropped too, so that a new run re-creates the slot and re-snapshots.

    :raises PermanentError: when a consumer still streams from the slot.
    """
    source = Dsn.parse(dsn)
    catalog.check_slot_name(slot)
    conn = await catalog.connect(source, f"dropping slot {slot!r}")
    try:
        with map_errors(source, f"dropping slot {slot!r}"):
            info = await catalog.slot_info(conn, slot)
            if info is not None and info.active:
                raise PermanentError(
                    f"replication slot {slot!r} is in use by process {info.active_pid}; stop the "
                    "pipeline that consumes it, then drop it"
                )
            dropped_slot = await catalog.drop_slot(conn, slot) if info is not None else False
            dropped_publication = (
                await catalog.drop_publication(conn, publication) if drop_publication else False
            )
    finally:
        await conn.close()
    return {"slot_dropped": dropped_slot, "publication_dropped": dropped_publication}


async def _publication_tables(conn: asyncpg.Connection, publication: str) -> list[JsonValue] | None:
    if not await catalog.publication_exists(conn, publication):
        return None
    rows = await conn.fetch(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 "
        "ORDER BY 1",
        publication,
    )
    return [r[0] for r in rows]


async def _own_lag(conn: asyncpg.Connection, slot: str, publication: str, current: int) -> int:
    """Bytes of WAL from the slot's first pending change of this database to the server's end."""
    first = await conn.fetchval(_FIRST_PENDING, slot, publication)
    return 0 if first is None else max(0, current - parse_lsn(first))


def _lsn(value: int | None) -> str | None:
    return format_lsn(value) if value is not None else None
